"""Stream checks of one run (quality.md): pure functions over the sampled series.

Every check returns a ``CheckResult`` whose ``reason`` is one line a person can act on.
Durations are measured between sample timestamps (seconds, any common origin).

Checks that cannot judge from too little data pass and say so in their reason rather than
invent a failure; the other checks (stall, fps, black, freeze, corrupt, frame size) still
judge the run:
- ``check_fps``: fewer than 2 samples (or no time span) after the warm-up;
- ``check_stall``: fewer than 2 samples;
- ``evaluate_prompt_switch`` / ``check_prompt_response``: fewer than ``MIN_PRE_DIFFS``
  pre-switch differences or no post-switch frame within the response window;
- ``check_vram`` (leak): fewer than ``MIN_VRAM_SAMPLES`` samples or no time span;
  (ceiling): no sample, or the total VRAM is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from tasks.session.frames import FrameVerdict

NOT_ENOUGH = "not enough samples"
# Timestamps are floats: a run exactly at its limit is not "longer than" it.
_EPSILON_S = 1e-6
MIN_PRE_DIFFS = 4
MIN_VRAM_SAMPLES = 4
# Median of the last few post-switch differences: one noisy frame cannot fake a response,
# and a real change is seen within a sample or two of happening.
PROMPT_WINDOW = 3
# A change at or below the frozen threshold is no change at all, whatever the pre-switch noise.
PROMPT_MIN_DIFF = 0.001
_VERDICT_WORDS = {
    FrameVerdict.CORRUPT: "corrupt (undecodable JPEG)",
    FrameVerdict.WRONG_SIZE: "of the wrong size",
    FrameVerdict.MISSING: "missing",
    FrameVerdict.BLACK: "black",
    FrameVerdict.FROZEN: "frozen",
}


class CheckName(StrEnum):
    """The names failed checks are listed under (``checks_failed``)."""

    FIRST_FRAME = "first_frame"
    STALL = "stall"
    FPS = "fps"
    BLACK = "black"
    FREEZE = "freeze"
    CORRUPT = "corrupt"
    FRAME_SIZE = "frame_size"
    PROMPT_RESPONSE = "prompt_response"
    VRAM_LEAK = "vram_leak"
    VRAM_CEILING = "vram_ceiling"
    RELAY = "relay"
    HARNESS_LAG = "harness_lag"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: its name, whether it passed, why, and the figure it judged."""

    name: str
    passed: bool
    reason: str
    value: float | None
    skipped: bool = False  # the check could not run (its input was missing): neither pass nor fail


@dataclass(frozen=True)
class StallResult(CheckResult):
    """The stall check plus how many stalls there were and how long they lasted in total."""

    stall_count: int = 0
    stall_s: float = 0.0


@dataclass(frozen=True)
class FpsFigures:
    """Steady output FPS after the warm-up: overall rate and per-interval quantiles."""

    steady_fps: float | None
    p50: float | None
    p05: float | None
    intervals: int
    window_s: float


@dataclass(frozen=True)
class PromptResponse:
    """Whether (and how fast) the output moved away from the pre-switch frames."""

    evaluated: bool
    responded: bool
    latency_s: float | None
    noise_p95: float | None
    threshold: float | None
    best_median: float | None
    reason: str


@dataclass(frozen=True)
class VramFigures:
    """VRAM over the stream: growth by slope and by quarter means, and the peak."""

    samples: int
    span_s: float
    slope_mb_per_s: float | None
    slope_growth_mb: float | None
    quarter_growth_mb: float | None
    peak_mb: float | None
    peak_percent: float | None


def check_first_frame(first_frame_s: float | None, *, timeout_s: float) -> CheckResult:
    """First frame arrived within its limit (seconds from start answered to first good frame)."""
    if first_frame_s is None:
        return CheckResult(CheckName.FIRST_FRAME, False, f"no valid output frame within {timeout_s:g} s", None)
    passed = first_frame_s <= timeout_s
    word = "within" if passed else "after the limit of"
    reason = f"first valid frame after {first_frame_s:.1f} s ({word} {timeout_s:g} s)"
    return CheckResult(CheckName.FIRST_FRAME, passed, reason, first_frame_s)


