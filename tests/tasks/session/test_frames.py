"""Frame checks: reduced-scale decode, verdicts at the thresholds, bad input."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter

from tasks.session.frames import (
    FULL_SCALE_DIFF_FACTOR,
    FrameStats,
    FrameThresholds,
    FrameVerdict,
    analyze_frame,
    analyze_picture,
    classify_frame,
    frame_difference,
)

THRESHOLDS = FrameThresholds()
SIZE = (512, 512)


def encode(pixels: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a gray (2-D, stored as RGB like Scope's frames) or RGB array."""
    if pixels.ndim == 2:
        pixels = np.dstack([pixels] * 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def full_luma(jpeg: bytes) -> np.ndarray:
    """The reference: a plain full-resolution decode converted to luma."""
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L")).astype(np.int32)


def full_black(jpeg: bytes) -> bool:
    """Black verdict of a full-resolution decode."""
    luma = full_luma(jpeg)
    return np.mean(luma <= THRESHOLDS.black_luma_max) >= THRESHOLDS.black_fraction_min


def full_difference(a: bytes, b: bytes) -> float:
    """Mean |Δluma| / 255 of two full-resolution decodes."""
    return float(np.abs(full_luma(a) - full_luma(b)).mean() / 255.0)


def smooth_gray(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Diffusion-like gray content: blurred random low-frequency shapes."""
    coarse = rng.integers(40, 220, (size // 8, size // 8), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    return np.asarray(image).astype(np.int16)


def is_black(jpeg: bytes) -> bool:
    """Black verdict of the project's checks."""
    stats = analyze_frame(jpeg)
    return classify_frame(stats, expected_size=SIZE, diff_prev=None) == FrameVerdict.BLACK


# --- size and statistics -------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(512, 512), (510, 384), (100, 60), (4, 7)])
def test_reports_full_size_from_header_and_a_quarter_scale_thumb(width: int, height: int) -> None:
    stats = analyze_frame(encode(np.full((height, width), 128)))
    assert stats.ok and stats.error is None
    assert (stats.width, stats.height) == (width, height)
    assert stats.thumb_size == (-(-width // 4), -(-height // 4))
    assert len(stats.thumb) == stats.thumb_size[0] * stats.thumb_size[1]
    assert stats.decode_ms > 0


def test_frames_smaller_than_four_pixels_are_analysed() -> None:
    stats = analyze_frame(encode(np.full((3, 2), 128)))
    assert stats.ok and (stats.width, stats.height) == (2, 3)
    assert len(stats.thumb) == stats.thumb_size[0] * stats.thumb_size[1] > 0


@pytest.mark.parametrize("level", [0, 40, 128, 250])
def test_flat_frame_statistics(level: int) -> None:
    stats = analyze_frame(encode(np.full((256, 256), level)))
    assert stats.luma_mean == pytest.approx(level, abs=1.0)
    assert stats.luma_std < 1.0
    assert stats.black_fraction == (1.0 if level <= THRESHOLDS.black_luma_max else 0.0)


def test_grayscale_and_cmyk_jpegs_are_analysed() -> None:
    for mode in ("L", "CMYK"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 100, 50)).convert(mode).save(buffer, "JPEG")
        stats = analyze_frame(buffer.getvalue())
        assert stats.ok, stats.error
        assert (stats.width, stats.height, stats.thumb_size) == (64, 48, (16, 12))


# --- black: reduced-scale verdict equals the full decode's at the threshold ----------------


def _dark_with_bright(rng: np.random.Generator, dark_fraction: float, layout: str) -> np.ndarray:
    """Dark frame (luma ~8) whose bright share (luma 200) is one block or scattered pixels."""
    pixels = np.full(SIZE, 8, dtype=np.int16)
    bright = round((1.0 - dark_fraction) * pixels.size)
    if layout == "block":
        rows = bright // SIZE[1]
        pixels[:rows, :] = 200
        pixels[rows, : bright - rows * SIZE[1]] = 200
    else:
        pixels.flat[rng.choice(pixels.size, bright, replace=False)] = 200
    return pixels


@pytest.mark.parametrize("layout", ["block", "scattered"])
def test_black_verdict_matches_full_decode_around_the_fraction_threshold(layout: str) -> None:
    rng = np.random.default_rng(7)
    verdicts = []
    for dark_fraction in (0.95, 0.97, 0.975, 0.979, 0.981, 0.985, 0.99, 0.999):
        jpeg = encode(_dark_with_bright(rng, dark_fraction, layout))
        reference = full_black(jpeg)
        assert is_black(jpeg) == reference, (layout, dark_fraction)
        verdicts.append(reference)
    assert set(verdicts) == {True, False}  # the cases really straddle the threshold


def test_black_verdict_matches_full_decode_around_the_luma_threshold() -> None:
    rng = np.random.default_rng(8)
    verdicts = []
    for level in (18, 21, 23, 24, 26, 27, 29, 33):
        for noise_sd in (0.0, 1.5, 4.0):
            jpeg = encode(level + rng.normal(0, noise_sd, SIZE))
            reference = full_black(jpeg)
            assert is_black(jpeg) == reference, (level, noise_sd)
            verdicts.append(reference)
    assert set(verdicts) == {True, False}


def test_dark_grainy_scene_is_not_black_although_its_thumb_looks_black() -> None:
    # Why the full-scale re-measure exists: 4x4 averaging removes the grain that lifts
    # ~12 % of the pixels above luma 25, so the thumb alone would call this scene black.
    jpeg = encode(15 + np.random.default_rng(9).normal(0, 9, SIZE))
    stats = analyze_frame(jpeg)
    thumb_black_fraction = np.mean(np.frombuffer(stats.thumb, np.uint8) <= THRESHOLDS.black_luma_max)
    assert thumb_black_fraction >= THRESHOLDS.black_fraction_min
    assert not full_black(jpeg)
    assert stats.black_at_full_scale
    assert classify_frame(stats, expected_size=SIZE, diff_prev=None) == FrameVerdict.VALID


def test_black_frame_with_sensor_noise_is_black() -> None:
    jpeg = encode(5 + np.random.default_rng(10).normal(0, 2, SIZE))
    assert full_black(jpeg) and is_black(jpeg)


def test_ordinary_frames_are_not_decoded_twice() -> None:
    stats = analyze_frame(encode(smooth_gray(np.random.default_rng(11))))
    assert not stats.black_at_full_scale
    assert stats.black_fraction < THRESHOLDS.black_fraction_min


def test_colour_frames_agree_with_full_decode_on_clear_cases() -> None:
    rng = np.random.default_rng(12)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    bright = np.asarray(Image.fromarray(colour).resize(SIZE, Image.BICUBIC)).astype(np.int16)
    for pixels in (bright, bright // 40, bright // 4):
        jpeg = encode(pixels)
        assert is_black(jpeg) == full_black(jpeg)


# --- frozen: differences near 0.001 ---------------------------------------------------------


def _changed(rng: np.random.Generator, base: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """base with a change whose size grows with strength: a brighter patch, or grain."""
    changed = base.copy()
    if kind == "patch":
        side = int(strength)
        changed[100 : 100 + side, 200 : 200 + side] += 3
    else:
        mask = rng.random(base.shape) < strength
        changed[mask] += rng.choice(np.array([-2, 2], dtype=np.int16), int(mask.sum()))
    return changed


@pytest.mark.parametrize(
    "kind,strengths",
    [("patch", (0, 16, 180, 220, 260, 300, 400)), ("grain", (0.0, 0.02, 0.05, 0.1, 0.2, 0.4))],
)
def test_frozen_verdict_matches_full_decode_around_the_difference_threshold(kind, strengths) -> None:
    rng = np.random.default_rng(13)
    base = smooth_gray(rng)
    before = encode(base)
    verdicts = []
    for strength in strengths:
        after = encode(_changed(rng, base, kind, strength))
        reference = full_difference(before, after)
        measured = frame_difference(analyze_frame(before), analyze_frame(after))
        frozen_full = reference <= THRESHOLDS.frozen_diff_max
        stats_after = analyze_frame(after)
        verdict = classify_frame(stats_after, expected_size=SIZE, diff_prev=measured)
        assert (verdict == FrameVerdict.FROZEN) == frozen_full, (kind, strength, reference, measured)
        verdicts.append(frozen_full)
    assert set(verdicts) == {True, False}


def test_thumb_differences_never_exceed_twice_the_full_scale_difference() -> None:
    # The property the full-scale re-measure band relies on; the ratios it prints are the
    # documented margin of a thumb-only check (about 0.9-1.0 for a moved patch, 0.3-0.4
    # for grain or sparse specks: the thumb hides those).
    rng = np.random.default_rng(14)
    ratios = {"patch": [], "grain": []}
    for _ in range(6):
        base = smooth_gray(rng)
        for kind, strength in (("patch", rng.integers(20, 200)), ("grain", rng.uniform(0.02, 0.4))):
            a, b = encode(base), encode(_changed(rng, base, kind, strength))
            thumb_a, thumb_b = analyze_frame(a).thumb, analyze_frame(b).thumb
            thumb = np.abs(np.frombuffer(thumb_a, np.uint8).astype(int) - np.frombuffer(thumb_b, np.uint8)).mean()
            ratios[kind].append(thumb / 255.0 / full_difference(a, b))
    assert max(max(r) for r in ratios.values()) < FULL_SCALE_DIFF_FACTOR
    assert 0.8 < min(ratios["patch"]) and max(ratios["grain"]) < 0.6, ratios


def test_small_differences_are_full_scale_measurements() -> None:
    rng = np.random.default_rng(15)
    base = smooth_gray(rng)
    a, b = encode(base), encode(_changed(rng, base, "grain", 0.1))
    assert frame_difference(analyze_frame(a), analyze_frame(b)) == pytest.approx(full_difference(a, b), abs=1e-12)


def test_identical_bytes_are_zero_and_difference_is_symmetric() -> None:
    rng = np.random.default_rng(16)
    a = analyze_frame(encode(smooth_gray(rng)))
    b = analyze_frame(encode(smooth_gray(rng)))
    assert frame_difference(a, a) == 0.0
    assert frame_difference(a, b) == frame_difference(b, a) > 0.05


def test_difference_is_none_when_frames_are_incomparable() -> None:
    good = analyze_frame(encode(np.full((64, 64), 100)))
    other_size = analyze_frame(encode(np.full((64, 48), 100)))
    corrupt = analyze_frame(b"\xff\xd8garbage")
    assert frame_difference(good, other_size) is None
    assert frame_difference(good, corrupt) is None
    assert frame_difference(corrupt, corrupt) is None


# --- corrupt and wrong size -----------------------------------------------------------------


def _sample_jpeg() -> bytes:
    return encode(smooth_gray(np.random.default_rng(17)))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"",
        lambda: b"\xff\xd8" + bytes(range(256)) * 8,
        lambda: b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9",
        lambda: _sample_jpeg()[: len(_sample_jpeg()) // 2],
        lambda: _sample_jpeg()[:-2],
        lambda: _sample_jpeg()[:600],
        lambda: np.random.default_rng(18).bytes(5000),
        _png,
    ],
    ids=["empty", "soi-garbage", "soi-garbage-eoi", "half", "no-eoi", "header-only", "random", "png"],
)
def test_undecodable_bytes_are_corrupt_and_never_raise(make) -> None:
    stats = analyze_frame(make())
    assert not stats.ok
    assert stats.error and "\n" not in stats.error
    assert classify_frame(stats, expected_size=SIZE, diff_prev=None) == FrameVerdict.CORRUPT


def test_truncated_frames_stay_corrupt_when_pillow_is_told_to_accept_them(monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    jpeg = _sample_jpeg()
    assert not analyze_frame(jpeg[: len(jpeg) * 2 // 3]).ok


def test_a_header_claiming_a_huge_frame_is_corrupt_without_decoding() -> None:
    jpeg = bytearray(encode(np.full((16, 16), 100)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (8000).to_bytes(2, "big") * 2  # height, width
    stats = analyze_frame(bytes(jpeg))
    assert not stats.ok and "8000x8000" in stats.error


def test_wrong_size_is_reported_with_the_full_size() -> None:
    stats = analyze_frame(encode(np.full((384, 384), 100)))
    assert (stats.width, stats.height) == (384, 384)
    assert classify_frame(stats, expected_size=SIZE, diff_prev=None) == FrameVerdict.WRONG_SIZE


# --- classification order -------------------------------------------------------------------


def _stats(**changes) -> FrameStats:
    return dataclasses.replace(analyze_frame(encode(np.full(SIZE, 100))), **changes)


@pytest.mark.parametrize(
    "stats,diff_prev,expected",
    [
        (None, None, FrameVerdict.MISSING),
        (_stats(ok=False, width=384, black_fraction=1.0), 0.0, FrameVerdict.CORRUPT),
        (_stats(width=384, black_fraction=1.0), 0.0, FrameVerdict.WRONG_SIZE),
        (_stats(black_fraction=0.98), 0.0, FrameVerdict.BLACK),
        (_stats(black_fraction=0.9799), 0.001, FrameVerdict.FROZEN),
        (_stats(), 0.0011, FrameVerdict.VALID),
        (_stats(), None, FrameVerdict.VALID),
    ],
)
def test_classification_order(stats, diff_prev, expected) -> None:
    assert classify_frame(stats, expected_size=SIZE, diff_prev=diff_prev) == expected


def test_thresholds_are_honoured() -> None:
    stats = _stats(black_fraction=0.9)
    loose = FrameThresholds(black_fraction_min=0.85, frozen_diff_max=0.01)
    assert classify_frame(stats, expected_size=SIZE, diff_prev=None, thresholds=loose) == FrameVerdict.BLACK
    assert classify_frame(_stats(), expected_size=SIZE, diff_prev=0.005, thresholds=loose) == FrameVerdict.FROZEN


# --- received pictures: the same verdicts as the JPEG of the same picture -------------------


def picture_of(jpeg: bytes) -> np.ndarray:
    """The full-scale luma plane a receiver would hold for this frame."""
    return full_luma(jpeg).astype(np.uint8)


def verdicts_of(before: bytes, after: bytes) -> tuple[FrameVerdict, FrameVerdict]:
    """(JPEG path verdict, picture path verdict) of `after` following `before`."""
    jpeg_before, jpeg_after = analyze_frame(before), analyze_frame(after)
    pic_before, pic_after = analyze_picture(picture_of(before)), analyze_picture(picture_of(after))
    return (
        classify_frame(jpeg_after, expected_size=SIZE, diff_prev=frame_difference(jpeg_before, jpeg_after)),
        classify_frame(pic_after, expected_size=SIZE, diff_prev=frame_difference(pic_before, pic_after)),
    )


@pytest.mark.parametrize("layout", ["block", "scattered"])
def test_picture_black_verdicts_equal_the_jpeg_path_around_the_fraction_threshold(layout: str) -> None:
    rng = np.random.default_rng(21)
    seen = set()
    for dark_fraction in (0.95, 0.975, 0.979, 0.981, 0.985, 0.999):
        jpeg = encode(_dark_with_bright(rng, dark_fraction, layout))
        jpeg_verdict, picture_verdict = verdicts_of(encode(smooth_gray(rng)), jpeg)
        assert jpeg_verdict == picture_verdict, (layout, dark_fraction)
        seen.add(picture_verdict)
    assert seen == {FrameVerdict.BLACK, FrameVerdict.VALID}


def test_picture_black_verdicts_equal_the_jpeg_path_around_the_luma_threshold() -> None:
    rng = np.random.default_rng(22)
    seen = set()
    for level in (21, 24, 26, 29):
        for noise_sd in (0.0, 4.0):
            jpeg = encode(level + rng.normal(0, noise_sd, SIZE))
            jpeg_verdict, picture_verdict = verdicts_of(encode(smooth_gray(rng)), jpeg)
            assert jpeg_verdict == picture_verdict, (level, noise_sd)
            seen.add(picture_verdict)
    assert seen == {FrameVerdict.BLACK, FrameVerdict.VALID}


@pytest.mark.parametrize(
    "kind,strengths", [("patch", (0, 180, 220, 260, 400)), ("grain", (0.0, 0.05, 0.1, 0.4))]
)
def test_picture_frozen_verdicts_equal_the_jpeg_path_around_the_difference_threshold(kind, strengths) -> None:
    rng = np.random.default_rng(23)
    base = smooth_gray(rng)
    before = encode(base)
    seen = set()
    for strength in strengths:
        jpeg_verdict, picture_verdict = verdicts_of(before, encode(_changed(rng, base, kind, strength)))
        assert jpeg_verdict == picture_verdict, (kind, strength)
        seen.add(picture_verdict)
    assert seen == {FrameVerdict.FROZEN, FrameVerdict.VALID}


def test_picture_statistics_match_the_jpeg_path() -> None:
    jpeg = encode(smooth_gray(np.random.default_rng(24)))
    from_jpeg, from_picture = analyze_frame(jpeg), analyze_picture(picture_of(jpeg))
    assert (from_picture.width, from_picture.height, from_picture.thumb_size) == (512, 512, (128, 128))
    assert from_picture.luma_mean == pytest.approx(from_jpeg.luma_mean, abs=1.0)
    assert from_picture.luma_std == pytest.approx(from_jpeg.luma_std, rel=0.05)
    assert from_picture.full_luma == picture_of(jpeg).tobytes()


def test_a_picture_of_the_wrong_size_is_wrong_size() -> None:
    stats = analyze_picture(np.full((384, 510), 128, np.uint8))
    assert classify_frame(stats, expected_size=SIZE, diff_prev=None) == FrameVerdict.WRONG_SIZE
