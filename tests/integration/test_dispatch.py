"""Dispatch against a real `simulator fleet` process: concurrent runs, right attribution, managed instances."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from analytics.lake import Lake
from tests.conftest import DEMO_CONFIG, ROOT, TEST_API_KEY
from tests.integration.fleet_process import fleet_process

pytestmark = pytest.mark.integration
FLEET_PROFILES = ["healthy", "healthy", "healthy", "black"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """`python -m simulator fleet` as a real process: 3 instances, 4 orchestrators (the 4th shows black frames)."""
    with fleet_process(tmp_path_factory.mktemp("fleet"), instances=3, orchestrators=4, profiles=FLEET_PROFILES,
                       settings=["fault_after_s=1.0"]) as running:
        yield running


def _config(folder: Path, *, instances: list[dict], orchestrators: list[dict]) -> str:
    """The demo config with these instances and static orchestrators, written beside the test's lake."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["prompts_dir"] = str(ROOT / "config" / "prompts")
    raw["graphs_dir"] = str(ROOT / "config" / "graphs")
    raw["instances"] = instances
    raw["discovery"]["orchestrators"] = orchestrators
    # one short scenario family keeps the test quick; the planner still rotates within it
    raw["scenarios"] = [{"pipeline": "longlive", "modes": ["t2v", "v2v"], "durations": [0.1], "prompts_pool": "nature"}]
    path = folder / "dispatch.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _orchestrator_entry(entry: dict) -> dict:
    return {"address": entry["address"], "uri": entry["orch_uri"], "region": entry["region"]}


async def _dispatch(config: str, data_dir: Path, monkeypatch, max_runs: int) -> dict:
    from flows.dispatch import dispatch

    monkeypatch.setenv("LOADTEST_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SCOPE_CLOUD_API_KEY", TEST_API_KEY)
    return await dispatch(config=config, max_runs=max_runs, window_s=120)


async def test_dispatch_runs_concurrently_and_attributes_each_run(fleet, prefect_api, tmp_path, monkeypatch):
    fleet_file, description = fleet
    instances = [
        {"name": f"sim-{i}", "kind": "static", "url": inst["url"], "orchestrator": inst["orchestrator_address"]}
        for i, inst in enumerate(description["instances"])
    ]
    pinned = [description["orchestrators"][inst["orchestrator_url"]] for inst in description["instances"]]
    config = _config(tmp_path, instances=instances, orchestrators=[_orchestrator_entry(o) for o in pinned])

    summary = await _dispatch(config, tmp_path / "data", monkeypatch, max_runs=3)

    assert summary["launched"] == 3 and summary["errors"] == []
    runs = Lake(tmp_path / "data").query_frame("select * from runs").to_dicts()
    assert len(runs) == 3 and {r["outcome"] for r in runs} == {"passed"}
    assert max(r["started_at"] for r in runs) < min(r["ended_at"] for r in runs), "the three runs did not overlap"
    url_of = {i["name"]: i["url"] for i in instances}
    for run in runs:
        truth = httpx.get(f"{url_of[run['scope_instance']]}/_sim/truth", timeout=5).json()
        assert truth["orchestrator_address"].lower() == run["orchestrator"].lower()
        assert truth["webrtc_sessions"] and truth["live_webrtc_sessions"] == 0  # relayed, and ended


def _live_processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_dispatch_starts_and_stops_managed_instances_pinned_to_orchestrators(
    fleet, prefect_api, tmp_path, monkeypatch
):
    fleet_file, description = fleet
    orchestrators = list(description["orchestrators"].values())
    healthy, black = orchestrators[1], orchestrators[3]
    assets = tmp_path / "managed-assets"
    command = f"{sys.executable} -m simulator serve --port {{port}} --assets-dir {assets}"
    instances = [{"name": f"managed-{i}", "kind": "managed", "command": command, "startup_timeout_s": 30}
                 for i in range(2)]
    config = _config(tmp_path, instances=instances, orchestrators=[_orchestrator_entry(healthy), _orchestrator_entry(black)])
    monkeypatch.setenv("SCOPE_SIM_FLEET_FILE", str(fleet_file))

    summary = await _dispatch(config, tmp_path / "data", monkeypatch, max_runs=2)

    assert summary["launched"] == 2 and summary["errors"] == []
    outcomes = {r["orchestrator"]: (r["outcome"], r["checks_failed"]) for r in
                Lake(tmp_path / "data").query_frame("select * from runs").to_dicts()}
    # the pinned orchestrator's behaviour shows through: the black one fails on black frames
    assert outcomes[healthy["address"]][0] == "passed"
    assert outcomes[black["address"]][0] == "failed" and "black" in outcomes[black["address"]][1]
    assert _live_processes_mentioning(str(assets)) == []
    assert os.listdir(tmp_path / "data" / "instances")  # each managed server's output was kept


async def test_a_managed_instance_that_cannot_start_lands_its_failure_and_backs_off(prefect_api, tmp_path, monkeypatch):
    orchestrators = [{"address": f"0xDEAD{i}", "uri": f"https://dead{i}.test:8935", "region": "eu"} for i in range(3)]
    command = f"{sys.executable} -c \"import sys; print('Error: no CUDA device'); sys.exit(1)\" {{port}}"
    instances = [{"name": "broken", "kind": "managed", "command": command, "startup_timeout_s": 20}]
    config = _config(tmp_path, instances=instances, orchestrators=orchestrators)
    data = tmp_path / "data"

    summary = await _dispatch(config, data, monkeypatch, max_runs=20)  # the storm used to launch all 20 at once

    assert (summary["launched"], summary["errors"], summary["outcomes"]) == (1, [], {"aborted": 1})
    (run,) = Lake(data).query_frame("select * from runs").to_dicts()
    assert (run["outcome"], run["failure_category"], run["failure_phase"], run["scope_instance"]) == (
        "aborted", "harness", "prepare", "broken")
    assert "exited with code 1" in run["failure_reason"] and "Error: no CUDA device" in run["failure_reason"]
    assert run["orchestrator"] == run["orchestrator"].lower() and run["orchestrator_uri"].startswith("https://dead")
    assert [p.name for p in (data / "instances").iterdir()] == ["broken.log"]
    # the instance backs off (10 s, doubling): dispatching again at once launches nothing
    again = await _dispatch(config, data, monkeypatch, max_runs=20)
    assert again["launched"] == 0
    assert len(Lake(data).query_frame("select * from runs")) == 1
