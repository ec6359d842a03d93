"""A real harness process SIGKILLed mid-stream: the lake stays readable, the run is swept to aborted,
and the next run on the same instance deletes the orphaned WebRTC session (which Scope would keep
~30 s, burning the instance) instead of leaving it running.

The simulator runs in the test process; the harness (tasks.session.lifecycle.run_session) runs in a child.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics.lake import Lake
from simulator.testing import running_simulator
from tasks.session.target import RunTarget
from tasks.session.lifecycle import run_session
from tests.conftest import DEMO_CONFIG, TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "ef" * 20
LONG_DURATION_S = 60.0
SHORT_DURATION_S = 4.0
CHUNK_WAIT_S = 45.0  # bound on waiting for the child to land its first frame chunk

HARNESS_SCRIPT = """
import asyncio, sys
from analytics.lake import Lake
from config.settings import load_settings
from tasks.session.target import RunTarget
from tasks.session.lifecycle import run_session

config, scope_url, data_dir, scenario, orchestrator, duration_s = sys.argv[1:7]
settings = load_settings(config)
asyncio.run(run_session(
    settings=settings, scenario=settings.scenario(scenario), lake=Lake(data_dir), duration_s=float(duration_s),
    target=RunTarget(scope_url=scope_url, orchestrator=orchestrator),
))
"""


def _wait_for_first_chunk(child: subprocess.Popen, lake: Lake) -> list[Path]:
    """Poll the frames table for a landed first chunk, while the child keeps running."""
    deadline = time.monotonic() + CHUNK_WAIT_S
    while time.monotonic() < deadline:
        chunks = sorted(lake.lake_dir.glob("frames/date=*/*-f0001.parquet"))
        if chunks:
            return chunks
        if child.poll() is not None:
            _, stderr = child.communicate()
            pytest.fail(f"harness exited early with {child.returncode}: {stderr[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"no frame chunk landed within {CHUNK_WAIT_S:.0f} s")


def _kill_mid_stream(sim_url: str, data_dir: Path) -> None:
    """Start the harness in a child process and SIGKILL it once frame chunks have landed."""
    env = {**os.environ, "SCOPE_CLOUD_API_KEY": TEST_API_KEY, "LOADTEST_DATA_DIR": str(data_dir)}
    args = [str(DEMO_CONFIG), sim_url, str(data_dir), SCENARIO, ORCHESTRATOR, str(LONG_DURATION_S)]
    child = subprocess.Popen([sys.executable, "-c", HARNESS_SCRIPT, *args], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_first_chunk(child, Lake(data_dir))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
async def crashed(demo_settings, tmp_path_factory):
    """Kill a harness mid-stream, inspect, sweep, then run once more on the same instance."""
    data_dir = tmp_path_factory.mktemp("crash") / "data"
    with running_simulator("healthy", seed=5) as sim:
        _kill_mid_stream(sim.url, data_dir)
        lake = Lake(data_dir)
        truth_after_kill = sim.truth()
        before = lake.query("SELECT * FROM runs").dicts()
        frames = lake.query("SELECT run_id, count(*) AS n, max(seq) AS last_seq FROM frames GROUP BY run_id").dicts()
        run = before[0]
        sweep_at = run["started_at"] + dt.timedelta(seconds=run["hard_cap_s"] + 1.0)
        swept = lake.sweep_orphans(now=sweep_at)
        after = lake.query("SELECT * FROM runs").dicts()
        next_record = await run_session(
            settings=demo_settings, scenario=demo_settings.scenario(SCENARIO), lake=lake,
            target=RunTarget(scope_url=sim.url, orchestrator=ORCHESTRATOR), duration_s=SHORT_DURATION_S,
        )
        truth_after_next = sim.truth()
    return dict(before=before, frames=frames, swept=swept, after=after, next=next_record,
                truth_after_kill=truth_after_kill, truth_after_next=truth_after_next, lake=lake)


def test_the_killed_run_reads_as_running_with_its_frames_queryable(crashed):
    before, frames = crashed["before"], crashed["frames"]
    assert len(before) == 1
    run = before[0]
    assert run["state"] == "started" and run["outcome"] is None  # within its hard cap it is still running
    assert run["scenario"] == SCENARIO and run["orchestrator"] == ORCHESTRATOR
    assert run["planned_duration_s"] == LONG_DURATION_S
    assert [f["run_id"] for f in frames] == [run["run_id"]]
    assert frames[0]["n"] > 0 and frames[0]["last_seq"] == frames[0]["n"] - 1  # whole chunks, from seq 0


def test_the_killed_session_was_still_running_on_the_instance(crashed):
    truth = crashed["truth_after_kill"]
    assert truth["live_webrtc_sessions"] == 1
    assert [s["state"] for s in truth["webrtc_sessions"]] == ["live"]


def test_the_sweep_marks_the_killed_run_aborted(crashed):
    killed_id = crashed["before"][0]["run_id"]
    assert crashed["swept"] == [killed_id]
    after = {r["run_id"]: r for r in crashed["after"]}
    assert after[killed_id]["outcome"] == "aborted"
    assert after[killed_id]["failure_category"] == "harness"
    assert after[killed_id]["frames_sampled"] == crashed["frames"][0]["n"]
    assert crashed["lake"].sweep_orphans(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == []


def test_the_next_run_stops_the_orphaned_session_instead_of_leaking_it(crashed):
    record, truth = crashed["next"], crashed["truth_after_next"]
    assert record.outcome == "passed", record.failure_reason
    orphan, fresh = truth["webrtc_sessions"]
    assert (orphan["state"], orphan["end_reason"]) == ("ended", "deleted")  # the next run's prepare deleted it
    assert orphan["ended_at"] < fresh["started_at"]  # before the new session began
    assert (fresh["state"], fresh["end_reason"]) == ("ended", "deleted")
    assert truth["live_webrtc_sessions"] == 0 and truth["leaked_sessions"] == 0
    runs = {r["run_id"]: r["outcome"] for r in crashed["lake"].query("SELECT run_id, outcome FROM runs").dicts()}
    assert runs == {crashed["before"][0]["run_id"]: "aborted", record.run_id: "passed"}
