"""Per-frame checks: decode one sampled JPEG cheaply and judge it (quality.md, frame checks).

Frames are decoded with ``Image.draft("L", (w // 4, h // 4))``: libjpeg then emits only the
luma plane at 1/4 scale, skipping the full-size inverse DCT, chroma upsampling and colour
conversion. Entropy decoding still reads every coefficient, so that part is the floor.

A 4x4-averaged thumbnail does not have the per-pixel statistics of the full frame, so the
two verdicts that sit on per-pixel thresholds are made exact where they could differ:

- black: averaging hides dark-frame grain and scattered bright pixels (a dark noisy night
  scene would read as black). A frame whose black fraction is >= f has a mean luma of at
  most ``f * black_luma_max + (1 - f) * 255`` (29.6 with the defaults); the thumb keeps the
  mean (it is the DC term), so only frames whose thumb mean is below that bound plus a
  margin are measured again at full scale. Normal frames never pay for it.
- frozen: averaging cancels grain, so a thumb difference reads at most about the full-scale
  one and often far less (measured: ~0.95x for a moved patch, 0.4x for grain, 0.14x for
  JPEG re-quantisation noise on texture). Thumb differences at or below
  ``2 x frozen_diff_max`` are therefore measured again at full scale; byte-identical frames
  are 0 without decoding. Healthy output (0.01-0.05) never pays for it; near-static output
  pays one full-scale luma decode per frame (each frame's plane is kept on its FrameStats
  for the next comparison).

Received (WebRTC) frames are already decoded: ``analyze_picture`` measures their luma plane
the same way (1/4-scale block means; black fraction at full scale for black candidates) and
keeps the plane, so near-frozen differences are full-scale without any decode.

Pillow exceptions are caught in exactly one place (``_decode_or_error``), so
``analyze_frame`` never raises: undecodable bytes give ``ok=False`` and a one-line error.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, cached_property

import numpy as np
from PIL import Image, UnidentifiedImageError

THUMB_DIVISOR = 4
# Larger than any video frame we expect (8K); keeps a hostile header from allocating gigabytes.
MAX_FRAME_PIXELS = 7680 * 4320
# The JPEG end-of-image marker must sit in the last bytes; its absence means truncation even
# if some library in the process set ImageFile.LOAD_TRUNCATED_IMAGES.
_EOI = b"\xff\xd9"
_EOI_SEARCH_BYTES = 64
_ERROR_DETAIL_CHARS = 200
# Thumb mean may exceed the full-scale mean by clamping/rounding effects; 8 levels covers it.
BLACK_CANDIDATE_MARGIN_LUMA = 8.0
# Thumb differences are about a lower bound of full-scale ones (highest ratio measured 1.01);
# re-measure everything up to this multiple of the frozen threshold.
FULL_SCALE_DIFF_FACTOR = 2.0


class FrameVerdict(StrEnum):
    """What one sampled frame was judged to be."""

    VALID = "valid"
    BLACK = "black"
    CORRUPT = "corrupt"
    WRONG_SIZE = "wrong_size"
    FROZEN = "frozen"
    MISSING = "missing"


@dataclass(frozen=True)
class FrameThresholds:
    """Per-frame thresholds: luma is full range 0-255, differences are normalised to 0-1."""

    black_luma_max: int = 25
    black_fraction_min: float = 0.98
    frozen_diff_max: float = 0.001


DEFAULT_FRAME_THRESHOLDS = FrameThresholds()


@dataclass(frozen=True)
class FrameStats:
    """What the frame checks measured on one JPEG (luma statistics on the 1/4-scale thumb)."""

    ok: bool
    width: int
    height: int
    luma_mean: float
    luma_std: float
    black_fraction: float
    decode_ms: float
    error: str | None
    thumb: bytes = field(repr=False)
    thumb_size: tuple[int, int]
    # True when black_fraction was measured on the full-scale luma (a dark, black-candidate frame).
    black_at_full_scale: bool = False
    # The JPEG itself, kept (not copied) for byte-equality and full-scale re-measurement.
    jpeg: bytes = field(default=b"", repr=False, compare=False)
    # A received picture's full-scale luma plane (analyze_picture): there is no JPEG to decode again.
    plane: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def has_full_scale(self) -> bool:
        """True when the full-scale luma can be had (from the JPEG or the kept plane)."""
        return bool(self.jpeg) or self.plane is not None

    @cached_property
    def full_luma(self) -> bytes | None:
        """Full-scale luma plane, decoded on first use and kept (near-frozen comparisons only)."""
        if self.plane is not None:
            return self.plane
        decoded = _decode_or_error(self.jpeg, full_scale=True) if self.ok else "not decodable"
        return None if isinstance(decoded, str) else decoded[0].tobytes()


@dataclass(frozen=True)
class _LumaHistogram:
    """Mean, standard deviation and black fraction of a luma plane from its histogram."""

    mean: float
    std: float
    black_fraction: float


def analyze_frame(jpeg: bytes, *, thresholds: FrameThresholds = DEFAULT_FRAME_THRESHOLDS) -> FrameStats:
    """Decode a JPEG at 1/4 scale and measure its luma; never raises (ok=False on bad input)."""
    started = time.perf_counter()
    decoded = _decode_or_error(jpeg, full_scale=False)
    if isinstance(decoded, str):
        return _failed(jpeg, decoded, started)
    thumb, (width, height) = decoded
    stats = _histogram_stats(thumb.histogram(), thresholds.black_luma_max)
    black_fraction, at_full_scale = stats.black_fraction, False
    if stats.mean <= _black_candidate_mean(thresholds):
        full = _decode_or_error(jpeg, full_scale=True)
        if isinstance(full, str):
            return _failed(jpeg, full, started)
        black_fraction = _histogram_stats(full[0].histogram(), thresholds.black_luma_max).black_fraction
        at_full_scale = True
    return _measured(thumb, (width, height), stats, black_fraction, at_full_scale, started, jpeg=jpeg)


def analyze_picture(luma: np.ndarray, *, thresholds: FrameThresholds = DEFAULT_FRAME_THRESHOLDS) -> FrameStats:
    """The JPEG path's statistics for an already decoded full-range luma plane (H x W uint8)."""
    started = time.perf_counter()
    height, width = luma.shape
    full = Image.fromarray(np.ascontiguousarray(luma, dtype=np.uint8), mode="L")
    # Block means, as the JPEG path's fallback when libjpeg declines to draft.
    thumb = full.reduce(THUMB_DIVISOR) if width >= THUMB_DIVISOR and height >= THUMB_DIVISOR else full
    stats = _histogram_stats(thumb.histogram(), thresholds.black_luma_max)
    black_fraction, at_full_scale = stats.black_fraction, False
    if stats.mean <= _black_candidate_mean(thresholds):
        black_fraction = _histogram_stats(full.histogram(), thresholds.black_luma_max).black_fraction
        at_full_scale = True
    return _measured(thumb, (width, height), stats, black_fraction, at_full_scale, started, plane=full.tobytes())