def steady_fps(samples: Sequence[tuple[float, int]], *, warmup_s: float = 5.0) -> FpsFigures:
    """Output FPS from frames_out deltas after the first warmup_s seconds of samples."""
    ordered = sorted((t, n) for t, n in samples if n is not None)
    if not ordered:
        return FpsFigures(None, None, None, 0, 0.0)
    window = [(t, n) for t, n in ordered if t >= ordered[0][0] + warmup_s - _EPSILON_S]
    rates, frames, seconds = [], 0, 0.0
    for (t0, n0), (t1, n1) in zip(window, window[1:]):
        if t1 <= t0 or n1 < n0:  # duplicate timestamp or counter reset: the interval says nothing
            continue
        rates.append((n1 - n0) / (t1 - t0))
        frames, seconds = frames + (n1 - n0), seconds + (t1 - t0)
    if not rates:
        return FpsFigures(None, None, None, 0, 0.0)
    p50, p05 = np.percentile(rates, [50, 5])
    return FpsFigures(frames / seconds, float(p50), float(p05), len(rates), seconds)


def check_fps(figures: FpsFigures, *, min_fps: float) -> CheckResult:
    """Steady output FPS is at least min_fps."""
    if figures.steady_fps is None:
        return CheckResult(CheckName.FPS, True, f"{NOT_ENOUGH} after the warm-up to measure FPS", None, skipped=True)
    passed = figures.steady_fps >= min_fps
    reason = (
        f"steady output {figures.steady_fps:.1f} fps over {figures.window_s:.1f} s "
        f"({'at least' if passed else 'below'} the minimum {min_fps:g}; "
        f"p50 {figures.p50:.1f}, p05 {figures.p05:.1f})"
    )
    return CheckResult(CheckName.FPS, passed, reason, figures.steady_fps)


def check_stall(samples: Sequence[tuple[float, int]], stall_timeout_s: float) -> StallResult:
    """frames_out never stayed flat for longer than stall_timeout_s (counts every such stall)."""
    ordered = sorted((t, n) for t, n in samples if n is not None)
    if len(ordered) < 2:
        return StallResult(CheckName.STALL, True, f"{NOT_ENOUGH} of frames_out to judge stalls", None)
    flat = _flat_periods(ordered)
    stalls = [(start, length) for start, length in flat if length > stall_timeout_s + _EPSILON_S]
    longest = max((length for _, length in flat), default=0.0)
    if not stalls:
        reason = f"frames_out kept increasing (longest flat {longest:.1f} s, limit {stall_timeout_s:g} s)"
        return StallResult(CheckName.STALL, True, reason, longest)
    start, length = max(stalls, key=lambda stall: stall[1])
    total = sum(length for _, length in stalls)
    reason = f"frames_out stalled for {length:.1f} s (limit {stall_timeout_s:g} s) at t={start:.1f} s"
    if len(stalls) > 1:
        reason += f"; {len(stalls)} stalls, {total:.1f} s in total"
    return StallResult(CheckName.STALL, False, reason, length, stall_count=len(stalls), stall_s=total)


def _flat_periods(ordered: Sequence[tuple[float, int]]) -> list[tuple[float, float]]:
    """(start, length) of each stretch without an increase of frames_out, sample to sample."""
    periods, start = [], ordered[0][0]
    for (_, previous), (t, count) in zip(ordered, ordered[1:]):
        if count > previous:
            periods.append((start, t - start))
            start = t
    periods.append((start, ordered[-1][0] - start))  # still flat when sampling ended
    return [(begin, length) for begin, length in periods if length > 0]


def check_runs(
    verdict_series: Sequence[tuple[float, FrameVerdict]], verdict: FrameVerdict, limit_s: float, name: str
) -> CheckResult:
    """No run of consecutive `verdict` frames lasted longer than limit_s.

    A black run lasts from its first to its last black sample. A frozen verdict says the
    frame did not change since the previous sample, so a frozen run starts at the sample
    before its first frozen one.
    """
    runs = _runs(verdict_series, verdict)
    label = "frozen output" if verdict == FrameVerdict.FROZEN else f"{verdict} frames"
    if not runs:
        return CheckResult(name, True, f"no {label} in {len(verdict_series)} samples", 0.0)
    start, length = max(runs, key=lambda run: run[1])
    if length > limit_s + _EPSILON_S:
        reason = f"{label} for {length:.1f} s (limit {limit_s:g} s) from t={start:.1f} s"
        if len(runs) > 1:
            reason += f"; {len(runs)} runs"
        return CheckResult(name, False, reason, length)
    return CheckResult(name, True, f"{label} never longer than {limit_s:g} s (longest {length:.1f} s)", length)


