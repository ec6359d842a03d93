"""Stream checks over literal and generated series."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tasks.session.checks import (
    NOT_ENOUGH,
    CheckName,
    check_any_frames,
    check_first_frame,
    check_fps,
    check_prompt_response,
    check_runs,
    check_stall,
    check_vram,
    evaluate_prompt_switch,
    steady_fps,
)
from tasks.session.frames import FrameVerdict, analyze_frame, frame_difference

TICK_S = 0.5


def counter(rate_fps: float, duration_s: float, *, start_s: float = 0.0) -> list[tuple[float, int]]:
    """(t, frames_out) samples every TICK_S of a stream at a constant rate."""
    times = np.arange(start_s, start_s + duration_s + 1e-9, TICK_S)
    return [(float(t), int((t - start_s) * rate_fps)) for t in times]


def flat_for(stall_s: float, *, rate_fps: float = 12.0, before_s: float = 20.0) -> list[tuple[float, int]]:
    """Rate, then frames_out flat for stall_s, then rate again."""
    head = counter(rate_fps, before_s)
    last_t, last_n = head[-1]
    flat = [(last_t + t, last_n) for t in np.arange(TICK_S, stall_s + 1e-9, TICK_S)]
    tail = [(last_t + stall_s + t, last_n + 1 + int(t * rate_fps)) for t in np.arange(0, 5, TICK_S)]
    return head + flat + tail


# --- first frame ----------------------------------------------------------------------------


def test_first_frame() -> None:
    assert check_first_frame(0.7, timeout_s=60).passed
    late = check_first_frame(61.0, timeout_s=60)
    assert not late.passed and late.value == 61.0 and "61.0 s" in late.reason
    none = check_first_frame(None, timeout_s=60)
    assert not none.passed and none.name == CheckName.FIRST_FRAME == "first_frame"


# --- fps ------------------------------------------------------------------------------------


def test_steady_fps_ignores_the_warm_up() -> None:
    warm_up = [(t, 0) for t in np.arange(0, 5, TICK_S)]  # nothing for 5 s, then 12 fps
    samples = warm_up + [(5 + t, n) for t, n in counter(12, 60)]
    figures = steady_fps(samples, warmup_s=5.0)
    assert figures.steady_fps == pytest.approx(12.0)
    assert figures.p50 == pytest.approx(12.0) and figures.window_s == pytest.approx(60.0)
    assert check_fps(figures, min_fps=6).passed


def test_fps_quantiles_show_jitter() -> None:
    rng = np.random.default_rng(1)
    frames, samples = 0, []
    for i in range(200):
        samples.append((i * TICK_S, frames))
        frames += int(rng.choice([2, 6, 7]))  # mostly ~13 fps, sometimes 4 fps
    figures = steady_fps(samples)
    assert figures.p05 == pytest.approx(4.0)
    assert figures.p05 < figures.steady_fps < figures.p50


def test_low_fps_fails_with_the_numbers() -> None:
    result = check_fps(steady_fps(counter(3, 60)), min_fps=6)
    assert not result.passed and result.value == pytest.approx(3.0)
    assert "3.0 fps" in result.reason and "6" in result.reason


def test_counter_reset_does_not_count_as_negative_frames() -> None:
    before = counter(10, 30)
    after = [(30.5 + t, n) for t, n in counter(10, 30)]  # frames_out restarts from 0
    figures = steady_fps(before + after)
    assert figures.steady_fps == pytest.approx(10.0, rel=0.02)


@pytest.mark.parametrize("samples", [[], [(0.0, 0)], counter(12, 4.5), counter(12, 5.0)])
def test_fps_with_too_few_samples_passes_and_says_so(samples) -> None:
    figures = steady_fps(samples, warmup_s=5.0)
    assert figures.steady_fps is None
    result = check_fps(figures, min_fps=6)
    assert result.passed and NOT_ENOUGH in result.reason and result.value is None


# --- stall ----------------------------------------------------------------------------------


def test_flat_exactly_at_the_limit_is_not_a_stall() -> None:
    result = check_stall(flat_for(10.0), stall_timeout_s=10)
    assert result.passed and result.stall_count == 0
    assert result.value == pytest.approx(10.0)


def test_flat_longer_than_the_limit_is_a_stall() -> None:
    result = check_stall(flat_for(10.5), stall_timeout_s=10)
    assert not result.passed
    assert result.stall_count == 1 and result.stall_s == pytest.approx(10.5)
    assert result.reason == "frames_out stalled for 10.5 s (limit 10 s) at t=20.0 s"


def test_stall_at_the_end_counts_and_stalls_add_up() -> None:
    samples = flat_for(12.0)
    t_end, n_end = samples[-1]
    samples += [(t_end + t, n_end) for t in np.arange(TICK_S, 15 + 1e-9, TICK_S)]  # dies at the end
    result = check_stall(samples, stall_timeout_s=10)
    assert result.stall_count == 2
    assert result.stall_s == pytest.approx(27.0)
    assert result.value == pytest.approx(15.0)
    assert "2 stalls" in result.reason


def test_stall_is_measured_between_sample_timestamps_across_gaps() -> None:
    samples = [(0.0, 0), (1.0, 10), (12.5, 10), (13.0, 20)]  # the sampler missed ticks
    result = check_stall(samples, stall_timeout_s=10)
    assert not result.passed and result.value == pytest.approx(12.0)


def test_stall_with_too_few_samples_passes_and_says_so() -> None:
    result = check_stall([(0.0, 5)], stall_timeout_s=10)
    assert result.passed and NOT_ENOUGH in result.reason


# --- black and freeze runs ------------------------------------------------------------------


def series(pattern: str, *, tick_s: float = TICK_S) -> list[tuple[float, FrameVerdict]]:
    """Verdict series from letters: v valid, b black, f frozen, c corrupt, w wrong size."""
    letters = {
        "v": FrameVerdict.VALID,
        "b": FrameVerdict.BLACK,
        "f": FrameVerdict.FROZEN,
        "c": FrameVerdict.CORRUPT,
        "w": FrameVerdict.WRONG_SIZE,
    }
    return [(i * tick_s, letters[ch]) for i, ch in enumerate(pattern)]


def test_black_run_boundaries() -> None:
    at_limit = check_runs(series("vv" + "b" * 5 + "vv"), FrameVerdict.BLACK, 2.0, CheckName.BLACK)
    assert at_limit.passed and at_limit.value == pytest.approx(2.0)  # 5 samples span 2.0 s
    over = check_runs(series("vv" + "b" * 6 + "vv"), FrameVerdict.BLACK, 2.0, CheckName.BLACK)
    assert not over.passed and over.value == pytest.approx(2.5)
    assert over.reason == "black frames for 2.5 s (limit 2 s) from t=1.0 s"


def test_freeze_run_starts_at_the_frame_it_repeats() -> None:
    # 4 frozen samples: the frame of t=0.5 was still there at t=2.5.
    at_limit = check_runs(series("vv" + "f" * 4 + "v"), FrameVerdict.FROZEN, 2.0, CheckName.FREEZE)
    assert at_limit.passed and at_limit.value == pytest.approx(2.0)
    over = check_runs(series("vv" + "f" * 5 + "v"), FrameVerdict.FROZEN, 2.0, CheckName.FREEZE)
    assert not over.passed and over.value == pytest.approx(2.5) and "from t=0.5 s" in over.reason


def test_interrupted_runs_are_separate_and_a_run_at_the_end_counts() -> None:
    result = check_runs(series("bbbvbbbvvbbbbbbb"), FrameVerdict.BLACK, 2.0, CheckName.BLACK)
    assert not result.passed and result.value == pytest.approx(3.0) and "3 runs" in result.reason
    clean = check_runs(series("vvvv"), FrameVerdict.BLACK, 2.0, CheckName.BLACK)
    assert clean.passed and clean.value == 0.0


def test_any_corrupt_or_wrong_size_frame_fails() -> None:
    result = check_any_frames(series("vvcvvc"), FrameVerdict.CORRUPT, CheckName.CORRUPT)
    assert not result.passed and result.value == 2 and "first at t=1.0 s" in result.reason
    wrong = check_any_frames(
        series("wwv"), FrameVerdict.WRONG_SIZE, CheckName.FRAME_SIZE, detail="384x384, expected 512x512"
    )
    assert not wrong.passed and "384x384" in wrong.reason
    assert check_any_frames(series("vvv"), FrameVerdict.CORRUPT, CheckName.CORRUPT).passed


# --- prompt response ------------------------------------------------------------------------


def noise_diffs(rng: np.random.Generator, count: int) -> np.ndarray:
    """Frame-to-frame differences of moving output: 0.01-0.05 with rare spikes to 0.08."""
    diffs = rng.uniform(0.01, 0.05, count)
    spikes = rng.random(count) < 0.03
    diffs[spikes] = rng.uniform(0.05, 0.08, int(spikes.sum()))
    return diffs


@pytest.mark.parametrize("seed", range(20))
def test_noisy_output_that_ignores_the_prompt_does_not_count_as_responded(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pre = noise_diffs(rng, 60)
    # An insensitive stream keeps the same look: post frames differ from the last pre-switch
    # frame by the same noise as frames before the switch differ from each other.
    post = [(TICK_S * (i + 1), float(d)) for i, d in enumerate(noise_diffs(rng, 20))]
    response = evaluate_prompt_switch(pre, post)
    assert response.evaluated and not response.responded and response.latency_s is None
    # The old fixed threshold (10 on 0-255) would have taken this noise for a response.
    assert max(d for _, d in post) > 10 / 255


def _prompt_frames(rng: np.random.Generator, look_seed: int, count: int) -> list:
    """Analysed JPEG frames of one prompt's look, each with fresh grain (moving output)."""
    look = np.random.default_rng(look_seed).integers(30, 220, (16, 16), dtype=np.uint8)
    scene = np.asarray(Image.fromarray(look).resize((256, 256), Image.BICUBIC), dtype=np.float64)
    frames = []
    for _ in range(count):
        pixels = np.clip(scene + rng.normal(0, 12, scene.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        frames.append(analyze_frame(buffer.getvalue()))
    return frames


@pytest.mark.parametrize("new_look,expected", [(1, False), (2, True)], ids=["insensitive", "responsive"])
def test_prompt_response_on_real_frames(new_look: int, expected: bool) -> None:
    rng = np.random.default_rng(3)
    before = _prompt_frames(rng, 1, 20)
    after = _prompt_frames(rng, new_look, 12)
    pre_diffs = [frame_difference(a, b) for a, b in zip(before, before[1:])]
    post = [(TICK_S * (i + 1), frame_difference(before[-1], frame)) for i, frame in enumerate(after)]
    response = evaluate_prompt_switch(pre_diffs, post)
    assert response.evaluated and response.responded is expected
    assert (response.latency_s == TICK_S) if expected else response.latency_s is None


def test_a_real_change_counts_and_its_latency_is_when_it_happened() -> None:
    rng = np.random.default_rng(1)
    pre = noise_diffs(rng, 60)
    post = [(TICK_S * (i + 1), float(d)) for i, d in enumerate(noise_diffs(rng, 5))]
    post += [(TICK_S * (i + 6), 0.2 + float(d)) for i, d in enumerate(noise_diffs(rng, 10))]
    response = evaluate_prompt_switch(pre, post, margin=2.0, within_s=10)
    assert response.responded and response.latency_s == pytest.approx(3.0)
    assert response.threshold == pytest.approx(2.0 * np.percentile(pre, 95))


def test_an_immediate_change_has_the_first_sample_as_latency() -> None:
    pre = [0.02, 0.03, 0.025, 0.02, 0.03]
    response = evaluate_prompt_switch(pre, [(0.5, 0.3), (1.0, 0.3), (1.5, 0.31)])
    assert response.responded and response.latency_s == 0.5


def test_one_outlier_frame_is_not_a_response() -> None:
    pre = [0.02, 0.03, 0.025, 0.02, 0.03]
    post = [(0.5, 0.5), (1.0, 0.02), (1.5, 0.03), (2.0, 0.02), (2.5, 0.6), (3.0, 0.02)]
    assert not evaluate_prompt_switch(pre, post).responded


def test_a_change_after_the_window_is_too_late() -> None:
    pre = [0.02, 0.03, 0.025, 0.02, 0.03]
    post = [(t, 0.02) for t in np.arange(0.5, 10.01, 0.5)] + [(t, 0.3) for t in np.arange(10.5, 15, 0.5)]
    response = evaluate_prompt_switch(pre, post, within_s=10)
    assert response.evaluated and not response.responded
    assert "within 10 s" in response.reason


def test_frozen_pre_switch_output_still_needs_a_visible_change() -> None:
    pre = [0.0] * 10
    assert not evaluate_prompt_switch(pre, [(0.5, 0.0005), (1.0, 0.0004), (1.5, 0.0005)]).responded
    assert evaluate_prompt_switch(pre, [(0.5, 0.01), (1.0, 0.01), (1.5, 0.01)]).responded


def test_prompt_switch_with_too_little_data_is_not_judged() -> None:
    few_pre = evaluate_prompt_switch([0.02, 0.03], [(0.5, 0.5), (1.0, 0.5), (1.5, 0.5)])
    no_post = evaluate_prompt_switch([0.02] * 10, [(11.0, 0.5)], within_s=10)
    assert not few_pre.evaluated and not no_post.evaluated
    assert NOT_ENOUGH in few_pre.reason


def test_check_prompt_response_fails_when_any_switch_got_no_answer() -> None:
    pre = [0.02, 0.03, 0.025, 0.02, 0.03]
    answered = evaluate_prompt_switch(pre, [(0.5, 0.3), (1.0, 0.3), (1.5, 0.3), (2.0, 0.3)])
    slow = evaluate_prompt_switch(pre, [(0.5, 0.02), (1.0, 0.02), (1.5, 0.3), (2.0, 0.3)])
    ignored = evaluate_prompt_switch(pre, [(0.5, 0.02), (1.0, 0.02), (1.5, 0.02)])
    unjudged = evaluate_prompt_switch([], [(0.5, 0.3)])
    passed = check_prompt_response([answered, slow, unjudged])
    assert passed.passed and passed.value == pytest.approx(1.5)
    failed = check_prompt_response([answered, ignored])
    assert not failed.passed and failed.reason.startswith("1 of 2 prompt switches got no response")
    nothing = check_prompt_response([unjudged])
    assert nothing.passed and NOT_ENOUGH in nothing.reason


# --- VRAM -----------------------------------------------------------------------------------


def vram_series(rng: np.random.Generator, *, slope_mb_per_s: float, noise_mb: float, duration_s: float = 300.0):
    times = np.arange(0, duration_s, TICK_S)
    values = 8000 + slope_mb_per_s * times + rng.normal(0, noise_mb, times.size)
    return list(zip(times.tolist(), values.tolist()))


def test_a_slow_steady_leak_fails() -> None:
    samples = vram_series(np.random.default_rng(1), slope_mb_per_s=1.0, noise_mb=40)  # +300 MB over 300 s
    leak, ceiling, figures = check_vram(samples, total_mb=24000)
    assert not leak.passed and leak.name == CheckName.VRAM_LEAK
    assert figures.slope_mb_per_s == pytest.approx(1.0, abs=0.05)
    assert ceiling.passed


@pytest.mark.parametrize("seed", range(10))
def test_a_flat_noisy_series_passes(seed: int) -> None:
    samples = vram_series(np.random.default_rng(seed), slope_mb_per_s=0.0, noise_mb=80)
    leak, _, figures = check_vram(samples, total_mb=24000)
    assert leak.passed, leak.reason
    assert abs(figures.slope_growth_mb) < 100


def test_a_late_jump_is_caught() -> None:
    times = np.arange(0, 300, TICK_S)
    values = np.where(times < 230, 8000.0, 8500.0)  # +500 MB for the last 70 s
    leak, _, figures = check_vram(list(zip(times, values)), total_mb=24000, tolerance_mb=200)
    assert not leak.passed
    assert figures.quarter_growth_mb == pytest.approx(500 * 70 / 75, rel=0.02)


def test_growth_the_trend_hides_is_caught_by_the_quarter_means() -> None:
    # A mid-run bump pulls the least-squares trend down; the ends still grew by 250 MB.
    times = np.arange(0, 300, TICK_S)
    values = np.select([times < 75, times < 150, times < 225], [8000.0, 8600.0, 8000.0], 8250.0)
    leak, _, figures = check_vram(list(zip(times, values)), total_mb=24000, tolerance_mb=200)
    assert figures.slope_growth_mb < 200 < figures.quarter_growth_mb
    assert not leak.passed and leak.value == pytest.approx(250.0)


def test_unix_timestamps_give_the_same_slope() -> None:
    samples = vram_series(np.random.default_rng(2), slope_mb_per_s=2.0, noise_mb=10)
    shifted = [(t + 1.76e9, mb) for t, mb in samples]
    assert check_vram(shifted, total_mb=None)[2].slope_mb_per_s == pytest.approx(2.0, abs=0.01)


def test_ceiling() -> None:
    steady = [(float(t), 22800.0) for t in range(20)]
    _, above, _ = check_vram(steady, total_mb=24000, max_percent=90)
    assert not above.passed and above.value == pytest.approx(95.0) and "95.0 %" in above.reason
    _, within, _ = check_vram([(float(t), 19000.0) for t in range(20)], total_mb=24000)
    assert within.passed


def test_vram_with_too_little_data_passes_and_says_so() -> None:
    leak, ceiling, _ = check_vram([(0.0, 1000.0), (1.0, 5000.0)], total_mb=None)
    assert leak.passed and NOT_ENOUGH in leak.reason
    assert ceiling.passed and "vram_total_mb unknown" in ceiling.reason
    leak, ceiling, _ = check_vram([], total_mb=24000)
    assert leak.passed and ceiling.passed and NOT_ENOUGH in ceiling.reason