def _measured(thumb: Image.Image, size: tuple[int, int], stats: _LumaHistogram, black_fraction: float,
              at_full_scale: bool, started: float, **kept: bytes) -> FrameStats:
    """The FrameStats of a decoded frame; `kept` is its JPEG or its full-scale plane, for later comparisons."""
    return FrameStats(
        ok=True,
        width=size[0],
        height=size[1],
        luma_mean=stats.mean,
        luma_std=stats.std,
        black_fraction=black_fraction,
        decode_ms=(time.perf_counter() - started) * 1000.0,
        error=None,
        thumb=thumb.tobytes(),
        thumb_size=thumb.size,
        black_at_full_scale=at_full_scale,
        **kept,
    )


def frame_difference(
    a: FrameStats, b: FrameStats, *, thresholds: FrameThresholds = DEFAULT_FRAME_THRESHOLDS
) -> float | None:
    """Mean |Δluma| / 255 between two frames on their thumbs; None when not comparable.

    Differences small enough to decide a frozen verdict are re-measured at full scale (see
    the module docstring), so the verdict equals a full decode's.
    """
    if not (a.ok and b.ok) or a.thumb_size != b.thumb_size or (a.width, a.height) != (b.width, b.height):
        return None
    if a.jpeg and a.jpeg == b.jpeg:
        return 0.0
    thumb_diff = _mean_abs_difference(a.thumb, b.thumb)
    if thumb_diff > thresholds.frozen_diff_max * FULL_SCALE_DIFF_FACTOR or not (a.has_full_scale and b.has_full_scale):
        return thumb_diff
    full_a, full_b = a.full_luma, b.full_luma
    if full_a is None or full_b is None or len(full_a) != len(full_b):
        return thumb_diff
    return _mean_abs_difference(full_a, full_b)


def classify_frame(
    stats: FrameStats | None,
    *,
    expected_size: tuple[int, int],
    diff_prev: float | None,
    thresholds: FrameThresholds = DEFAULT_FRAME_THRESHOLDS,
) -> FrameVerdict:
    """Judge one frame: missing, corrupt, wrong_size, black, frozen, else valid (in that order)."""
    if stats is None:
        return FrameVerdict.MISSING
    if not stats.ok:
        return FrameVerdict.CORRUPT
    if (stats.width, stats.height) != tuple(expected_size):
        return FrameVerdict.WRONG_SIZE
    if stats.black_fraction >= thresholds.black_fraction_min:
        return FrameVerdict.BLACK
    if diff_prev is not None and diff_prev <= thresholds.frozen_diff_max:
        return FrameVerdict.FROZEN
    return FrameVerdict.VALID


