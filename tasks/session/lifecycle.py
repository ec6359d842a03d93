"""One session of one scenario on one Scope instance: the lifecycle of quality.md.

    prepare  started row landed, /health, schema preflight, leftover sessions ended
    connect  POST /cloud/connect -> status connected                        (connect_s)
    load     inputs uploaded (after connect: assets follow the connection),
             POST /pipeline/load -> the ids asked for are loaded              (load_s)
    start    the media driver starts the session -> first frame passing the checks (first_frame_s)
    stream   ticks for the scenario's duration, prompt switches on schedule  (stream_s, ...)
    cleanup  the driver stops the session, the cloud is disconnected: on every path, bounded
    finish   verdict, evidence on failure, final row landed

Each phase returns what it measured and raises a `HarnessError` when it fails; `drive_session`
reads top to bottom. How media flows is the driver's business (tasks/session/driver.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from analytics.lake import Lake
from analytics.records import RunRecord
from config.scenarios import Scenario
from config.settings import Settings
from errors import Category, HarnessError, NoCapacity, Phase, PhaseFailed, PhaseTimeout, mentions_no_capacity
from tasks.scope.client import DEFAULT_TIMEOUTS, ScopeClient, ScopeTimeouts
from tasks.session import interrupts
from tasks.session.driver import MediaDriver, MediaPath, SessionPlan, Tick
from tasks.session.inputs import ensure_local_input, ensure_uploaded, pipelines_to_load
from tasks.session.monitor import StreamMonitor
from tasks.session.phases import (
    Connected,
    Loaded,
    PhaseResults,
    Prepared,
    Started,
    Streamed,
    TickClock,
    retry_network_blips,
)
from tasks.session.preflight_check import preflight_scenario
from tasks.session.progress import ProgressEvent, emit
from tasks.session.recorder import RunRecorder
from tasks.session.run_events import RunEvents
from tasks.session.run_record import RunIdentity, final_record, monitor_limits, started_record
from tasks.session.target import RunTarget, new_run_id, utc_now

T = TypeVar("T")
PhaseCall = Callable[..., Awaitable[Any]]  # (phase name, phase function, *its arguments) -> its result
CONNECT_POLL_S = 0.25
MEDIA_PATH_TIMEOUT_S = 5.0


class Session:
    """The phases of one run; what they measure is returned, what they started is cleaned up."""

    def __init__(self, identity: RunIdentity, *, settings: Settings, client: ScopeClient, driver: MediaDriver,
                 lake: Lake, clock: Callable[[], datetime] = utc_now) -> None:
        self.identity, self.settings, self.thresholds = identity, settings, settings.thresholds
        self.scenario = identity.scenario
        self.client, self.driver, self.lake, self.clock = client, driver, lake, clock
        self.recorder = RunRecorder(lake, identity.run_id, identity.started_at)
        self.monitor: StreamMonitor | None = None  # from the start phase on: the stream's accumulator
        self.ticks = TickClock(self.thresholds.sample_interval_s)
        self.phase = Phase.PREPARE  # the phase running now: interruptions and hard caps are put there
        self.cloud_touched = False
        self.offer_answered = False  # the driver's start returned: a refused offer never gets here
        self.events = RunEvents(settings.events)  # Scope's lifecycle events of this run, audited in finish

    def enter(self, phase: Phase) -> None:
        """Note the phase now running (interruptions and hard caps are put there) and say so."""
        self.phase = phase
        self.emit("phase", phase=phase.value)

    def emit(self, kind: str, **fields: Any) -> None:
        """Tell progress listeners what this run is doing."""
        target = self.identity.target
        emit(ProgressEvent(run_id=self.identity.run_id, scenario=self.scenario.name, kind=kind,
                           orchestrator=target.orchestrator, instance=target.scope_instance, **fields))

    async def prepare(self) -> Prepared:
        """Land `started`, start reading Scope's events, check the instance answers and can run the
        scenario, end leftover sessions."""
        self.recorder.land_run(started_record(self.identity, driver=self.driver.name))
        await self.events.start()
        health = await self.client.health()
        prompts_unsupported = preflight_scenario(await self.client.pipeline_schemas(), self.scenario)
        removed = await self.driver.remove_leftovers()
        return Prepared(scope_version=health.version, prompts_unsupported=prompts_unsupported,
                        leftovers_removed=removed)

    async def connect(self) -> Connected:
        """Connect Scope to the cloud (its pinned orchestrator) and wait until connected."""
        cloud = self.settings.cloud
        if not cloud.enabled:
            return Connected(connect_s=None, connection_id=None)
        t0 = time.monotonic()
        self.cloud_touched = True
        await self.client.cloud_connect(app_id=cloud.app_id, api_key=cloud.api_key, user_id=cloud.user_id)
        limit_s = self.thresholds.connect_timeout_s
        while True:
            status = await self.client.cloud_status()
            if status.connected:
                return Connected(connect_s=time.monotonic() - t0, connection_id=status.connection_id)
            if status.failed:
                raise _connect_failure(status.error or "cloud connect failed")
            if time.monotonic() - t0 > limit_s:
                raise PhaseTimeout(f"cloud connect not connected after {limit_s:.0f} s (stage "
                                   f"{status.connect_stage})", category=Category.ORCHESTRATOR)
            await asyncio.sleep(CONNECT_POLL_S)

    async def load(self) -> Loaded:
        """Upload the inputs the driver needs, load the scenario's pipelines, wait until they are loaded."""
        kinds = {self.scenario.input_kind} - {"none"}
        if self.driver.name == "webrtc":
            kinds -= {"video"}  # the clip goes out as the offer's track, from the local file
        inputs = await ensure_uploaded(self.client, kinds, self.identity.inputs_dir)
        if self.scenario.input_kind == "video":
            local = await asyncio.to_thread(ensure_local_input, "video", self.identity.inputs_dir)
            inputs = dataclasses.replace(inputs, local_clip_path=str(local))
        t0 = time.monotonic()
        pipeline_ids = pipelines_to_load(self.scenario)
        await self.client.load_pipelines(pipeline_ids)
        await self.client.wait_until_loaded(timeout_s=self.thresholds.load_timeout_s, expected_ids=pipeline_ids)
        return Loaded(load_s=time.monotonic() - t0, inputs=inputs)

    async def start(self, prepared: Prepared, loaded: Loaded) -> Started:
        """Start the media and wait for the first output frame that passes the frame checks."""
        limits = monitor_limits(self.settings, self.scenario, prepared.prompts_unsupported)
        self.monitor = StreamMonitor(limits)
        prompts = self.identity.prompts
        plan = SessionPlan(scenario=self.scenario, inputs=loaded.inputs, first_prompt=prompts[0] if prompts else None,
                           connection_id=self.identity.run_id, user_id=self.settings.cloud.user_id)
        await self.driver.start(plan)
        self.offer_answered = True
        first_frame_s = await self._wait_first_frame()
        return Started(first_frame_s=first_frame_s)

    async def _wait_first_frame(self) -> float:
        assert self.monitor is not None
        limit_s = self.thresholds.first_frame_timeout_s
        grace_s = max(self.thresholds.black_s, self.thresholds.freeze_s) * 2
        first_invalid: float | None = None
        last_seq: int | None = None
        while True:
            tick = await self.driver.tick(with_metrics=False)
            fresh = tick.has_frame and (tick.frame_seq is None or tick.frame_seq != last_seq)
            observed = self.monitor.observe(tick) if fresh else None
            last_seq = tick.frame_seq
            if observed is not None and observed.verdict == "valid":
                self.monitor = StreamMonitor(self.monitor.limits)  # the stream is judged from here
                self.recorder.add_frame(self.monitor.observe(tick))
                return tick.t_s
            if observed is not None:
                first_invalid = tick.t_s if first_invalid is None else first_invalid
                if tick.t_s - first_invalid > grace_s:
                    raise invalid_start(observed, self.scenario)
            if not tick.session_alive:
                raise PhaseFailed("the session ended before its first frame", category=Category.RUNNER)
            if tick.t_s > limit_s:
                await self._raise_if_session_gone()
                raise PhaseTimeout(f"no output frame within {limit_s:.0f} s of session start",
                                   category=Category.RUNNER)
            await asyncio.sleep(self.thresholds.first_frame_poll_s)

    async def _raise_if_session_gone(self) -> None:
        if not (await self.driver.tick(with_metrics=True)).session_alive:
            raise PhaseFailed("the session vanished before its first frame", category=Category.RUNNER)

    async def stream(self, started: Started) -> Streamed:
        """Tick for the scenario's duration, switching prompts when each switch can be judged."""
        assert self.monitor is not None
        monitor, first_s = self.monitor, started.first_frame_s
        end_s = first_s + self.identity.duration_s
        switch_due = self._switch_times(first_s)
        self.ticks.begin(self.driver.t0 + first_s)
        stopped_early = None
        while True:
            await self.ticks.wait_next()
            tick = await self._tick_with_grace()
            if not tick.session_alive:
                raise PhaseFailed("stream died: the session vanished from Scope", category=Category.RUNNER)
            observed = monitor.observe(tick)
            self.recorder.add_frame(observed)
            self.emit("tick", t_s=tick.t_s, frames_sampled=self.recorder.frame_seq, verdict=observed.verdict,
                      fps_out=tick.counters.fps_out if tick.counters else None)
            stopped_early = monitor.fatal(tick.t_s)
            if stopped_early is not None:
                break
            if tick.t_s >= end_s and not monitor.awaiting_response(tick.t_s):
                break  # a switch's response window still open at the end is waited out (bounded by it)
            if switch_due and tick.t_s >= switch_due[0] and tick.t_s < end_s and monitor.ready_for_switch(tick.t_s):
                switch_due.pop(0)
                await self._switch_prompt()
        return Streamed(stream_s=tick.t_s - first_s, stopped_early=stopped_early)

    def _switch_times(self, first_s: float) -> list[float]:
        assert self.monitor is not None
        if len(self.identity.prompts) < 2 or self.monitor.limits.prompts_unsupported is not None:
            return []
        return [first_s + t for t in self.identity.switch_schedule(self.thresholds)]

    async def _tick_with_grace(self) -> Tick:
        """One tick; a network failure is retried with back-off for up to tick_error_grace_s."""
        return await retry_network_blips(lambda: self.driver.tick(with_metrics=True),
                                         grace_s=self.thresholds.tick_error_grace_s, clock=self.ticks)

    async def _switch_prompt(self) -> None:
        assert self.monitor is not None
        prompts = self.identity.prompts
        index = len(self.monitor.switches)
        prompt_from, prompt_to = prompts[index % len(prompts)], prompts[(index + 1) % len(prompts)]
        t_s = time.monotonic() - self.driver.t0
        await self.driver.switch_prompt(prompt_to)
        self.monitor.note_prompt_switch(t_s, self.clock(), prompt_from, prompt_to)

    async def media_path(self) -> MediaPath | None:
        """Where the media went (asked of the driver before it stops); None when it cannot tell."""
        try:
            async with asyncio.timeout(MEDIA_PATH_TIMEOUT_S):
                return await self.driver.media_path()
        except (HarnessError, TimeoutError):
            return None

    async def cleanup(self) -> None:
        """Stop the session and disconnect from the cloud, each attempted, bounded by cleanup_timeout_s."""
        errors: list[HarnessError] = []
        try:
            async with asyncio.timeout(self.thresholds.cleanup_timeout_s):
                await _attempt(self.driver.stop(), errors)
                if self.cloud_touched:
                    await _attempt(self.client.cloud_disconnect(), errors)
        except TimeoutError:
            errors.append(PhaseTimeout("cleanup did not finish in time", category=Category.NETWORK))
        if errors:
            raise errors[0].with_phase(Phase.CLEANUP)

    async def finish(self, results: PhaseResults) -> RunRecord:
        """Decide the verdict, keep evidence of a failure, land frames, switches and the final row."""
        return await final_record(self, results)


