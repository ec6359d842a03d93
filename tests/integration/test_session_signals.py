"""SIGTERM and SIGINT delivered to a real harness process in each lifecycle phase.

Whatever the phase, the run must land a final row that is never `passed` (an interrupted run is
`aborted`, blamed on the harness, the signal named), and the simulated Scope must be left with no
session running and no cloud connection up. Each phase is made long by the simulator's own knobs,
and the signal is sent once the child says the phase began, so it lands inside that phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from analytics.lake import Lake
from simulator.testing import running_simulator
from tests.conftest import DEMO_CONFIG, TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "5a" * 20
PHASE_WAIT_S = 60.0  # bound on waiting for the child to reach the phase
EXIT_WAIT_S = 60.0  # bound on the child's cleanup and exit after the signal
SLOW_S = 6.0  # how long the simulator makes the phase under test last

# The phase to interrupt, the simulator overrides that make it last, the stream length.
PHASES = {
    "prepare": ({"http_delay_s": SLOW_S}, 2.0),
    "connect": ({"connect_s": SLOW_S}, 2.0),
    "load": ({"load_s": SLOW_S}, 2.0),
    "start": ({"first_frame_s": SLOW_S}, 2.0),
    "stream": ({}, 60.0),
    "cleanup": ({}, 2.0),
}

HARNESS_SCRIPT = """
import asyncio, sys
from analytics.lake import Lake
from config.settings import load_settings
from tasks.session.lifecycle import run_session
from tasks.session.progress import listen
from tasks.session.target import RunTarget

config, scope_url, data_dir, scenario, orchestrator, duration_s, driver = sys.argv[1:8]
settings = load_settings(config)
# A headless session never uses the cloud (Scope 0.2.4): it runs on a local, unconnected Scope.
cloud = settings.cloud.model_copy(update={"enabled": driver == "webrtc"})
settings = settings.model_copy(update={"media_driver": driver, "cloud": cloud})

def say(event):
    if event.kind in ("phase", "tick"):
        print(event.kind, event.phase or event.t_s, flush=True)

with listen(say):
    asyncio.run(run_session(
        settings=settings, scenario=settings.scenario(scenario), lake=Lake(data_dir),
        duration_s=float(duration_s), target=RunTarget(scope_url=scope_url, orchestrator=orchestrator),
    ))
"""


def _start_harness(sim_url: str, data_dir: Path, duration_s: float, driver: str) -> subprocess.Popen:
    env = {**os.environ, "SCOPE_CLOUD_API_KEY": TEST_API_KEY, "LOADTEST_DATA_DIR": str(data_dir)}
    args = [str(DEMO_CONFIG), sim_url, str(data_dir), SCENARIO, ORCHESTRATOR, str(duration_s), driver]
    return subprocess.Popen([sys.executable, "-c", HARNESS_SCRIPT, *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(child: subprocess.Popen, line_prefix: str) -> None:
    """Read the child's progress lines until one starts with `line_prefix` (bounded)."""
    deadline = time.monotonic() + PHASE_WAIT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            _, stderr = child.communicate(timeout=EXIT_WAIT_S)
            pytest.fail(f"harness exited before '{line_prefix}' (seen {seen}): {stderr[-2000:]}")
        seen.append(line.strip())
        if line.startswith(line_prefix):
            return
    pytest.fail(f"no '{line_prefix}' within {PHASE_WAIT_S:.0f} s (seen {seen[-10:]})")


def _final_row(data_dir: Path) -> dict:
    rows = Lake(data_dir).query("select * from run_states where state = 'final'").dicts()
    assert len(rows) == 1, f"expected one final row, got {len(rows)}"
    return rows[0]


def _interrupt(sim, data_dir: Path, phase: str, signum: int, driver: str) -> tuple[dict, str]:
    overrides, duration_s = PHASES[phase]
    sim.set_profile("healthy", {} if phase == "cleanup" else overrides)
    child = _start_harness(sim.url, data_dir, duration_s, driver)
    try:
        if phase == "stream":
            _wait_for(child, "tick")
        elif phase == "cleanup":
            _wait_for(child, "phase stream")
            sim.set_profile("healthy", {"http_delay_s": SLOW_S})  # the session's end and the disconnect answer slowly
            _wait_for(child, "phase cleanup")
        else:
            _wait_for(child, f"phase {phase}")
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=EXIT_WAIT_S)
    finally:
        child.kill()
        child.communicate()
    return _final_row(data_dir), stderr


def _left_running(sim) -> list[str]:
    """What the interrupted run left on the instance (nothing, when cleanup did its work)."""
    sim.set_profile("healthy", {})
    truth, left = sim.truth(), []
    if truth["active_session"]:
        left.append("a headless session")
    if truth["live_webrtc_sessions"]:
        left.append(f"{truth['live_webrtc_sessions']} WebRTC session(s)")
    status = httpx.get(f"{sim.url}/api/v1/cloud/status", timeout=10).json()
    if status["connected"] or status["connecting"]:
        left.append("the cloud connection")
    return left


# (driver, phase, signal): every phase through the relay; the headless session once mid-stream.
CASES = [("webrtc", phase, signum) for phase in PHASES for signum in (signal.SIGTERM, signal.SIGINT)]
CASES += [("headless", "stream", signal.SIGTERM)]
IDS = [f"{driver}-{phase}-{signal.Signals(signum).name}" for driver, phase, signum in CASES]
CONCURRENT_CASES = 6


@pytest.fixture(scope="module")
async def interrupted(tmp_path_factory):
    """Every case once, a few at a time, each with its own simulator and harness process."""
    gate = asyncio.Semaphore(CONCURRENT_CASES)

    def one(driver: str, phase: str, signum: int, folder: Path):
        with running_simulator("healthy") as sim:
            row, stderr = _interrupt(sim, folder / "data", phase, signum, driver)
            return row, stderr, _left_running(sim)

    async def limited(case, case_id):
        async with gate:
            return await asyncio.to_thread(one, *case, tmp_path_factory.mktemp(case_id))

    results = await asyncio.gather(*(limited(case, case_id) for case, case_id in zip(CASES, IDS, strict=True)))
    return dict(zip(IDS, results, strict=True))


@pytest.mark.parametrize("case", IDS)
def test_a_signal_in_any_phase_lands_aborted_and_leaves_nothing_running(case, interrupted):
    driver, phase, signum = CASES[IDS.index(case)]
    row, stderr, left = interrupted[case]
    name = signal.Signals(signum).name
    assert left == [], f"left running: {left}"
    assert row["outcome"] == "aborted", json.dumps(row, default=str)
    assert row["failure_category"] == "harness"
    assert row["failure_phase"] == phase
    assert row["interrupted_by"] == name and name in row["failure_reason"]
    assert "cleanup ran" in row["failure_reason"]
    assert row["media_driver"] == driver
