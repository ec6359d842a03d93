"""Procedural JPEG output frames.

A frame is a *look* (what the pipeline is making: a prompt's picture, the input clip, black)
plus one of `VARIANTS` stationary noise fields. The noise is low-frequency so it survives
JPEG and a 1/4-scale decode, and independent between variants, so any two frames of one
look differ by about the same amount (~0.024 normalised mean abs luma) whatever their
distance in time; two prompts' looks differ by ~0.2. Encoded frames are cached, so serving
a frame is a dictionary lookup.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image

from simulator.media import MediaError, media_reference

VARIANTS = 13  # prime: a receiver sampling every N frames sees a new variant each time unless 13 divides N
NOISE_SIGMA = 5.6  # luma levels; gives a frame-to-frame difference of ~0.024 at 1/4 scale
BLACK_NOISE_SIGMA = 1.5  # keeps black frames "moving" (diff > 0.001) yet below luma 25
NOISE_CELL_PX = 16
GRID_CELLS = 12
LUMA_LEVELS = np.array([40.0, 95.0, 150.0, 205.0], dtype=np.float32)
CHROMA_SWING = 45.0
NEUTRAL_CHROMA = 128


class LookKind(StrEnum):
    """What the output shows."""

    PROMPT = "prompt"  # a prompt-driven generator: the picture depends on the prompt text
    CLIP = "clip"  # the input clip itself (passthrough)
    GRAY = "gray"  # the input clip without colour
    DEPTH = "depth"  # a depth-like rendering of the input
    BLACK = "black"


@dataclass(frozen=True)
class Look:
    """Everything that decides a frame's picture except its noise variant."""

    kind: LookKind
    key: str  # prompt text for PROMPT, input path for CLIP/GRAY/DEPTH
    tint: tuple[int, int] | None = None  # (Cb, Cr) of the input media, for prompt-driven v2v/i2v
    black_luma: float = 5.0


def frame_jpeg(look: Look, width: int, height: int, quality: int, variant: int) -> bytes:
    """The JPEG bytes of `look` at this size and quality with noise `variant` (cached)."""
    return _encode(look, width, height, quality, variant % VARIANTS)


def corrupt_jpeg(index: int) -> bytes:
    """Undecodable frame bytes: a JPEG start-of-image marker followed by garbage."""
    rng = random.Random(index)
    return b"\xff\xd8\xff\xe0" + rng.randbytes(2048 + rng.randrange(2048))


@functools.lru_cache(maxsize=2048)
def _encode(look: Look, width: int, height: int, quality: int, variant: int) -> bytes:
    luma, cb, cr = _planes(look, width, height)
    noise = _noise(width, height, variant).astype(np.int16)
    if look.kind is LookKind.BLACK:
        noise = np.rint(noise * (BLACK_NOISE_SIGMA / NOISE_SIGMA)).astype(np.int16)
    y = Image.fromarray(np.clip(luma + noise, 0, 255).astype(np.uint8), "L")
    buffer = io.BytesIO()
    Image.merge("YCbCr", (y, cb, cr)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@functools.lru_cache(maxsize=96)
def _noise(width: int, height: int, variant: int) -> np.ndarray:
    # Gaussian cells upsampled smoothly: structure at ~16 px survives JPEG and 1/4-scale decode.
    rng = np.random.default_rng([0x5C0E, variant])
    cells = rng.standard_normal((max(height // NOISE_CELL_PX, 2), max(width // NOISE_CELL_PX, 2)))
    field = np.asarray(Image.fromarray(cells.astype(np.float32), "F").resize((width, height), Image.BICUBIC))
    return np.clip(np.rint(field / field.std() * NOISE_SIGMA), -127, 127).astype(np.int8)


@functools.lru_cache(maxsize=64)
def _planes(look: Look, width: int, height: int) -> tuple[np.ndarray, Image.Image, Image.Image]:
    # Luma is kept as int16 (0-255) so adding the int8 noise needs no float pass per frame.
    luma, cb, cr = _float_planes(look, width, height)
    return np.rint(np.clip(luma, 0, 255)).astype(np.int16), cb, cr


def _float_planes(look: Look, width: int, height: int) -> tuple[np.ndarray, Image.Image, Image.Image]:
    if look.kind is LookKind.BLACK:
        return np.full((height, width), look.black_luma, np.float32), *_flat_chroma(width, height)
    if look.kind is LookKind.PROMPT:
        return _prompt_luma(look.key, width, height), *_prompt_chroma(look, width, height)
    try:
        reference = media_reference(look.key)
    except MediaError:
        # The input vanished after the session started: keep producing a stable picture.
        return _prompt_luma(look.key, width, height), *_flat_chroma(width, height)
    return _media_luma(look.kind, reference.luma_thumb, width, height), *_media_chroma(
        look.kind, reference.cb, reference.cr, width, height
    )


def _rng_for(text: str, salt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _upsample(cells: np.ndarray, width: int, height: int, resample: int = Image.BICUBIC) -> np.ndarray:
    return np.asarray(Image.fromarray(cells.astype(np.float32), "F").resize((width, height), resample))


def _prompt_luma(text: str, width: int, height: int) -> np.ndarray:
    # A coarse mosaic of four luma levels: two prompts share few cells, so they differ strongly.
    levels = LUMA_LEVELS[_rng_for(text, "luma").integers(0, len(LUMA_LEVELS), (GRID_CELLS, GRID_CELLS))]
    return _upsample(levels, width, height)


def _prompt_chroma(look: Look, width: int, height: int) -> tuple[Image.Image, Image.Image]:
    rng = _rng_for(look.key, "chroma")
    planes = []
    for index in range(2):
        plane = NEUTRAL_CHROMA + rng.uniform(-CHROMA_SWING, CHROMA_SWING, (3, 3))
        if look.tint is not None:
            plane = (plane + look.tint[index]) / 2  # v2v/i2v: the input's colour shows through
        planes.append(_to_image(_upsample(plane, width, height, Image.BILINEAR)))
    return planes[0], planes[1]


def _media_luma(kind: LookKind, thumb: np.ndarray, width: int, height: int) -> np.ndarray:
    if kind is LookKind.DEPTH:
        coarse = np.asarray(Image.fromarray(thumb, "F").resize((8, 8), Image.BILINEAR))
        return 255.0 - _upsample(coarse, width, height)
    return _upsample(thumb, width, height, Image.BILINEAR)


def _media_chroma(kind: LookKind, cb: int, cr: int, width: int, height: int) -> tuple[Image.Image, Image.Image]:
    if kind is LookKind.CLIP:
        return Image.new("L", (width, height), cb), Image.new("L", (width, height), cr)
    return _flat_chroma(width, height)


def _flat_chroma(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    neutral = Image.new("L", (width, height), NEUTRAL_CHROMA)
    return neutral, neutral


def _to_image(plane: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(plane, 0, 255).astype(np.uint8), "L")
