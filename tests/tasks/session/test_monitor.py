"""StreamMonitor on generated JPEG ticks: stale vs frozen, black and wrong-size runs, prompt response."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Iterable

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tasks.scope.models import GpuStats
from tasks.session.driver import StreamCounters, Tick
from tasks.session.monitor import STALE, MonitorLimits, StreamMonitor

SIZE = 256
TICK_S = 0.5
FPS = 12
LIMITS = MonitorLimits(
    width=SIZE, height=SIZE, stall_timeout_s=4.0, freeze_s=2.0, black_s=2.0, min_fps=6.0, fps_warmup_s=1.0,
    prompt_margin=2.0, prompt_response_s=5.0, vram_leak_tolerance_mb=200.0, max_vram_percent=90.0,
    black_luma_max=25, black_fraction_min=0.98, frozen_diff_max=0.001,
)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def base_image(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth colour noise picture: what one prompt 'looks like'."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(30, 226, (8, 8, 3), dtype=np.uint8))
    smooth = coarse.resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(4))
    return np.asarray(smooth).astype(np.float32)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def noisy(base: np.ndarray, seed: int) -> bytes:
    """The picture with frame-to-frame grain: a live, moving output of the same look."""
    return jpeg(base + np.random.default_rng(1000 + seed).normal(0, 4, base.shape))


def black(seed: int) -> bytes:
    return jpeg(5 + np.random.default_rng(seed).normal(0, 1.5, (SIZE, SIZE, 3)))


def tick(t_s: float, frame: bytes | None, frames_out: int | None, vram_mb: float = 9000.0) -> Tick:
    counters = None if frames_out is None else StreamCounters(frames_out=frames_out)
    gpu = GpuStats(vram_allocated_mb=vram_mb, vram_total_mb=24564.0)
    return Tick(t_s=t_s, captured_at=T0 + dt.timedelta(seconds=t_s), frame=frame, counters=counters, gpu=gpu)


def feed(monitor: StreamMonitor, ticks: Iterable[Tick]) -> list[tuple[str, object]]:
    """Observe each tick; return (verdict, fatal check or None) per tick."""
    seen = []
    for t in ticks:
        observed = monitor.observe(t)
        seen.append((observed.verdict, monitor.fatal(t.t_s)))
    return seen


def healthy_ticks(count: int, *, look: np.ndarray, start: int = 0) -> list[Tick]:
    return [tick((start + i) * TICK_S, noisy(look, start + i), int((start + i) * TICK_S * FPS)) for i in range(count)]


@pytest.fixture(scope="module")
def look_a() -> np.ndarray:
    return base_image(1)


@pytest.fixture(scope="module")
def look_b() -> np.ndarray:
    return base_image(2)


def test_healthy_stream_is_valid_and_passes_every_check(look_a):
    monitor = StreamMonitor(LIMITS)
    seen = feed(monitor, healthy_ticks(16, look=look_a))
    assert [v for v, _ in seen] == ["valid"] * 16
    assert all(fatal is None for _, fatal in seen)
    result = monitor.finish()
    assert [c.name for c in result.checks if not c.passed] == []
    assert result.fps.steady_fps == pytest.approx(FPS, rel=0.05)
    assert result.verdict_counts == {"valid": 16}


def test_a_stall_with_an_unchanged_frame_is_stale_not_frozen(look_a):
    monitor = StreamMonitor(LIMITS)
    head = healthy_ticks(6, look=look_a)
    feed(monitor, head)
    last_frame, last_count = head[-1].frame, head[-1].counters.frames_out
    stall_started_s = head[-1].t_s
    stalled = [tick(stall_started_s + (i + 1) * TICK_S, last_frame, last_count) for i in range(12)]
    seen = feed(monitor, stalled)
    assert {v for v, _ in seen} == {STALE}
    fatal_at = [t.t_s for t, (_, fatal) in zip(stalled, seen, strict=True) if fatal is not None]
    assert fatal_at and fatal_at[0] - stall_started_s > LIMITS.stall_timeout_s  # not before the limit ...
    assert fatal_at[0] - stall_started_s <= LIMITS.stall_timeout_s + TICK_S  # ... and at the first tick past it
    fatal = seen[-1][1]
    assert fatal.name == "stall" and not fatal.passed
    result = monitor.finish()
    failed = {c.name for c in result.checks if not c.passed}
    assert "stall" in failed and "freeze" not in failed
    assert result.freeze_s == 0.0 and result.verdict_counts[STALE] == 12


def _frozen_run(look: np.ndarray):
    """6 live ticks, then the last frame repeated for 8 ticks while frames_out keeps advancing."""
    monitor = StreamMonitor(LIMITS)
    head = healthy_ticks(6, look=look)
    feed(monitor, head)
    frozen = [tick((6 + i) * TICK_S, head[-1].frame, int((6 + i) * TICK_S * FPS)) for i in range(8)]
    seen = feed(monitor, frozen)
    fatal_index = next(i for i, (_, fatal) in enumerate(seen) if fatal is not None)
    # A frozen run starts at the last frame that changed (head[-1]), as checks.check_runs counts it.
    return monitor, seen, frozen, fatal_index, head[-1].t_s


def test_frozen_frames_while_frames_out_advances_are_a_freeze(look_a):
    monitor, seen, frozen, fatal_index, run_start_s = _frozen_run(look_a)
    assert {v for v, _ in seen} == {"frozen"}
    assert frozen[fatal_index].t_s - run_start_s > LIMITS.freeze_s  # never stopped before the limit
    assert seen[fatal_index][1].name == "freeze" and not seen[fatal_index][1].passed
    failed = {c.name for c in monitor.finish().checks if not c.passed}
    assert "freeze" in failed and "stall" not in failed


def test_a_freeze_stops_the_stream_at_the_first_tick_past_freeze_s(look_a):
    _, _, frozen, fatal_index, run_start_s = _frozen_run(look_a)
    assert frozen[fatal_index - 1].t_s - run_start_s <= LIMITS.freeze_s


def test_a_black_run_ends_the_stream_after_black_s(look_a):
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(4, look=look_a))
    dark = [tick((4 + i) * TICK_S, black(i), int((4 + i) * TICK_S * FPS)) for i in range(8)]
    seen = feed(monitor, dark)
    assert {v for v, _ in seen} == {"black"}
    fatal_index = next(i for i, (_, fatal) in enumerate(seen) if fatal is not None)
    assert dark[fatal_index].t_s - dark[0].t_s > LIMITS.black_s
    assert dark[fatal_index - 1].t_s - dark[0].t_s <= LIMITS.black_s
    assert seen[fatal_index][1].name == "black"
    assert monitor.first_bad is not None and monitor.first_bad.verdict == "black"
    assert monitor.last_good is not None and monitor.last_good[0].t_s == 3 * TICK_S


def test_a_wrong_size_frame_is_fatal_at_once(look_a):
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(3, look=look_a))
    small = jpeg(base_image(1, size=SIZE // 2))
    verdict, fatal = feed(monitor, [tick(3 * TICK_S, small, 3 * 6)])[0]
    assert verdict == "wrong_size"
    assert fatal is not None and fatal.name == "frame_size" and not fatal.passed


def test_wrong_size_frames_end_the_stream_and_fail_frame_size(look_a):
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(3, look=look_a))
    small = jpeg(base_image(1, size=SIZE // 2))
    seen = feed(monitor, [tick((3 + i) * TICK_S, small, (3 + i) * 6) for i in range(2)])
    assert [v for v, _ in seen] == ["wrong_size", "wrong_size"]
    fatal = seen[-1][1]
    assert fatal is not None and fatal.name == "frame_size" and not fatal.passed
    assert f"{SIZE}x{SIZE}" in fatal.reason


def test_one_wrong_size_frame_among_good_ones_fails_frame_size(look_a):
    monitor = StreamMonitor(LIMITS)
    small = jpeg(base_image(1, size=SIZE // 2))
    ticks = healthy_ticks(3, look=look_a) + [tick(3 * TICK_S, small, 18)] + healthy_ticks(3, look=look_a, start=4)
    feed(monitor, ticks)
    failed = [c for c in monitor.finish().checks if not c.passed]
    assert [c.name for c in failed] == ["frame_size"]
    assert failed[0].value == 1.0


def _switch_run(look_before: np.ndarray, look_after: np.ndarray):
    """8 ticks of one look, a prompt switch, then 12 ticks (past the response window) of another or the same look."""
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(8, look=look_before))
    switch_s = 8 * TICK_S - 0.1
    monitor.note_prompt_switch(switch_s, T0 + dt.timedelta(seconds=switch_s), "a forest", "a desert")
    after = [tick((8 + i) * TICK_S, noisy(look_after, 100 + i), int((8 + i) * TICK_S * FPS)) for i in range(12)]
    seen = feed(monitor, after)
    assert {v for v, _ in seen} == {"valid"} and all(f is None for _, f in seen)
    return monitor.finish(), switch_s


def test_a_prompt_switch_that_changes_the_look_responds(look_a, look_b):
    result, switch_s = _switch_run(look_a, look_b)
    (switch, response), = result.switches
    assert (switch.prompt_from, switch.prompt_to) == ("a forest", "a desert")
    assert response.evaluated and response.responded
    assert response.latency_s == pytest.approx(8 * TICK_S - switch_s)  # the first post-switch frame moved
    assert response.best_median > response.threshold
    assert next(c for c in result.checks if c.name == "prompt_response").passed


def test_a_prompt_switch_that_keeps_the_look_does_not_respond(look_a):
    result, _ = _switch_run(look_a, look_a)
    (_, response), = result.switches
    assert response.evaluated and not response.responded and response.latency_s is None
    assert response.best_median <= response.threshold
    check = next(c for c in result.checks if c.name == "prompt_response")
    assert not check.passed and "no response" in check.reason


def test_a_switch_whose_window_the_stream_end_cut_short_does_not_fail_the_run(look_a):
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(8, look=look_a))
    switch_s = 8 * TICK_S - 0.1
    monitor.note_prompt_switch(switch_s, T0 + dt.timedelta(seconds=switch_s), "a forest", "a desert")
    # The output would change 0.3 s after the switch, but the stream ends first: one more frame of the old look.
    feed(monitor, [tick(switch_s + 0.05, noisy(look_a, 50), int((switch_s + 0.05) * FPS))])
    check = next(c for c in monitor.finish().checks if c.name == "prompt_response")
    assert check.passed, check.reason


def test_missing_frames_and_metrics_are_recorded_not_fatal(look_a):
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(3, look=look_a))
    verdict, fatal = feed(monitor, [tick(3 * TICK_S, None, None)])[0]
    assert verdict == "missing" and fatal is None
    assert monitor.finish().verdict_counts == {"valid": 3, "missing": 1}


def test_a_window_never_swallows_the_next_switch(look_a, look_b):
    """After a switch, the next one waits until the window closed and the noise was measured again."""
    monitor = StreamMonitor(LIMITS)
    feed(monitor, healthy_ticks(8, look=look_a))
    assert monitor.ready_for_switch(8 * TICK_S)
    monitor.note_prompt_switch(8 * TICK_S - 0.1, T0, "a forest", "a desert")
    assert not monitor.ready_for_switch(8 * TICK_S)  # its window is open, no noise measured since
    feed(monitor, [tick((8 + i) * TICK_S, noisy(look_b, 200 + i), int((8 + i) * TICK_S * FPS)) for i in range(3)])
    assert monitor.switches[0].responded_at_s is not None  # answered: the window closed early
    assert not monitor.ready_for_switch(11 * TICK_S)  # but the new look's own noise is not measured yet
    feed(monitor, [tick((11 + i) * TICK_S, noisy(look_b, 300 + i), int((11 + i) * TICK_S * FPS)) for i in range(5)])
    assert monitor.ready_for_switch(16 * TICK_S)
    monitor.note_prompt_switch(16 * TICK_S - 0.1, T0, "a desert", "a forest")
    feed(monitor, [tick((16 + i) * TICK_S, noisy(look_a, 400 + i), int((16 + i) * TICK_S * FPS)) for i in range(12)])
    result = monitor.finish()
    assert [r.evaluated and r.responded for _, r in result.switches] == [True, True]


def test_checks_that_cannot_run_are_skipped_with_their_reason_not_passed(look_a):
    """Scope 0.2.4 reports no GPU memory, and a pipeline may ignore prompts: both checks are skipped, said."""
    limits = dataclasses.replace(LIMITS, prompts_unsupported="passthrough does not support prompts (schema)")
    monitor = StreamMonitor(limits)
    no_gpu = [dataclasses.replace(t, gpu=None) for t in healthy_ticks(12, look=look_a)]
    feed(monitor, no_gpu)
    skipped = {c.name: c.reason for c in monitor.finish().checks if c.skipped}
    assert set(skipped) == {"vram_leak", "vram_ceiling", "prompt_response"}
    assert "not measured" in skipped["vram_leak"] and "does not support prompts" in skipped["prompt_response"]
