"""Run one real session against a simulated Scope instance started for it: the suite's common move.

By default the simulator serves from a thread of the test process; `separate_process=True` runs
`python -m simulator serve` as its own process instead, so a measurement of the harness's timing
(frame arrivals, freezes) is not disturbed by the simulator sharing the harness's interpreter.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from analytics.lake import Lake
from analytics.records import RunRecord
from config.settings import Settings
from simulator.testing import SimHandle, running_simulator
from tasks.fleet.instances import free_loopback_port
from tests.integration.processes import wait_until_answers
from tasks.session.target import RunTarget
from tasks.scope.client import DEFAULT_TIMEOUTS, ScopeTimeouts
from tasks.session.lifecycle import run_session

DEFAULT_ORCHESTRATOR = "0x" + "ab" * 20
VOID_CHECK = "harness_lag"  # the harness's own verdict that its figures say nothing: it lagged its schedule
MEASURE_ATTEMPTS = 3
T = TypeVar("T")


def void_measurement(record: RunRecord, *, max_tick_lag_ms: float | None = None) -> bool:
    """The harness declared the run void (aborted: harness_lag), or it lagged beyond what a timing test bears."""
    if VOID_CHECK in record.checks_failed:
        return True
    return max_tick_lag_ms is not None and (record.tick_lag_p95_ms or 0.0) > max_tick_lag_ms


async def until_measured(run: Callable[[], Awaitable[T]], void: Callable[[T], bool],
                         attempts: int = MEASURE_ATTEMPTS) -> T:
    """Run again, at most `attempts` times in all, while the harness declares the run void.

    Not a timing hope: the harness measures its own lateness and says when its figures are void
    (a busy machine); a test of what Scope did needs a run whose figures count."""
    result = await run()
    for _ in range(attempts - 1):
        if not void(result):
            break
        result = await run()
    return result


async def run_on_simulator(
    settings: Settings,
    lake: Lake,
    *,
    profile: str = "healthy",
    overrides: dict | None = None,
    seed: int = 0,
    scenario: str = "longlive_t2v_15s",
    duration_s: float,
    orchestrator: str = DEFAULT_ORCHESTRATOR,
    timeouts: ScopeTimeouts = DEFAULT_TIMEOUTS,
    separate_process: bool = False,
) -> tuple[RunRecord, dict]:
    """The run's final record and the simulator's ground truth once it ended."""
    serving = simulator_process if separate_process else running_simulator
    with serving(profile, overrides=overrides, seed=seed) as sim:
        record = await run_session(
            settings=settings,
            scenario=settings.scenario(scenario),
            target=RunTarget(scope_url=sim.url, orchestrator=orchestrator),
            lake=lake,
            duration_s=duration_s,
            timeouts=timeouts,
        )
        return record, sim.truth()


START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@contextmanager
def simulator_process(profile: str = "healthy", *, overrides: dict | None = None, seed: int = 0) -> Iterator[SimHandle]:
    """`python -m simulator serve` on a free loopback port, as its own process, for the block; SIGTERM at the end."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "simulator", "serve", "--port", str(port), "--profile", profile,
               "--seed", str(seed)]
    for key, value in (overrides or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", process, timeout_s=START_TIMEOUT_S, name="the simulator",
                           output=lambda: process.stderr.read())
        yield SimHandle(url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            process.kill()
            process.communicate()