def _runs(verdict_series: Sequence[tuple[float, FrameVerdict]], verdict: FrameVerdict) -> list[tuple[float, float]]:
    """(start, length) of each run of consecutive samples with the given verdict."""
    ordered = sorted(verdict_series, key=lambda sample: sample[0])
    runs, start, end, previous_t = [], None, 0.0, None
    for t, seen in ordered:
        if seen == verdict and start is None:
            start = previous_t if verdict == FrameVerdict.FROZEN and previous_t is not None else t
        if seen == verdict:
            end = t
        elif start is not None:
            runs.append((start, end - start))
            start = None
        previous_t = t
    if start is not None:
        runs.append((start, end - start))
    return runs


def check_any_frames(
    verdict_series: Sequence[tuple[float, FrameVerdict]], verdict: FrameVerdict, name: str, *, detail: str = ""
) -> CheckResult:
    """No sampled frame had the given verdict (corrupt, wrong size); detail is appended to the reason."""
    hits = [t for t, seen in verdict_series if seen == verdict]
    words = _VERDICT_WORDS.get(verdict, str(verdict))
    if not hits:
        return CheckResult(name, True, f"no frame {words} in {len(verdict_series)} samples", 0.0)
    reason = f"{len(hits)} of {len(verdict_series)} sampled frames {words}, first at t={min(hits):.1f} s"
    return CheckResult(name, False, reason + (f" ({detail})" if detail else ""), float(len(hits)))


def evaluate_prompt_switch(
    pre_diffs: Sequence[float],
    post: Sequence[tuple[float, float]],
    *,
    margin: float = 2.0,
    within_s: float = 10.0,
    window: int = PROMPT_WINDOW,
    min_diff: float = PROMPT_MIN_DIFF,
) -> PromptResponse:
    """Did the output move away from the last pre-switch frame by more than its own noise?

    Responded when the median of the last `window` post-switch differences (t since the
    switch, diff to the last pre-switch frame) exceeds margin x p95(pre_diffs) (and
    min_diff) within within_s; latency is the first sample of that window above the bar.
    A median over the whole post period would need more than half of all post frames
    changed, which doubles the latency of a response that takes a while.
    """
    noise = [d for d in pre_diffs if d is not None]
    seen = sorted((t, d) for t, d in post if d is not None and t <= within_s + _EPSILON_S)
    if len(noise) < MIN_PRE_DIFFS or not seen:
        why = f"{len(noise)} pre-switch differences, {len(seen)} post-switch frames within {within_s:g} s"
        return PromptResponse(False, False, None, None, None, None, f"{NOT_ENOUGH} ({why})")
    noise_p95 = float(np.percentile(noise, 95))
    threshold = max(margin * noise_p95, min_diff)
    best, needed = 0.0, min(window, len(seen))
    for index in range(needed - 1, len(seen)):
        recent = seen[index - needed + 1 : index + 1]
        median = float(np.median([d for _, d in recent]))
        best = max(best, median)
        if median > threshold:
            # The output had moved by the first sample of the deciding window that is above it.
            latency_s = min(t for t, d in recent if d > threshold)
            reason = f"output changed after {latency_s:.1f} s (median diff {median:.3f} > {threshold:.3f})"
            return PromptResponse(True, True, latency_s, noise_p95, threshold, median, reason)
    reason = (
        f"output did not move away from the pre-switch frames within {within_s:g} s: median diff "
        f"{best:.3f} <= {margin:g} x noise p95 {noise_p95:.3f}"
    )
    return PromptResponse(True, False, None, noise_p95, threshold, best, reason)


