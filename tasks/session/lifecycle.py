"""One session of one scenario on one Scope instance: the lifecycle of quality.md.

    prepare  health, stop-before-start, inputs uploaded, `started` row landed
    connect  POST /cloud/connect -> status connected            (connect_s)
    load     POST /pipeline/load -> status loaded               (load_s)
    start    POST /session/start -> first frame passing checks  (first_frame_s)
    stream   the monitoring loop for the scenario's duration    (stream_s)
    cleanup  stop the session, disconnect; always runs
    finish   verdict, evidence on failure, final row landed

Each phase is a method returning True to go on. A phase never raises a HarnessError: it
records the first failure (category and phase) and returns False, so `drive_session`
(or a Prefect flow, which wraps each phase in a task) only sequences them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from analytics.lake import Lake
from analytics.records import RunRecord
from config.scenarios import Scenario
from config.settings import Settings

from errors import Category, HarnessError, NoCapacity, Phase, PhaseFailed, PhaseTimeout
from tasks.session.inputs import build_session_request, ensure_uploaded, pipelines_to_load
from tasks.session.monitor import StreamMonitor, Tick
from errors import mentions_no_capacity
from tasks.session.run_state import RunState, RunTarget
from tasks.scope.client import DEFAULT_TIMEOUTS, ScopeClient, ScopeTimeouts

T = TypeVar("T")
PhaseCall = Callable[[str, Callable[[], Awaitable[T]]], Awaitable[T]]
LIFECYCLE = ("prepare", "connect", "load", "start", "stream")
CONNECT_POLL_S = 0.25
MAX_TICK_ERRORS = 3  # consecutive failed ticks before the instance counts as unreachable


class SessionRun(RunState):
    """The phases of one run; state and landing live in `RunState`."""

    async def prepare(self) -> bool:
        """Check the instance answers, stop a leftover session, upload inputs, land `started`."""
        async def body() -> None:
            health = await self.client.health()
            self.scope_version = health.version
            await self.client.stop_session()  # tolerates 404: nothing was running
            self.inputs = await ensure_uploaded(self.client, {self.scenario.input_kind}, self.inputs_dir)
        self.land_started()
        return await self._phase(Phase.CONNECT, body(), name="prepare")

    async def connect(self) -> bool:
        """Connect Scope to the cloud (its pinned orchestrator) and wait until connected."""
        if not self.settings.cloud.enabled:
            return True

        async def body() -> None:
            cloud = self.settings.cloud
            t0 = time.monotonic()
            self.cloud_touched = True
            await self.client.cloud_connect(app_id=cloud.app_id, api_key=cloud.api_key, user_id=cloud.user_id)
            limit_s = self.thresholds.connect_timeout_s
            while True:
                status = await self.client.cloud_status()
                if status.connected:
                    self.connect_s = time.monotonic() - t0
                    self.connection_id = status.connection_id
                    return
                if status.failed:
                    raise _connect_failure(status.error or "cloud connect failed")
                if time.monotonic() - t0 > limit_s:
                    raise PhaseTimeout(
                        f"cloud connect not connected after {limit_s:.0f} s (stage {status.connect_stage})",
                        category=Category.ORCHESTRATOR,
                    )
                await asyncio.sleep(CONNECT_POLL_S)
        return await self._phase(Phase.CONNECT, body())

    async def load(self) -> bool:
        """Load the scenario's pipelines and wait until Scope says loaded."""
        async def body() -> None:
            t0 = time.monotonic()
            await self.client.load_pipelines(pipelines_to_load(self.scenario))
            await self.client.wait_until_loaded(timeout_s=self.thresholds.load_timeout_s)
            self.load_s = time.monotonic() - t0
        return await self._phase(Phase.LOAD, body())

    async def start(self) -> bool:
        """Start the headless session and wait for the first frame that passes the frame checks."""
        async def body() -> None:
            first_prompt = self.prompts[0] if self.prompts else None
            request, self.sink_node_id = build_session_request(self.scenario, self.inputs, first_prompt)
            self.session_touched = True
            await self.client.start_session(**request)
            self.session_t0 = time.monotonic()
            await self._wait_first_frame()
        return await self._phase(Phase.START, body())

    async def _wait_first_frame(self) -> None:
        limit_s = self.thresholds.first_frame_timeout_s
        grace_s = max(self.thresholds.black_s, self.thresholds.freeze_s) * 2
        first_invalid: float | None = None
        while True:
            tick = await self._read_tick(with_metrics=False)
            observed = self.monitor.observe(tick) if tick.frame is not None else None
            if observed is not None and observed.verdict == "valid":
                self.first_frame_s = tick.t_s
                self.monitor = self.new_monitor()
                self.record_frame(self.monitor.observe(tick))
                return
            if observed is not None:
                first_invalid = tick.t_s if first_invalid is None else first_invalid
                if tick.t_s - first_invalid > grace_s:
                    raise self.invalid_start(observed)
            if tick.t_s > limit_s:
                await self._raise_if_session_gone()
                raise PhaseTimeout(f"no output frame within {limit_s:.0f} s of session start", category=Category.RUNNER)
            await asyncio.sleep(self.thresholds.first_frame_poll_s)

    async def stream(self) -> bool:
        """Sample metrics and frames for the scenario's duration, switching prompts on schedule."""
        return await self._phase(Phase.STREAM, self._stream_loop())

    async def _stream_loop(self) -> None:
        assert self.first_frame_s is not None
        end_s = self.first_frame_s + self.duration_s
        switch_at = [self.first_frame_s + t for t in self.switch_schedule()]
        interval_s = self.thresholds.sample_interval_s
        next_tick = self.session_t0 + self.first_frame_s + interval_s
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += interval_s
            tick = await self._sample_with_retries()
            if tick.metrics is not None and tick.metrics.headless is None:
                raise PhaseFailed("stream died: the session vanished from /session/metrics", category=Category.RUNNER)
            self.record_frame(self.monitor.observe(tick))
            fatal = self.monitor.fatal(tick.t_s)
            if fatal is not None:
                self.stopped_early = fatal
                break
            if tick.t_s >= end_s and not self.monitor.awaiting_response(tick.t_s):
                break  # a switch's response window still open at the end is waited out (bounded by it)
            if switch_at and tick.t_s >= switch_at[0]:
                switch_at.pop(0)
                await self._switch_prompt(tick.t_s)
        self.stream_s = tick.t_s - self.first_frame_s  # the stream actually monitored

    async def _sample_with_retries(self) -> Tick:
        errors = 0
        while True:
            try:
                return await self._read_tick(with_metrics=True)
            except HarnessError as error:
                errors += 1
                if errors >= MAX_TICK_ERRORS or not error.category == Category.NETWORK:
                    raise
                self.tick_errors += 1

    async def _read_tick(self, *, with_metrics: bool) -> Tick:
        # The tick's time is when its requests were sent: Scope answers with what it had then,
        # so a first frame is timed to within one poll interval, never late by the answer's transit.
        t_s = time.monotonic() - self.session_t0
        if with_metrics:
            metrics, (frame, fetch_ms) = await asyncio.gather(self.client.session_metrics(), self._timed_frame())
        else:
            metrics, (frame, fetch_ms) = None, await self._timed_frame()
        return Tick(
            t_s=t_s,
            captured_at=self.clock(),
            frame=frame,
            metrics=metrics,
            frame_fetch_ms=fetch_ms,
        )

    async def _timed_frame(self) -> tuple[bytes | None, float]:
        t0 = time.perf_counter()
        frame = await self.client.get_frame(sink_node_id=self.sink_node_id)
        return frame, (time.perf_counter() - t0) * 1000.0

    async def _switch_prompt(self, t_s: float) -> None:
        prompt_from = self.prompts[self.prompt_index % len(self.prompts)]
        self.prompt_index += 1
        prompt_to = self.prompts[self.prompt_index % len(self.prompts)]
        await self.client.switch_prompt(prompt_to)
        self.monitor.note_prompt_switch(time.monotonic() - self.session_t0, self.clock(), prompt_from, prompt_to)

    async def _raise_if_session_gone(self) -> None:
        metrics = await self.client.session_metrics()
        if metrics.headless is None:
            raise PhaseFailed("the session vanished before its first frame", category=Category.RUNNER)

    async def cleanup(self) -> bool:
        """Stop the session and disconnect from the cloud; runs after success, failure and cancellation."""
        async def body() -> None:
            if self.session_touched:
                await self.client.stop_session()
            if self.cloud_touched:
                await self.client.cloud_disconnect()
        try:
            async with asyncio.timeout(self.thresholds.cleanup_timeout_s):
                return await self._phase(Phase.CLEANUP, body())
        except TimeoutError:
            self.fail(PhaseTimeout("cleanup did not finish in time", category=Category.NETWORK, phase=Phase.CLEANUP))
            return False

    async def _phase(self, phase: Phase, body: Awaitable[None], *, name: str | None = None) -> bool:
        """Run one phase body; record its failure (classified under `phase`) instead of raising it."""
        self.current_phase = phase
        self.emit("phase", phase=name or phase.value)
        try:
            await body
            return True
        except HarnessError as error:
            self.fail(error.with_phase(phase))
        except Exception as error:  # a bug on our side must not be blamed on the orchestrator
            self.fail(HarnessError(f"harness error: {type(error).__name__}: {error}", phase=phase))
        return False