async def _attempt(step: Awaitable[None], errors: list[HarnessError]) -> None:
    try:
        await step
    except HarnessError as error:
        errors.append(error)


def _connect_failure(reason: str) -> HarnessError:
    if mentions_no_capacity(reason):
        return NoCapacity(reason, route="/api/v1/cloud/status", category=Category.ORCHESTRATOR)
    return PhaseFailed(f"cloud connect failed: {reason}", category=Category.ORCHESTRATOR)


def invalid_start(observed: Any, scenario: Scenario) -> HarnessError:
    """The failure for frames that keep arriving but never pass the frame checks."""
    check = {"wrong_size": "frame_size", "black": "black", "corrupt": "corrupt", "frozen": "freeze"}.get(
        observed.verdict, "first_frame")
    size = f", {observed.stats.width}x{observed.stats.height}" if observed.stats else ""
    return PhaseFailed(f"output frames arrive but fail the {check} check ({observed.verdict}{size}; "
                       f"expected {scenario.width}x{scenario.height})", category=Category.VALIDATION, check=check)


async def _direct(name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


async def drive_session(session: Session, call: PhaseCall = _direct) -> RunRecord:
    """Run the lifecycle in order, always clean up and land the final row; return the run record.

    An interruption (a signal, a cancellation, Prefect's termination) still gets cleanup and a
    final `aborted` row, without Prefect (its client may be closed by then), and is re-raised.
    One arriving during cleanup or finish does not cut them short: both are bounded."""
    with interrupts.cancel_on_signal():
        results = await _run_phases(session, call, PhaseResults())
        results = results.with_(media_path=await session.media_path())
        results = await _cleanup(session, call, results)
        record, results = await _finish(session, call, results)
    if results.interruption is not None:
        raise results.interruption
    return record


async def _run_phases(session: Session, call: PhaseCall, results: PhaseResults) -> PhaseResults:
    cap = asyncio.timeout(session.scenario.hard_cap_s)
    try:
        async with cap:
            session.enter(Phase.PREPARE)
            results = results.with_(prepared=await call("prepare", session.prepare))
            session.enter(Phase.CONNECT)
            results = results.with_(connected=await call("connect", session.connect))
            session.enter(Phase.LOAD)
            results = results.with_(loaded=await call("load", session.load))
            session.enter(Phase.START)
            results = results.with_(started=await call("start", session.start, results.prepared, results.loaded))
            session.enter(Phase.STREAM)
            results = results.with_(streamed=await call("stream", session.stream, results.started))
    except HarnessError as error:
        results = results.failed(error.with_phase(session.phase))
    except TimeoutError:
        if not cap.expired():
            raise
        results = results.interrupted_by_cap(session.scenario.hard_cap_s, session.phase)
    except Exception as error:  # a bug on our side must never be blamed on the orchestrator
        results = results.failed(HarnessError(f"harness error: {type(error).__name__}: {error}", phase=session.phase))
    except BaseException as error:  # a signal, a cancellation: re-raised by drive_session once landed
        results = _interrupted(results, error, session.phase)
    return results


async def _cleanup(session: Session, call: PhaseCall, results: PhaseResults) -> PhaseResults:
    """Cleanup, through `call` unless the run was interrupted; once more, directly, if it is cut short."""
    session.enter(Phase.CLEANUP)
    for attempt in range(2):
        use = _direct if results.interruption is not None or attempt else call
        try:
            await use("cleanup", session.cleanup)
            return results
        except HarnessError as error:
            return results.with_(cleanup_error=error.with_phase(Phase.CLEANUP))
        except Exception as error:  # the orchestration layer (or a bug) failed around cleanup: again, directly
            failure = HarnessError(f"cleanup failed: {type(error).__name__}: {error}", phase=Phase.CLEANUP)
            results = results.with_(cleanup_error=failure)
        except BaseException as error:  # interrupted while cleaning up: cleanup is idempotent, finish it
            results = _interrupted(results, error, Phase.CLEANUP)
    return results


async def _finish(session: Session, call: PhaseCall, results: PhaseResults) -> tuple[RunRecord, PhaseResults]:
    """Land the final row, through `call` unless interrupted; directly if the orchestration layer fails."""
    for attempt in range(2):
        use = _direct if results.interruption is not None or attempt else call
        try:
            return await use("finish", session.finish, results), results
        except HarnessError:
            raise  # the run's own records could not land: loudly
        except Exception:
            if use is _direct:
                raise
        except BaseException as error:
            results = _interrupted(results, error, Phase.CLEANUP)
    return await session.finish(results), results


def _interrupted(results: PhaseResults, error: BaseException, phase: Phase) -> PhaseResults:
    _uncancel()
    return results if results.interruption is not None else results.interrupted(error, phase)


def _uncancel() -> None:
    """Let cleanup's own timeouts work after an external cancellation was caught."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()


def make_driver(settings: Settings, target: RunTarget, client: ScopeClient, clock: Callable[[], datetime]) -> MediaDriver:
    """The media driver the run's instance uses (config), built on its Scope client."""
    if settings.driver_for(target.driver) == "webrtc":
        from tasks.session.drivers.webrtc import WebRTCDriver

        return WebRTCDriver(client, settings=settings, clock=clock)
    from tasks.session.drivers.headless import HeadlessDriver

    return HeadlessDriver(client, clock=clock)


@asynccontextmanager
async def open_session(
    *,
    settings: Settings,
    scenario: Scenario,
    target: RunTarget,
    lake: Lake,
    duration_s: float | None = None,
    prefect_flow_run_id: str | None = None,
    timeouts: ScopeTimeouts = DEFAULT_TIMEOUTS,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[Session]:
    """A `Session` with its own Scope client and media driver, closed when the block ends."""
    identity = RunIdentity.new(scenario=scenario, target=target, lake=lake, duration_s=duration_s,
                               prefect_flow_run_id=prefect_flow_run_id, clock=clock)
    async with ScopeClient(target.scope_url, timeouts=timeouts) as client:
        driver = make_driver(settings, target, client, clock)
        session = Session(identity, settings=settings, client=client, driver=driver, lake=lake, clock=clock)
        try:
            yield session
        finally:
            await session.events.close()  # a run that never settled its events still releases the source


async def run_session(**kwargs: Any) -> RunRecord:
    """Open a run and drive it to its final record without Prefect (tests, benchmarks)."""
    async with open_session(**kwargs) as session:
        return await drive_session(session)


__all__ = ["Session", "drive_session", "open_session", "run_session", "make_driver", "new_run_id"]