def check_prompt_response(responses: Sequence[PromptResponse]) -> CheckResult:
    """Every evaluated prompt switch was answered; the value is the slowest response."""
    evaluated = [r for r in responses if r.evaluated]
    if not evaluated:
        return CheckResult(CheckName.PROMPT_RESPONSE, True, f"{NOT_ENOUGH}: no prompt switch could be judged", None,
                           skipped=True)
    missed = [index for index, r in enumerate(evaluated) if not r.responded]
    latencies = [r.latency_s for r in evaluated if r.latency_s is not None]
    slowest = max(latencies) if latencies else None
    if missed:
        first = evaluated[missed[0]]
        reason = f"{len(missed)} of {len(evaluated)} prompt switches got no response; first: {first.reason}"
        return CheckResult(CheckName.PROMPT_RESPONSE, False, reason, slowest)
    reason = f"all {len(evaluated)} prompt switches answered (slowest after {slowest:.1f} s)"
    return CheckResult(CheckName.PROMPT_RESPONSE, True, reason, slowest)


def check_vram(
    samples: Sequence[tuple[float, float]],
    *,
    total_mb: float | None,
    tolerance_mb: float = 200,
    max_percent: float = 90,
) -> tuple[CheckResult, CheckResult, VramFigures]:
    """VRAM leak (slope x length or quarter-mean growth > tolerance) and ceiling (peak share)."""
    figures = vram_figures(samples, total_mb=total_mb)
    return _leak_check(figures, tolerance_mb), _ceiling_check(figures, total_mb, max_percent), figures


def vram_figures(samples: Sequence[tuple[float, float]], *, total_mb: float | None) -> VramFigures:
    """Growth of vram_allocated_mb by least-squares slope and by quarter means, and its peak."""
    ordered = sorted((t, mb) for t, mb in samples if mb is not None)
    if not ordered:
        return VramFigures(0, 0.0, None, None, None, None, None)
    times = np.array([t for t, _ in ordered], dtype=np.float64)
    values = np.array([mb for _, mb in ordered], dtype=np.float64)
    span_s = float(times[-1] - times[0])
    peak = float(values.max())
    peak_percent = 100.0 * peak / total_mb if total_mb else None
    if len(ordered) < MIN_VRAM_SAMPLES or span_s <= 0:
        return VramFigures(len(ordered), span_s, None, None, None, peak, peak_percent)
    centred = times - times.mean()  # centring keeps the fit exact for unix-time stamps
    slope = float(centred @ (values - values.mean()) / (centred @ centred))
    first = values[times <= times[0] + span_s / 4].mean()
    last = values[times >= times[-1] - span_s / 4].mean()
    return VramFigures(len(ordered), span_s, slope, slope * span_s, float(last - first), peak, peak_percent)


def _leak_check(figures: VramFigures, tolerance_mb: float) -> CheckResult:
    """Fail when VRAM grew by more than tolerance_mb over the stream, by either measure."""
    if figures.slope_growth_mb is None or figures.quarter_growth_mb is None:
        return CheckResult(CheckName.VRAM_LEAK, True, f"{NOT_ENOUGH} of vram_allocated_mb ({figures.samples})", None)
    growth = max(figures.slope_growth_mb, figures.quarter_growth_mb)
    how = (
        f"trend {figures.slope_mb_per_s:+.2f} MB/s x {figures.span_s:.0f} s = {figures.slope_growth_mb:+.0f} MB, "
        f"last-quarter minus first-quarter mean {figures.quarter_growth_mb:+.0f} MB"
    )
    if growth > tolerance_mb:
        return CheckResult(CheckName.VRAM_LEAK, False, f"VRAM grew: {how} (tolerance {tolerance_mb:g} MB)", growth)
    return CheckResult(CheckName.VRAM_LEAK, True, f"VRAM steady: {how} (tolerance {tolerance_mb:g} MB)", growth)


def _ceiling_check(figures: VramFigures, total_mb: float | None, max_percent: float) -> CheckResult:
    """Fail when the peak allocated VRAM exceeds max_percent of the total."""
    if figures.peak_percent is None:
        known = "no vram_allocated_mb sample" if figures.peak_mb is None else "vram_total_mb unknown"
        return CheckResult(CheckName.VRAM_CEILING, True, f"{NOT_ENOUGH}: {known}", None)
    passed = figures.peak_percent <= max_percent
    reason = (
        f"peak VRAM {figures.peak_mb:.0f} of {total_mb:.0f} MB = {figures.peak_percent:.1f} % "
        f"({'within' if passed else 'above'} {max_percent:g} %)"
    )
    return CheckResult(CheckName.VRAM_CEILING, passed, reason, figures.peak_percent)
