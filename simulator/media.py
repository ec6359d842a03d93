"""Media the simulator reads or streams: input clips/images and the MPEG-TS output stream."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
THUMB_SIZE = 64
TS_FPS = 30
TS_SEGMENT_S = 1.0  # the encoded segment holds TS_FPS frames
TS_SIZE = 128


class MediaError(ValueError):
    """An input file that is missing or cannot be decoded."""


@dataclass(frozen=True)
class MediaReference:
    """What the simulator keeps of an input: a small luma picture and its mean colour."""

    luma_thumb: np.ndarray  # THUMB_SIZE x THUMB_SIZE float32, 0-255
    cb: int
    cr: int


def media_reference(path: str) -> MediaReference:
    """The reference of an input clip (first frame, via PyAV) or image; decoded once per file version."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise MediaError(f"input file not found: {path}") from exc
    return _decode_reference(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _decode_reference(path: str, mtime_ns: int, size: int) -> MediaReference:
    # mtime and size are part of the cache key so a re-uploaded file is decoded again.
    suffix = Path(path).suffix.lower()
    try:
        image = _first_video_frame(path) if suffix in VIDEO_EXTENSIONS else Image.open(path)
        ycbcr = image.convert("RGB").convert("YCbCr")
    except Exception as exc:  # PyAV and Pillow raise many types for a bad file
        raise MediaError(f"cannot decode {path}: {exc}") from exc
    _, cb, cr = ycbcr.split()
    thumb = ycbcr.getchannel("Y").resize((THUMB_SIZE, THUMB_SIZE), Image.BILINEAR)
    return MediaReference(np.asarray(thumb, dtype=np.float32), _mean(cb), _mean(cr))


def _mean(plane: Image.Image) -> int:
    return int(np.asarray(plane, dtype=np.float32).mean())


def _first_video_frame(path: str) -> Image.Image:
    import av  # imported here: only video inputs need it, and it is slow to import

    with av.open(path) as container:
        for frame in container.decode(video=0):
            return frame.to_image()
    raise MediaError(f"no video frame in {path}")


@functools.lru_cache(maxsize=1)
def ts_segment() -> bytes:
    """One second of H.264 at 30 fps in MPEG-TS, encoded once; the output stream loops it."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=TS_FPS)
        stream.width = stream.height = TS_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        ramp = np.linspace(0, 255, TS_SIZE, dtype=np.float32)
        for index in range(TS_FPS):
            shade = (np.add.outer(ramp, ramp) / 2 + index * 8) % 256
            rgb = np.repeat(shade.astype(np.uint8)[:, :, None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
