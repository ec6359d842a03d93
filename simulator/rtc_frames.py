"""Encoded output frames for WebRTC sessions, made once per picture and replayed.

Every frame is a VP8 *keyframe* of a `frames.py` look (its JPEG decoded to yuv420p), so any
frame decodes on its own: frames can be dropped, repeated or reordered by a fault without
breaking the client's decoder, and a session costs no encoding per frame, only the RTP
packetizing aiortc does for pre-encoded packets. Other codecs (H264 when the client
prefers it) get raw frames that aiortc encodes per frame, which costs far more CPU.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import av
import numpy as np
from PIL import Image

from simulator.frames import Look, frame_jpeg

SOURCE_JPEG_QUALITY = 92
VP8_QUANTIZER = 24  # fixed quality: ~4 KB per 512x512 keyframe, noise still visible frame to frame
VP8_BITRATE = 2_000_000
CACHE_ENTRIES = 1024  # a few hundred KB of VP8 per look: the cache stays around 10 MB
INPUT_THUMB_PX = 64
K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self._size, self._items, self._lock = size, OrderedDict[K, V](), threading.Lock()

    def get(self, key: K) -> V | None:
        """The cached value, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Cache `value` and return it."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, made (outside the lock) when missing."""
        value = self.get(key)
        return value if value is not None else self.put(key, make())


FrameKey = tuple[Look, int, int, int]
_vp8_cache: LruCache[FrameKey, bytes] = LruCache(CACHE_ENTRIES)
_yuv_cache: LruCache[FrameKey, np.ndarray] = LruCache(CACHE_ENTRIES)
_encoders = threading.local()


def cached_vp8(look: Look, width: int, height: int, variant: int) -> bytes | None:
    """The VP8 keyframe of this picture if it was made before (cheap: call it on the event loop)."""
    return _vp8_cache.get((look, width, height, variant))


def vp8_keyframe(look: Look, width: int, height: int, variant: int) -> bytes:
    """The VP8 keyframe of this picture (tens of ms the first time: call it in a worker thread)."""
    key = (look, width, height, variant)
    return _vp8_cache.get_or_make(key, lambda: _encode_vp8(yuv_planes(look, width, height, variant)))


def yuv_planes(look: Look, width: int, height: int, variant: int) -> np.ndarray:
    """The picture as a yuv420p array (height * 3/2 rows), as `VideoFrame.from_ndarray` takes it."""
    key = (look, width, height, variant)
    return _yuv_cache.get_or_make(key, lambda: _to_yuv(frame_jpeg(look, width, height, SOURCE_JPEG_QUALITY, variant)))


def _to_yuv(jpeg: bytes) -> np.ndarray:
    rgb = Image.open(io.BytesIO(jpeg)).convert("RGB")
    return av.VideoFrame.from_image(rgb).reformat(format="yuv420p").to_ndarray()


def _encode_vp8(yuv: np.ndarray) -> bytes:
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    encoder, frame.pts = _encoder(frame.width, frame.height)
    frame.pict_type = av.video.frame.PictureType.I
    return b"".join(bytes(packet) for packet in encoder.encode(frame))


def _encoder(width: int, height: int) -> tuple[av.VideoCodecContext, int]:
    # One libvpx context per thread and size: making one costs more than encoding a frame.
    contexts = getattr(_encoders, "contexts", None)
    if contexts is None:
        contexts = _encoders.contexts = {}
        _encoders.frames = 0
    _encoders.frames += 1  # libvpx wants increasing timestamps
    if (width, height) not in contexts:
        context = av.CodecContext.create("libvpx", "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.bit_rate, context.gop_size, context.thread_count = VP8_BITRATE, 1, 1
        context.qmin = context.qmax = VP8_QUANTIZER
        context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        contexts[(width, height)] = context
    return contexts[(width, height)], _encoders.frames


def corrupt_vp8(index: int, width: int, height: int) -> bytes:
    """A VP8 keyframe header for this size followed by garbage: a decoder rejects it or shows noise."""
    rng = random.Random(index)
    size = 4096
    tag = (size << 5) | 0x10  # keyframe, version 0, shown, first partition `size` bytes
    header = bytes((tag & 0xFF, (tag >> 8) & 0xFF, (tag >> 16) & 0xFF, 0x9D, 0x01, 0x2A))
    dims = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return header + dims + rng.randbytes(size)


def noise_yuv(index: int, width: int, height: int) -> np.ndarray:
    """A random picture: what a corrupt stream looks like once something re-encodes it."""
    return np.random.default_rng(index).integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)


def save_input_reference(frame: av.VideoFrame, folder: Path) -> str:
    """Keep a small picture of a client's input frame as a PNG (named by content) and return its path."""
    thumb = frame.to_image().convert("RGB").resize((INPUT_THUMB_PX, INPUT_THUMB_PX), Image.BILINEAR)
    digest = hashlib.sha256(thumb.tobytes()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"input-{digest}.png"
    if not path.exists():
        tmp = path.with_suffix(".part")
        thumb.save(tmp, "PNG")
        tmp.replace(path)
    return str(path)