def _connect_failure(reason: str) -> HarnessError:
    if mentions_no_capacity(reason):
        return NoCapacity(reason, route="/api/v1/cloud/status", category=Category.ORCHESTRATOR)
    return PhaseFailed(f"cloud connect failed: {reason}", category=Category.ORCHESTRATOR)


async def _direct(name: str, fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def drive_session(run: SessionRun, call: PhaseCall = _direct) -> RunRecord:
    """Run the lifecycle in order, always clean up and land the final row; return the run record."""
    try:
        async with asyncio.timeout(run.scenario.hard_cap_s):
            for name in LIFECYCLE:
                if not await call(name, getattr(run, name)):
                    break
    except TimeoutError:
        run.fail(HarnessError(f"run exceeded its hard cap of {run.scenario.hard_cap_s:.0f} s", phase=run.current_phase))
    except asyncio.CancelledError:
        run.cancelled = True
        raise
    finally:
        await call("cleanup", run.cleanup)
        record = await call("finish", run.finish)
    return record


@asynccontextmanager
async def open_session_run(
    *,
    settings: Settings,
    scenario: Scenario,
    target: RunTarget,
    lake: Lake,
    duration_s: float | None = None,
    prefect_flow_run_id: str | None = None,
    timeouts: ScopeTimeouts = DEFAULT_TIMEOUTS,
) -> AsyncIterator[SessionRun]:
    """A `SessionRun` with its own Scope client, closed when the block ends."""
    async with ScopeClient(target.scope_url, timeouts=timeouts) as client:
        yield SessionRun(
            scenario=scenario,
            settings=settings,
            client=client,
            lake=lake,
            target=target,
            duration_s=duration_s,
            prefect_flow_run_id=prefect_flow_run_id,
        )


async def run_session(**kwargs) -> RunRecord:
    """Open a run and drive it to its final record without Prefect (tests, benchmarks)."""
    async with open_session_run(**kwargs) as run:
        return await drive_session(run)
