"""What one run knows while it runs, and how it becomes rows in the lake.

`SessionRun` (tasks/session/lifecycle.py) adds the phases; this module holds the figures they
measure, lands the `started` row, every sampled frame (in chunks, during the run), the
prompt switches and the final row, and keeps evidence beside a failed run.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from analytics.lake import Lake
from analytics.records import FrameSample, PromptSwitchRecord, RunRecord
from config.settings import Settings
from config.scenarios import Scenario
from errors import Category, HarnessError, Phase, PhaseFailed
from tasks.session.inputs import InputPaths
from tasks.session.progress import ProgressEvent, emit
from tasks.session.monitor import MonitorLimits, ObservedFrame, StreamMonitor, StreamResult
from tasks.scope.client import ScopeClient
from tasks.session.verdict import Verdict, decide

HARNESS_VERSION = "0.1.0"
MIN_SWITCH_LEAD_S = 3.0  # frames before a switch that measure the session's own noise
VERDICT_CHECK = {"wrong_size": "frame_size", "black": "black", "corrupt": "corrupt", "frozen": "freeze"}


def utc_now() -> datetime:
    """The wall clock, in UTC, for timestamps (never for durations)."""
    return datetime.now(UTC)


def new_run_id(started_at: datetime) -> str:
    """A sortable, unique run id: UTC start second plus random hex."""
    return f"{started_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes: the Scope instance and the orchestrator it is pinned to."""

    scope_url: str
    orchestrator: str | None = None
    orchestrator_uri: str | None = None
    region: str | None = None
    scope_instance: str | None = None


def prompt_switch_times(duration_s: float, interval_s: float, response_s: float) -> list[float]:
    """When to switch prompts, in seconds after the first frame: every interval, at least once."""
    times: list[float] = []
    t = interval_s
    while t <= duration_s - response_s:
        times.append(t)
        t += interval_s
    if not times:
        times.append(min(max(MIN_SWITCH_LEAD_S, duration_s - response_s), duration_s * 0.6))
    return times


