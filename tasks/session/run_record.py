"""Who a run is (`RunIdentity`), the limits its monitor applies, and its `started` and `final` rows.

The final row is built from what the phases returned (`PhaseResults`), the monitor's judgement
of the stream, the driver's receiver figures and the verdict; nothing here measures anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics.lake import Lake
from analytics.records import RunRecord
from config.scenarios import Scenario
from config.settings import Settings, Thresholds
from errors import HarnessError
from tasks.session import checks
from tasks.session.checks import CheckResult
from tasks.session.driver import MediaPath, ReceiverFigures
from tasks.session.monitor import MonitorLimits, StreamResult
from tasks.session.phases import PhaseResults
from tasks.session.run_events import run_facts
from tasks.session.target import RunTarget, new_run_id
from tasks.session.verdict import Verdict, decide

if TYPE_CHECKING:
    from tasks.session.lifecycle import Session

HARNESS_VERSION = "0.2.0"
MIN_SWITCH_LEAD_S = 3.0  # frames before a switch that measure the session's own noise


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


@dataclass(frozen=True)
class RunIdentity:
    """What a run is before it measures anything: id, scenario, target, prompts, where it lands."""

    run_id: str
    started_at: datetime
    scenario: Scenario
    target: RunTarget
    prompts: tuple[str, ...]
    inputs_dir: Path
    prefect_flow_run_id: str | None = None

    @classmethod
    def new(cls, *, scenario: Scenario, target: RunTarget, lake: Lake, duration_s: float | None = None,
            prefect_flow_run_id: str | None = None, clock: Callable[[], datetime]) -> RunIdentity:
        """A fresh run of `scenario` (with another stream length when `duration_s` is given)."""
        started_at = clock()
        run_id = new_run_id(started_at)
        scenario = scenario if duration_s is None else _shortened(scenario, duration_s)
        return cls(run_id=run_id, started_at=started_at, scenario=scenario, target=target,
                   prompts=_rotated(scenario.prompts, run_id), inputs_dir=lake.root / "inputs",
                   prefect_flow_run_id=prefect_flow_run_id)

    @property
    def duration_s(self) -> float:
        """The stream length to monitor after the first frame."""
        return self.scenario.duration_s

    def switch_schedule(self, thresholds: Thresholds) -> list[float]:
        """Prompt switch times after the first frame (none when the scenario has a single prompt)."""
        if len(self.prompts) < 2:
            return []
        return prompt_switch_times(self.duration_s, thresholds.prompt_switch_interval_s,
                                   thresholds.prompt_response_s)


def monitor_limits(settings: Settings, scenario: Scenario, prompts_unsupported: str | None) -> MonitorLimits:
    """The monitor's limits for this scenario: config thresholds, the fps bar relative to expected_fps."""
    t = settings.thresholds
    return MonitorLimits(
        width=scenario.width, height=scenario.height, stall_timeout_s=t.stall_timeout_s, freeze_s=t.freeze_s,
        black_s=t.black_s, min_fps=max(t.min_fps, t.min_fps_ratio * scenario.expected_fps),
        fps_warmup_s=t.fps_warmup_s, prompt_margin=t.prompt_margin, prompt_response_s=t.prompt_response_s,
        vram_leak_tolerance_mb=t.vram_leak_tolerance_mb, max_vram_percent=t.max_vram_percent,
        black_luma_max=t.black_luma_max, black_fraction_min=t.black_fraction_min,
        frozen_diff_max=t.frozen_diff_max, prompts_unsupported=prompts_unsupported,
    )


def started_record(identity: RunIdentity, *, driver: str) -> RunRecord:
    """The `started` row, landed before any Scope call so a crash from here on is found."""
    return RunRecord(**_identity_fields(identity), state="started", media_driver=driver)