def _decode_or_error(jpeg: bytes, *, full_scale: bool) -> tuple[Image.Image, tuple[int, int]] | str:
    """Decode the luma plane, or say in one line why the bytes are not a usable JPEG."""
    if not jpeg:
        return "empty frame (0 bytes)"
    if jpeg.find(_EOI, max(0, len(jpeg) - _EOI_SEARCH_BYTES)) < 0:
        return f"truncated JPEG: no end-of-image marker in the last {_EOI_SEARCH_BYTES} of {len(jpeg)} bytes"
    try:
        return _decode_luma(jpeg, full_scale=full_scale)
    # Frames come from a remote server: Pillow answers hostile bytes with many exception
    # types (OSError, SyntaxError, ValueError, EOFError, struct.error, DecompressionBombError,
    # ...) and every one of them means "this frame is corrupt".
    except UnidentifiedImageError:
        return f"not a JPEG ({len(jpeg)} bytes): Pillow cannot identify the data"
    except Exception as exc:  # noqa: BLE001
        detail = " ".join(str(exc).split())[:_ERROR_DETAIL_CHARS]  # one line, bounded
        return f"undecodable JPEG ({len(jpeg)} bytes): {type(exc).__name__}: {detail}"


def _decode_luma(jpeg: bytes, *, full_scale: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Luma plane at 1/4 (or full) scale plus the full size from the header; raises on bad data."""
    image = Image.open(io.BytesIO(jpeg), formats=("JPEG",))
    width, height = image.size
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"{width}x{height} exceeds {MAX_FRAME_PIXELS} pixels")
    if full_scale:
        target = (width, height)
    else:
        target = (max(1, width // THUMB_DIVISOR), max(1, height // THUMB_DIVISOR))
    image.draft("L", target)
    image.load()
    if image.mode != "L":  # grayscale-less JPEGs (CMYK) are not drafted to L by libjpeg
        image = image.convert("L")
    if not full_scale and image.size == (width, height) and width >= THUMB_DIVISOR:
        image = image.reduce(THUMB_DIVISOR)  # draft declined to scale; thumbs must stay comparable
    return image, (width, height)


def _histogram_stats(histogram: list[int], black_luma_max: int) -> _LumaHistogram:
    """Mean, std and share of pixels at or below black_luma_max from a 256-bin histogram."""
    counts = np.array(histogram[:256], dtype=np.float64)
    levels, squares = _luma_levels()
    total = counts.sum()
    mean = float(counts @ levels / total)
    variance = max(0.0, float(counts @ squares / total) - mean * mean)
    black = float(counts[: black_luma_max + 1].sum() / total)
    return _LumaHistogram(mean=mean, std=variance**0.5, black_fraction=black)


@cache
def _luma_levels() -> tuple[np.ndarray, np.ndarray]:
    """The 256 luma levels and their squares (built once, on first use)."""
    levels = np.arange(256, dtype=np.float64)
    return levels, levels * levels


def _mean_abs_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two equally sized 8-bit planes, normalised to 0-1."""
    plane_a = np.frombuffer(a, dtype=np.uint8)
    plane_b = np.frombuffer(b, dtype=np.uint8)
    # max-min on uint8 gives |a-b| without widening to a larger dtype.
    diff = np.maximum(plane_a, plane_b) - np.minimum(plane_a, plane_b)
    return _sum_uint8(diff) / (255.0 * diff.size)


def _sum_uint8(values: np.ndarray) -> int:
    """Sum of a uint8 array: rows of 256 summed in uint16 (cannot overflow) are ~2x faster."""
    whole_rows = values.size - values.size % 256
    rows = values[:whole_rows].reshape(-1, 256).sum(axis=1, dtype=np.uint16)
    return int(rows.sum(dtype=np.uint64)) + int(values[whole_rows:].sum(dtype=np.uint64))


def _black_candidate_mean(thresholds: FrameThresholds) -> float:
    """Highest thumb mean luma a frame that is black at full scale can have (plus margin)."""
    f = thresholds.black_fraction_min
    return f * thresholds.black_luma_max + (1.0 - f) * 255.0 + BLACK_CANDIDATE_MARGIN_LUMA


def _failed(jpeg: bytes, error: str, started: float) -> FrameStats:
    """FrameStats for bytes that are not a decodable JPEG."""
    return FrameStats(
        ok=False,
        width=0,
        height=0,
        luma_mean=0.0,
        luma_std=0.0,
        black_fraction=0.0,
        decode_ms=(time.perf_counter() - started) * 1000.0,
        error=error,
        thumb=b"",
        thumb_size=(0, 0),
        jpeg=jpeg,
    )