class RunState:
    """The measured figures, the lake writers and the verdict of one run."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        settings: Settings,
        client: ScopeClient,
        lake: Lake,
        target: RunTarget,
        duration_s: float | None = None,
        prefect_flow_run_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        inputs_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario if duration_s is None else _shortened(scenario, duration_s)
        self.settings = settings
        self.thresholds = settings.thresholds
        self.client = client
        self.lake = lake
        self.target = target
        self.clock = clock
        self.prefect_flow_run_id = prefect_flow_run_id
        self.started_at = clock()
        self.run_id = new_run_id(self.started_at)
        self.inputs_dir = inputs_dir or lake.root / "inputs"
        self.duration_s = self.scenario.duration_s
        self.prompts = _rotated(self.scenario.prompts, self.run_id)
        self.prompt_index = 0
        self.monitor = self.new_monitor()
        self.frames = lake.frame_writer(self.run_id)
        self.frame_seq = 0
        self.inputs: InputPaths | None = None
        self.sink_node_id: str | None = None
        self.scope_version: str | None = None
        self.connection_id: str | None = None
        self.connect_s: float | None = None
        self.load_s: float | None = None
        self.first_frame_s: float | None = None
        self.stream_s: float | None = None
        self.session_t0 = 0.0
        self.failure: HarnessError | None = None
        self.cleanup_error: HarnessError | None = None
        self.stopped_early = None
        self.cancelled = False
        self.tick_errors = 0
        self.session_touched = False
        self.cloud_touched = False
        self.current_phase = Phase.CONNECT
        self.record: RunRecord | None = None

    def new_monitor(self) -> StreamMonitor:
        """A fresh monitor with this run's limits."""
        t = self.thresholds
        return StreamMonitor(
            MonitorLimits(
                width=self.scenario.width,
                height=self.scenario.height,
                stall_timeout_s=t.stall_timeout_s,
                freeze_s=t.freeze_s,
                black_s=t.black_s,
                min_fps=t.min_fps,
                fps_warmup_s=t.fps_warmup_s,
                prompt_margin=t.prompt_margin,
                prompt_response_s=t.prompt_response_s,
                vram_leak_tolerance_mb=t.vram_leak_tolerance_mb,
                max_vram_percent=t.max_vram_percent,
                black_luma_max=t.black_luma_max,
                black_fraction_min=t.black_fraction_min,
                frozen_diff_max=t.frozen_diff_max,
            )
        )

    def switch_schedule(self) -> list[float]:
        """Prompt switch times for this run (none when the scenario has a single prompt)."""
        if len(self.prompts) < 2:
            return []
        t = self.thresholds
        return prompt_switch_times(self.duration_s, t.prompt_switch_interval_s, t.prompt_response_s)

    def fail(self, error: HarnessError) -> None:
        """Remember a failure: the first one decides, a cleanup failure is kept apart."""
        if error.phase == Phase.CLEANUP:
            self.cleanup_error = self.cleanup_error or error
        elif self.failure is None:
            self.failure = error

    def invalid_start(self, observed: ObservedFrame) -> HarnessError:
        """The failure for frames that keep arriving but never pass the frame checks."""
        check = VERDICT_CHECK.get(observed.verdict, "first_frame")
        return PhaseFailed(
            f"output frames arrive but fail the {check} check ({observed.verdict}"
            + (f", {observed.stats.width}x{observed.stats.height}" if observed.stats else "")
            + f"; expected {self.scenario.width}x{self.scenario.height})",
            category=Category.VALIDATION,
            check=check,
        )

    def record_frame(self, observed: ObservedFrame) -> None:
        """Turn an analysed tick into a `frames` row and hand it to the chunk writer."""
        tick, stats, headless, gpu = observed.tick, observed.stats, None, None
        if tick.metrics is not None:
            headless, gpu = tick.metrics.headless, tick.metrics.gpu
        ok = stats is not None and stats.ok
        self.frames.add(
            FrameSample(
                run_id=self.run_id,
                seq=self.frame_seq,
                t_s=tick.t_s,
                captured_at=tick.captured_at,
                frame_bytes=len(tick.frame) if tick.frame is not None else None,
                frame_fetch_ms=tick.frame_fetch_ms,
                width=stats.width if ok else None,
                height=stats.height if ok else None,
                decode_ms=stats.decode_ms if stats else None,
                luma_mean=stats.luma_mean if ok else None,
                luma_std=stats.luma_std if ok else None,
                black_fraction=stats.black_fraction if ok else None,
                diff_prev=observed.diff_prev,
                verdict=observed.verdict,
                error=stats.error if stats else ("no frame available" if tick.frame is None else None),
                fps_in=headless.fps_in if headless else None,
                fps_out=headless.fps_out if headless else None,
                frames_in=headless.frames_in if headless else None,
                frames_out=headless.frames_out if headless else None,
                pipeline_fps=headless.pipeline_fps if headless else None,
                vram_allocated_mb=gpu.vram_allocated_mb if gpu else None,
                vram_reserved_mb=gpu.vram_reserved_mb if gpu else None,
            )
        )
        self.frame_seq += 1
        fps_out = headless.fps_out if headless else None
        self.emit("tick", t_s=tick.t_s, frames_sampled=self.frame_seq, fps_out=fps_out, verdict=observed.verdict)

    def emit(self, kind: str, **fields) -> None:
        """Tell progress listeners what this run is doing."""
        emit(ProgressEvent(run_id=self.run_id, scenario=self.scenario.name, kind=kind,
                           orchestrator=self.target.orchestrator, instance=self.target.scope_instance, **fields))

    def land_started(self) -> None:
        """Land the `started` row so a crash from here on is found by the sweeper."""
        self.lake.land_run(self._record(state="started"))

    async def finish(self) -> RunRecord:
        """Decide the verdict, keep evidence of a failure, land frames, switches and the final row."""
        result = self.monitor.finish() if self.first_frame_s is not None else None
        checks = result.checks if result is not None else []
        first = self.stopped_early.name if self.stopped_early is not None else None
        verdict = decide(
            self.failure, checks, cleanup_error=self.cleanup_error, cancelled=self.cancelled, first_check=first
        )
        artifacts = await self._keep_evidence(verdict) if verdict.outcome in ("failed", "aborted") else None
        self.frames.close()
        if result is not None:
            self._land_switches(result)
        self.record = self._record(state="final", verdict=verdict, result=result, artifacts=artifacts)
        self.lake.land_run(self.record)
        self.emit("done", outcome=verdict.outcome, frames_sampled=self.frame_seq)
        return self.record

    def _land_switches(self, result: StreamResult) -> None:
        rows = [
            PromptSwitchRecord(
                run_id=self.run_id,
                seq=switch.seq,
                t_s=switch.t_s,
                prompt_from=switch.prompt_from,
                prompt_to=switch.prompt_to,
                switched_at=switch.switched_at,
                noise_p95=response.noise_p95,
                response_diff=response.best_median,
                responded=response.responded,
                prompt_latency_s=response.latency_s,
            )
            for switch, response in result.switches
        ]
        self.lake.land("prompt_switches", rows, file_stem=f"{self.run_id}-switches")

    async def _keep_evidence(self, verdict: Verdict) -> str:
        folder = self.lake.artifacts_dir(self.run_id, self.started_at)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            tail = await self.client.logs_tail(lines=200)
            (folder / "scope-log-tail.txt").write_text("\n".join(tail.lines) + "\n")
        except HarnessError as error:
            (folder / "scope-log-tail.txt").write_text(f"log tail unavailable: {error}\n")
        if self.monitor.last_good is not None and self.monitor.last_good[0].frame:
            (folder / "last-good.jpg").write_bytes(self.monitor.last_good[0].frame)
        if self.monitor.first_bad is not None and self.monitor.first_bad.tick.frame:
            (folder / "first-bad.jpg").write_bytes(self.monitor.first_bad.tick.frame)
        summary = {"run_id": self.run_id, "scenario": self.scenario.name, **verdict.__dict__}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return str(folder)

    def _record(self, *, state: str, verdict: Verdict | None = None, result: StreamResult | None = None,
                artifacts: str | None = None) -> RunRecord:
        scenario, target = self.scenario, self.target
        fields = dict(
            run_id=self.run_id,
            state=state,
            scenario=scenario.name,
            pipeline=scenario.pipeline,
            mode=scenario.mode,
            duration_class=scenario.duration_class,
            planned_duration_s=scenario.duration_s,
            hard_cap_s=scenario.hard_cap_s,
            orchestrator=target.orchestrator,
            orchestrator_uri=target.orchestrator_uri,
            region=target.region,
            scope_instance=target.scope_instance or target.scope_url,
            scope_version=self.scope_version,
            harness_version=HARNESS_VERSION,
            prefect_flow_run_id=self.prefect_flow_run_id,
            started_at=self.started_at,
            prompt_pool=scenario.prompt_pool,
            pipeline_ids=tuple(scenario.pipeline_ids),
            width=scenario.width,
            height=scenario.height,
            input_kind=scenario.input_kind,
            connection_id=self.connection_id,
        )
        if state == "final" and verdict is not None:
            fields.update(self._final_fields(verdict, result, artifacts))
        return RunRecord(**fields)

    def _final_fields(self, verdict: Verdict, result: StreamResult | None, artifacts: str | None) -> dict:
        counts = result.verdict_counts if result else {}
        fields = dict(
            ended_at=self.clock(),
            outcome=verdict.outcome,
            failure_category=verdict.failure_category,
            failure_phase=verdict.failure_phase,
            failure_reason=verdict.failure_reason,
            checks_failed=list(verdict.checks_failed),
            connect_s=self.connect_s,
            load_s=self.load_s,
            first_frame_s=self.first_frame_s,
            stream_s=self.stream_s,
            cold_start=None if self.load_s is None else self.load_s > self.thresholds.cold_start_threshold_s,
            frames_sampled=sum(counts.values()),
            frames_valid=counts.get("valid", 0),
            frames_black=counts.get("black", 0),
            frames_corrupt=counts.get("corrupt", 0),
            frames_wrong_size=counts.get("wrong_size", 0),
            frames_frozen=counts.get("frozen", 0),
            frames_missing=counts.get("missing", 0),
            artifacts_path=artifacts,
        )
        if result is not None:
            fields.update(_stream_fields(result))
        return fields


