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
from collections.abc import Iterator
from contextlib import contextmanager

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