def _identity_fields(identity: RunIdentity) -> dict[str, Any]:
    scenario, target = identity.scenario, identity.target
    return dict(
        run_id=identity.run_id, scenario=scenario.name, pipeline=scenario.pipeline, mode=scenario.mode,
        duration_class=scenario.duration_class, planned_duration_s=scenario.duration_s,
        hard_cap_s=scenario.hard_cap_s, orchestrator=target.orchestrator, orchestrator_uri=target.orchestrator_uri,
        region=target.region, scope_instance=target.scope_instance or target.scope_url,
        harness_version=HARNESS_VERSION, prefect_flow_run_id=identity.prefect_flow_run_id,
        started_at=identity.started_at, prompt_pool=scenario.prompt_pool, pipeline_ids=tuple(scenario.pipeline_ids),
        width=scenario.width, height=scenario.height, input_kind=scenario.input_kind,
        expected_fps=scenario.expected_fps,
    )


def extra_checks(session: Session, results: PhaseResults) -> list[CheckResult]:
    """Checks beyond the monitor's: the media went through the cloud, the harness kept its schedule."""
    found: list[CheckResult] = []
    asked_relay = session.driver.name == "webrtc" and session.settings.cloud.enabled
    if asked_relay and results.started is not None:
        got = results.media_path
        passed = got == MediaPath.RELAY
        reason = (f"media relayed through the cloud ({got})" if passed else
                  f"asked for the cloud but the media path is {got or 'unknown'}: the instance is not "
                  "routing the session through its orchestrator")
        found.append(CheckResult(checks.CheckName.RELAY, passed, reason, None))
    lag_ms = session.ticks.lag_p95_ms
    if lag_ms is not None:
        limit_ms = session.thresholds.max_tick_lag_ms
        passed = lag_ms <= limit_ms
        reason = (f"harness tick lag p95 {lag_ms:.0f} ms, {session.ticks.missed} ticks missed "
                  f"({'within' if passed else 'above'} {limit_ms:.0f} ms): "
                  + ("" if passed else "the harness was overloaded, its stream figures say nothing about Scope"))
        found.append(CheckResult(checks.CheckName.HARNESS_LAG, passed, reason.rstrip(": "), lag_ms))
    return found


async def final_record(session: Session, results: PhaseResults) -> RunRecord:
    """Judge the run, keep evidence of a failure, land switches and the final row; return it."""
    monitor = session.monitor if results.started is not None else None
    result = monitor.finish() if monitor is not None else None
    steady_fps = result.fps.steady_fps if result is not None else None
    events = await session.events.settle(run_facts(session, results, steady_fps))
    events_check = events.check(session.settings.events)
    all_checks = ((result.checks if result is not None else []) + extra_checks(session, results)
                  + ([events_check] if events_check is not None else []))
    streamed = results.streamed
    verdict = decide(
        results.failure, all_checks, cleanup_error=results.cleanup_error, interrupted_by=results.interrupted_by,
        interrupted_in=results.interrupted_in, first_check=streamed.stopped_early.name if streamed and
        streamed.stopped_early else None,
    )
    artifacts = await _evidence(session, verdict) if verdict.outcome in ("failed", "aborted") else None
    session.recorder.close_frames()
    if result is not None:
        session.recorder.land_switches(result)
    session.recorder.land_events(events.rows(session.identity.run_id))
    fields = (_identity_fields(session.identity) | _measured_fields(session, results, result, all_checks)
              | events.run_fields())
    record = RunRecord(**fields, state="final", ended_at=session.clock(), outcome=verdict.outcome,
                       failure_category=verdict.failure_category, failure_phase=verdict.failure_phase,
                       failure_reason=verdict.failure_reason, checks_failed=list(verdict.checks_failed),
                       artifacts_path=artifacts)
    session.recorder.land_run(record)
    session.emit("done", outcome=verdict.outcome, frames_sampled=session.recorder.frame_seq)
    return record


