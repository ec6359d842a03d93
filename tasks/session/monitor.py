"""The monitoring loop's state: each sampling tick becomes a frame row; the end becomes the stream checks.

The monitor holds no I/O. `tasks/session/lifecycle.py` feeds it the ticks its media driver saw and
asks it three questions: "should the stream stop now?" (a failure that cannot heal: a stall, a
black or frozen run past its limit), "may the prompt be switched now?" (the last switch's window
is closed and the session's own noise has been measured again, so every switch can be judged) and,
at the end, "what are the checks?" (with the checks that could not run and why).
The verdict itself comes from `tasks/session/checks.py` over the whole series, so an early stop and a
full-length run are judged by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tasks.session import checks
from tasks.session.checks import CheckResult
from tasks.session.frames import (
    FrameStats,
    FrameThresholds,
    FrameVerdict,
    analyze_frame,
    analyze_picture,
    classify_frame,
    frame_difference,
)
from tasks.session.driver import Tick

STALE = "stale"  # frames_out did not advance and the frame did not change: the stall's business, not a freeze


@dataclass(frozen=True)
class MonitorLimits:
    """The thresholds the monitor applies (a view of config Thresholds)."""

    width: int
    height: int
    stall_timeout_s: float
    freeze_s: float
    black_s: float
    min_fps: float
    fps_warmup_s: float
    prompt_margin: float
    prompt_response_s: float
    vram_leak_tolerance_mb: float
    max_vram_percent: float
    black_luma_max: float
    black_fraction_min: float
    frozen_diff_max: float
    prompts_unsupported: str | None = None  # why the prompt check cannot run (the pipeline ignores prompts)


@dataclass
class PromptSwitchState:
    """One prompt switch while its response window is open."""

    seq: int
    t_s: float
    switched_at: datetime
    prompt_from: str
    prompt_to: str
    pre_diffs: list[float]
    reference: FrameStats | None
    post: list[tuple[float, float]] = field(default_factory=list)
    responded_at_s: float | None = None  # t_s at which the output answered: the window closes there


@dataclass(frozen=True)
class ObservedFrame:
    """A tick after analysis: the row fields plus the stats kept for evidence."""

    tick: Tick
    stats: FrameStats | None
    verdict: str
    diff_prev: float | None


@dataclass(frozen=True)
class StreamResult:
    """Everything the stream phase measured, for the verdict and the run record."""

    checks: list[CheckResult]
    fps: checks.FpsFigures
    stall_count: int
    stall_s: float
    freeze_s: float
    black_s: float
    vram_start_mb: float | None
    vram_end_mb: float | None
    vram_total_mb: float | None
    vram: checks.VramFigures | None
    verdict_counts: dict[str, int]
    switches: list[tuple[PromptSwitchState, checks.PromptResponse]]
    last_t_s: float | None = None  # the last tick's time: how far the stream was seen


class StreamMonitor:
    """Accumulates ticks of one stream and judges them."""

    def __init__(self, limits: MonitorLimits) -> None:
        self.limits = limits
        self.frame_thresholds = _frame_thresholds(limits)
        self.fps_samples: list[tuple[float, int]] = []
        self.verdicts: list[tuple[float, str]] = []
        self.vram_samples: list[tuple[float, float]] = []
        self.vram_total_mb: float | None = None
        self.noise_diffs: list[float] = []
        self.switches: list[PromptSwitchState] = []
        self.last_good: tuple[Tick, FrameStats] | None = None
        self.first_bad: ObservedFrame | None = None
        self._prev_stats: FrameStats | None = None
        self._prev_frames_out: int | None = None

    def observe(self, tick: Tick) -> ObservedFrame:
        """Analyse one tick, remember its series values, return the analysed frame."""
        stats = self._analyze(tick)
        advanced = self._note_metrics(tick)
        diff_prev = self._difference(stats, self._prev_stats)
        verdict = self._verdict(stats, diff_prev, advanced)
        observed = ObservedFrame(tick=tick, stats=stats, verdict=verdict, diff_prev=diff_prev)
        self.verdicts.append((tick.t_s, verdict))
        self._track_prompt_response(tick.t_s, stats, diff_prev, verdict)
        self._keep_evidence(observed)
        if stats is not None and stats.ok:
            self._prev_stats = stats
        return observed

    def _analyze(self, tick: Tick) -> FrameStats | None:
        if tick.frame is not None:
            return analyze_frame(tick.frame, thresholds=self.frame_thresholds)
        if tick.picture is not None:
            return analyze_picture(tick.picture.luma, thresholds=self.frame_thresholds)
        return None

    def _difference(self, a: FrameStats | None, b: FrameStats | None) -> float | None:
        if a is None or b is None:
            return None
        return frame_difference(a, b, thresholds=self.frame_thresholds)

    def _verdict(self, stats: FrameStats | None, diff_prev: float | None, advanced: bool | None) -> str:
        if stats is None:
            return FrameVerdict.MISSING.value
        verdict = classify_frame(
            stats,
            expected_size=(self.limits.width, self.limits.height),
            diff_prev=diff_prev,
            thresholds=self.frame_thresholds,
        )
        if verdict == FrameVerdict.FROZEN and advanced is False:
            return STALE
        return verdict.value

    def _note_metrics(self, tick: Tick) -> bool | None:
        """Record frames_out and VRAM; say whether frames_out advanced since the last tick."""
        counters, gpu = tick.counters, tick.gpu
        if gpu is not None and gpu.vram_allocated_mb is not None:
            self.vram_samples.append((tick.t_s, float(gpu.vram_allocated_mb)))
            if gpu.vram_total_mb:
                self.vram_total_mb = float(gpu.vram_total_mb)
        if counters is None or counters.frames_out is None:
            return None
        frames_out = int(counters.frames_out)
        self.fps_samples.append((tick.t_s, frames_out))
        advanced = self._prev_frames_out is None or frames_out > self._prev_frames_out
        self._prev_frames_out = frames_out
        return advanced

    def _track_prompt_response(
        self, t_s: float, stats: FrameStats | None, diff_prev: float | None, verdict: str
    ) -> None:
        open_switch = self._open_switch(t_s)
        if open_switch is not None:
            if stats is not None and stats.ok and open_switch.reference is not None:
                diff = self._difference(stats, open_switch.reference)
                if diff is not None:
                    open_switch.post.append((t_s - open_switch.t_s, diff))
                    if self._evaluate_switch(open_switch).responded:
                        open_switch.responded_at_s = t_s
        elif diff_prev is not None and verdict == FrameVerdict.VALID.value:
            self.noise_diffs.append(diff_prev)

    def _open_switch(self, t_s: float) -> PromptSwitchState | None:
        """The last switch while its window is open: not answered yet and not past prompt_response_s."""
        if not self.switches:
            return None
        last = self.switches[-1]
        if last.responded_at_s is not None:
            return None
        return last if t_s - last.t_s <= self.limits.prompt_response_s else None

    def ready_for_switch(self, t_s: float) -> bool:
        """True when a switch now could be judged: no window open and the noise measured again."""
        return self._open_switch(t_s) is None and len(self.noise_diffs) >= checks.MIN_PRE_DIFFS

    def _keep_evidence(self, observed: ObservedFrame) -> None:
        if observed.verdict == FrameVerdict.VALID.value and observed.stats is not None:
            self.last_good = (observed.tick, observed.stats)
        elif self.first_bad is None and observed.verdict not in (FrameVerdict.VALID.value,):
            self.first_bad = observed

    def note_prompt_switch(self, t_s: float, switched_at: datetime, prompt_from: str, prompt_to: str) -> int:
        """Record a prompt switch sent at t_s; return its sequence number."""
        reference = self._prev_stats
        state = PromptSwitchState(
            seq=len(self.switches),
            t_s=t_s,
            switched_at=switched_at,
            prompt_from=prompt_from,
            prompt_to=prompt_to,
            pre_diffs=list(self.noise_diffs),
            reference=reference,
        )
        self.switches.append(state)
        self.noise_diffs = []
        return state.seq

    def fatal(self, t_s: float) -> CheckResult | None:
        """A failure that will not heal, so the stream should stop now; None to go on.

        The bad runs are judged by the same checks as the final verdict, so an early stop
        happens exactly at the first tick at which that verdict is already certain."""
        stall_since = _unchanged_since(self.fps_samples)
        if stall_since is not None and t_s - stall_since > self.limits.stall_timeout_s:
            return checks.check_stall(self.fps_samples, stall_timeout_s=self.limits.stall_timeout_s)
        if not self.verdicts:
            return None
        for verdict, name, limit in self._run_limits():
            if self.verdicts[-1][1] == verdict:
                check = self._run_check(verdict, name, limit)
                if not check.passed:
                    return check
        return None

    def awaiting_response(self, t_s: float) -> bool:
        """True while the last prompt switch's window is open and the output has not responded yet."""
        switch = self._open_switch(t_s)
        return switch is not None and not self._evaluate_switch(switch).responded

    def _run_limits(self) -> list[tuple[FrameVerdict, str, float]]:
        """Verdicts whose trailing run ends the stream early once longer than its limit."""
        return [
            (FrameVerdict.BLACK, "black", self.limits.black_s),
            (FrameVerdict.FROZEN, "freeze", self.limits.freeze_s),
            (FrameVerdict.CORRUPT, "corrupt", self.limits.black_s),
            (FrameVerdict.WRONG_SIZE, "frame_size", 0.0),
        ]

    def _run_check(self, verdict: FrameVerdict, name: str, limit_s: float) -> CheckResult:
        if verdict in (FrameVerdict.CORRUPT, FrameVerdict.WRONG_SIZE):
            # Scope encodes every frame itself: one undecodable or mis-sized frame is a defect.
            detail = f"expected {self.limits.width}x{self.limits.height}" if verdict == FrameVerdict.WRONG_SIZE else ""
            return checks.check_any_frames(self.verdicts, verdict, name, detail=detail)
        return checks.check_runs(self.verdicts, verdict, limit_s, name)

    def finish(self) -> StreamResult:
        """Judge the whole stream with the checks of quality.md."""
        limits = self.limits
        fps = checks.steady_fps(self.fps_samples, warmup_s=limits.fps_warmup_s)
        stall = checks.check_stall(self.fps_samples, stall_timeout_s=limits.stall_timeout_s)
        results = [stall, checks.check_fps(fps, min_fps=limits.min_fps)]
        results += [self._run_check(v, name, limit) for v, name, limit in self._run_limits()]
        responses = [(s, self._evaluate_switch(s)) for s in self.switches]
        results.append(self._prompt_check(responses))
        vram = None
        if self.vram_samples and self.vram_total_mb:
            leak, ceiling, vram = checks.check_vram(
                self.vram_samples,
                total_mb=self.vram_total_mb,
                tolerance_mb=limits.vram_leak_tolerance_mb,
                max_percent=limits.max_vram_percent,
            )
            results += [leak, ceiling]
        else:
            results += [_not_measured(checks.CheckName.VRAM_LEAK), _not_measured(checks.CheckName.VRAM_CEILING)]
        counts: dict[str, int] = {}
        for _, verdict in self.verdicts:
            counts[verdict] = counts.get(verdict, 0) + 1
        return StreamResult(
            checks=results,
            fps=fps,
            stall_count=stall.stall_count,
            stall_s=stall.stall_s,
            freeze_s=_longest_run_s(self.verdicts, FrameVerdict.FROZEN.value),
            black_s=_longest_run_s(self.verdicts, FrameVerdict.BLACK.value),
            vram_start_mb=self.vram_samples[0][1] if self.vram_samples else None,
            vram_end_mb=self.vram_samples[-1][1] if self.vram_samples else None,
            vram_total_mb=self.vram_total_mb,
            vram=vram,
            verdict_counts=counts,
            switches=responses,
            last_t_s=self.verdicts[-1][0] if self.verdicts else None,
        )

    def _prompt_check(self, responses: list[tuple[PromptSwitchState, checks.PromptResponse]]) -> CheckResult:
        if self.limits.prompts_unsupported is not None:
            return CheckResult(checks.CheckName.PROMPT_RESPONSE, True, self.limits.prompts_unsupported, None,
                               skipped=True)
        if not responses:
            return CheckResult(checks.CheckName.PROMPT_RESPONSE, True, "the scenario switches no prompt", None,
                               skipped=True)
        return checks.check_prompt_response([r for _, r in responses])

    def _evaluate_switch(self, switch: PromptSwitchState) -> checks.PromptResponse:
        if switch.reference is None:
            return checks.PromptResponse(False, False, None, None, None, None, "no valid frame before the switch")
        response = checks.evaluate_prompt_switch(
            switch.pre_diffs,
            switch.post,
            margin=self.limits.prompt_margin,
            within_s=self.limits.prompt_response_s,
        )
        window_seen_s = self.verdicts[-1][0] - switch.t_s if self.verdicts else 0.0
        if not response.responded and window_seen_s < self.limits.prompt_response_s:
            # The stream ended (or stopped on another failure) inside the window: no verdict either way.
            return checks.PromptResponse(False, False, None, response.noise_p95, response.threshold,
                                         response.best_median, "the stream ended before the response window closed")
        return response


def _not_measured(name: str) -> CheckResult:
    """A VRAM check without VRAM figures: Scope 0.2.4 answers `"gpu": {}` even with a GPU."""
    reason = "not measured: Scope reported no GPU memory figures (/session/metrics gpu is empty)"
    return CheckResult(name, True, reason, None, skipped=True)


def _frame_thresholds(limits: MonitorLimits) -> FrameThresholds:
    return FrameThresholds(
        black_luma_max=limits.black_luma_max,
        black_fraction_min=limits.black_fraction_min,
        frozen_diff_max=limits.frozen_diff_max,
    )


def _unchanged_since(samples: list[tuple[float, int]]) -> float | None:
    """The time of the first sample of the trailing run of equal frames_out values."""
    if len(samples) < 2 or samples[-1][1] != samples[-2][1]:
        return None
    index = len(samples) - 1
    while index > 0 and samples[index - 1][1] == samples[-1][1]:
        index -= 1
    return samples[index][0]


def _longest_run_s(verdicts: list[tuple[float, str]], verdict: str) -> float:
    longest, started = 0.0, None
    for t_s, value in verdicts:
        if value == verdict:
            started = t_s if started is None else started
            longest = max(longest, t_s - started)
        else:
            started = None
    return longest