def _stream_fields(result: StreamResult) -> dict:
    vram = result.vram
    return dict(
        fps_steady=result.fps.steady_fps,
        black_s=result.black_s,
        vram_total_mb=result.vram_total_mb,
        fps_p50=result.fps.p50,
        fps_p05=result.fps.p05,
        stall_count=result.stall_count,
        stall_s=result.stall_s,
        freeze_s=result.freeze_s,
        prompt_switches=len(result.switches),
        prompt_switches_responded=sum(1 for _, r in result.switches if r.responded),
        vram_start_mb=result.vram_start_mb,
        vram_end_mb=result.vram_end_mb,
        vram_peak_mb=vram.peak_mb if vram else None,
        vram_growth_mb=vram.slope_growth_mb if vram else None,
    )


def _shortened(scenario: Scenario, duration_s: float) -> Scenario:
    """The scenario with another stream length that keeps its name, so coverage and baselines
    still count it as that scenario; `planned_duration_s` records the real length."""
    changed = scenario.with_duration(duration_s)
    return changed.model_copy(update={"name": scenario.name, "duration_class": scenario.duration_class})


def _rotated(prompts: tuple[str, ...], run_id: str) -> tuple[str, ...]:
    """The scenario's prompts, starting at a place chosen by the run id so runs vary."""
    if not prompts:
        return ()
    start = int(hashlib.sha256(run_id.encode()).hexdigest(), 16) % len(prompts)
    return prompts[start:] + prompts[:start]