async def _evidence(session: Session, verdict: Verdict) -> str | None:
    try:
        tail = (await session.client.logs_tail(lines=200)).lines
    except HarnessError as error:
        tail = f"log tail unavailable: {error}\n"
    monitor = session.monitor
    last_good = monitor.last_good[0] if monitor is not None and monitor.last_good is not None else None
    first_bad = monitor.first_bad.tick if monitor is not None and monitor.first_bad is not None else None
    try:
        return session.recorder.keep_evidence(verdict, tail, last_good, first_bad, session.scenario.name)
    except OSError as error:  # evidence is a help, not the record: the final row still lands
        session.emit("warning", message=f"evidence not kept: {error}")
        return None


def _measured_fields(session: Session, results: PhaseResults, result: StreamResult | None,
                     all_checks: list[CheckResult]) -> dict[str, Any]:
    prepared, connected, loaded, started = results.prepared, results.connected, results.loaded, results.started
    load_s = loaded.load_s if loaded else None
    stream_s = results.streamed.stream_s if results.streamed else _stream_seen_s(result, started)
    fields: dict[str, Any] = dict(
        media_driver=session.driver.name, media_path=results.media_path.value if results.media_path else None,
        scope_version=prepared.scope_version if prepared else None,
        connect_s=connected.connect_s if connected else None,
        connection_id=connected.connection_id if connected else None,
        load_s=load_s, first_frame_s=started.first_frame_s if started else None, stream_s=stream_s,
        cold_start=None if load_s is None else load_s > session.thresholds.cold_start_threshold_s,
        checks_skipped=tuple(f"{c.name}: {c.reason}" for c in all_checks if c.skipped),
        tick_errors=session.ticks.errors, tick_lag_p95_ms=session.ticks.lag_p95_ms,
        ticks_missed=session.ticks.missed, interrupted_by=results.interrupted_by,
    )
    if result is not None:
        fields |= _stream_fields(result)
    fields |= _receiver_fields(session.driver.receiver_figures())
    return fields


def _stream_seen_s(result: StreamResult | None, started: Any) -> float | None:
    if result is None or started is None or not result.last_t_s:
        return None
    return max(0.0, result.last_t_s - started.first_frame_s)


def _stream_fields(result: StreamResult) -> dict[str, Any]:
    vram, counts = result.vram, result.verdict_counts
    responses = [r for _, r in result.switches]
    latencies = sorted(r.latency_s for r in responses if r.latency_s is not None)
    return dict(
        frames_sampled=sum(counts.values()), frames_valid=counts.get("valid", 0),
        frames_black=counts.get("black", 0), frames_corrupt=counts.get("corrupt", 0),
        frames_wrong_size=counts.get("wrong_size", 0), frames_frozen=counts.get("frozen", 0),
        frames_missing=counts.get("missing", 0), fps_steady=result.fps.steady_fps, black_s=result.black_s,
        vram_total_mb=result.vram_total_mb, fps_p50=result.fps.p50, fps_p05=result.fps.p05,
        stall_count=result.stall_count, stall_s=result.stall_s, freeze_s=result.freeze_s,
        prompt_switches=len(result.switches), prompt_switches_responded=sum(1 for r in responses if r.responded),
        prompt_switches_evaluated=sum(1 for r in responses if r.evaluated),
        prompt_latency_p50_s=latencies[len(latencies) // 2] if latencies else None,
        vram_start_mb=result.vram_start_mb, vram_end_mb=result.vram_end_mb,
        vram_peak_mb=vram.peak_mb if vram else None, vram_growth_mb=vram.slope_growth_mb if vram else None,
    )


def _receiver_fields(figures: ReceiverFigures | None) -> dict[str, Any]:
    if figures is None:
        return {}
    return {name: getattr(figures, name) for name in (
        "frames_received", "fps_received", "fps_received_p50", "fps_received_p05", "freeze_count",
        "freeze_total_s", "frame_interval_p50_ms", "frame_interval_p95_ms", "frame_interval_max_ms",
        "packets_received", "packets_lost", "jitter_ms", "nack_count", "pli_count", "bitrate_kbps", "rtt_ms",
        "codec")}


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
