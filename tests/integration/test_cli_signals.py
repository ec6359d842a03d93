"""SIGINT and SIGTERM delivered to real `loadtest run` and `loadtest schedule` processes mid-run.

What must hold: exit 130, one `stopped <run_id> <scenario> @ <orchestrator>: aborted` line per
run in flight, no traceback, every run's final row landed `aborted`, and the Scope side clean:
no session left running, no cloud connection left up. The commands run against the session's
shared Prefect server; every wait is for a condition, bounded.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from analytics.lake import Lake
from simulator.testing import running_simulator
from tests.conftest import DEMO_CONFIG, ROOT, TEST_API_KEY
from tests.integration.fleet_process import fleet_process
from tests.integration.prefect_server import PrefectServer, stop_process_group
from tests.integration.test_cli import loadtest_command

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "5a" * 20
REACH_STREAM_S = 120.0  # from process start to streaming, with the other core busy
EXIT_S = 120.0  # cleanup_timeout_s (demo: 10 s) + the command's margins, with room
STOPPED = "stopped "


def wait_for(what: str, condition: Callable[[], object], timeout_s: float, process: subprocess.Popen) -> object:
    """Poll `condition` until it is truthy; fail if the time is up or the process ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the command exited ({process.returncode}) before {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not {what} within {timeout_s:.0f} s")


def start(args: list[str], server: PrefectServer, folder: Path) -> subprocess.Popen:
    """`loadtest <args>` in its own process group, output into files the test reads while it runs."""
    env = server.client_env(LOADTEST_DATA_DIR=str(folder / "data"), SCOPE_CLOUD_API_KEY=TEST_API_KEY)
    with (folder / "stdout").open("w") as stdout, (folder / "stderr").open("w") as stderr:
        return subprocess.Popen([*loadtest_command(), *args], cwd=ROOT, env=env, start_new_session=True,
                                stdout=stdout, stderr=stderr)


def interrupt(process: subprocess.Popen, signum: int, folder: Path) -> tuple[int, str, str]:
    """Deliver `signum` to the command alone; its exit code, stdout and stderr once it ended."""
    process.send_signal(signum)
    try:
        code = process.wait(timeout=EXIT_S)
    finally:
        stop_process_group(process)  # only if it outlived the bound
    return code, (folder / "stdout").read_text(), (folder / "stderr").read_text()


def scope_is_clean(url: str) -> None:
    """No session running or leaked and no cloud connection up on the Scope instance at `url`."""
    truth = httpx.get(f"{url}/_sim/truth", timeout=5).json()
    assert truth["active_session"] is False and truth.get("live_webrtc_sessions", 0) == 0, truth
    assert truth["leaked_sessions"] == 0, truth
    assert httpx.get(f"{url}/api/v1/cloud/status", timeout=5).json()["connected"] is False


def final_outcomes(folder: Path) -> dict[str, str | None]:
    return {row["run_id"]: row["outcome"] for row in Lake(folder / "data").query_frame("select * from runs").to_dicts()}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_stream_stops_loadtest_run_with_one_line_after_cleanup(prefect_server, tmp_path, signum):
    with running_simulator("healthy") as sim:
        command = start(["run", "--scenario", SCENARIO, "--scope-url", sim.url, "--orchestrator", ORCHESTRATOR,
                         "--config", str(DEMO_CONFIG)], prefect_server, tmp_path)
        wait_for("streaming", lambda: " stream: t=" in (tmp_path / "stderr").read_text(), REACH_STREAM_S, command)
        code, stdout, stderr = interrupt(command, signum, tmp_path)
        assert code == 130, stderr[-3000:]
        assert "Traceback" not in stdout + stderr, stderr[-3000:]
        stopped = [line for line in stderr.splitlines() if line.startswith(STOPPED)]
        assert len(stopped) == 1 and stopped[0].endswith(f"{SCENARIO} @ {ORCHESTRATOR}: aborted"), stderr[-3000:]
        run_id = stopped[0].split()[1]
        assert final_outcomes(tmp_path) == {run_id: "aborted"}
        scope_is_clean(sim.url)


def schedule_config(folder: Path, description: dict) -> str:
    """The demo config pointed at the fleet: one static instance per orchestrator, minute-long runs."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["prompts_dir"] = str(ROOT / "config" / "prompts")
    raw["graphs_dir"] = str(ROOT / "config" / "graphs")
    raw["instances"] = [
        {"name": f"signal-{index}", "kind": "static", "url": inst["url"], "orchestrator": inst["orchestrator_address"]}
        for index, inst in enumerate(description["instances"])
    ]
    pinned = [description["orchestrators"][inst["orchestrator_url"]] for inst in description["instances"]]
    raw["discovery"]["orchestrators"] = [{"address": o["address"], "uri": o["orch_uri"], "region": o["region"]}
                                         for o in pinned]
    raw["scenarios"] = [{"pipeline": "longlive", "modes": ["t2v"], "durations": [1], "prompts_pool": "nature"}]
    path = folder / "schedule.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def live_sessions(urls: list[str]) -> int:
    """How many of the instances have a session streaming right now."""
    truths = [httpx.get(f"{url}/_sim/truth", timeout=5).json() for url in urls]
    return sum(bool(t["active_session"] or t.get("live_webrtc_sessions")) for t in truths)


def test_sigint_stops_loadtest_schedule_with_every_run_cleaned_up_and_listed(prefect_server, tmp_path):
    """Needs the session lifecycle to land a cancelled run `aborted` after cleanup (issue 9 items 1 and 3)."""
    with fleet_process(tmp_path / "fleet", instances=3, orchestrators=3) as (_fleet_file, description):
        urls = [inst["url"] for inst in description["instances"]]
        config = schedule_config(tmp_path, description)
        command = start(["schedule", "--config", config, "--window-s", "5", "--rounds", "1"], prefect_server, tmp_path)
        wait_for("3 runs streaming", lambda: live_sessions(urls) == 3, REACH_STREAM_S, command)
        code, stdout, stderr = interrupt(command, signal.SIGINT, tmp_path)
        output = stdout + stderr
        assert code == 130, output[-3000:]
        assert "Traceback" not in output and "cannot be started again" not in output, output[-3000:]
        stopped = [line for line in stdout.splitlines() if line.startswith(STOPPED)]
        assert len(stopped) == 3 and all(line.endswith(": aborted") for line in stopped), output[-3000:]
        outcomes = final_outcomes(tmp_path)
        assert outcomes == {line.split()[1]: "aborted" for line in stopped}  # every run landed its final row
        for url in urls:
            scope_is_clean(url)
