"""Dispatch across two real workers: each run executes on the worker of its instance's queue, one lake.

The one lake is an object store: an S3-compatible server on loopback (moto in server mode; no
real S3-compatible server installs from the registries here), `LOADTEST_DATA_DIR=s3://...` for
the dispatcher, both workers and `loadtest sql`. A real process work pool with two queues, two `prefect worker start --pool P --work-queue Q`
subprocesses and an in-process simulator fleet of three instances on two orchestrators: the
first orchestrator is reachable through an instance on each queue, so its one-run-at-a-time limit
has to hold across the two workers. Then one worker is SIGKILLed with its run: the run ends
`aborted` through the sweeper, the other worker's runs pass, and a run on the dead holder's
orchestrator takes the slot once its lease ran out. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client

from analytics.lake import Lake
from config.settings import load_settings
from deployments.setup import WORK_POOL_NAME, run_setup
from simulator.testing import FleetHandle, running_fleet
from tasks.fleet.planner import Assignment
from tasks.fleet.roster import Orchestrator
from tasks.fleet.submission import submit
from tests.conftest import DEMO_CONFIG, ROOT, TEST_API_KEY
from tests.integration.prefect_server import REPOSSESSOR_LOOP_S, PrefectServer, stop_process_group
from tests.integration.s3_server import running_s3_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

QUEUES = ("host-a", "host-b", "host-b")  # instance i's queue: sim-0 and sim-2 share orchestrator 0
SLOT_LEASE_S = 60  # the shortest lease Prefect's server accepts
CLI_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 150.0
RUN_TIMEOUT_S = 60.0
KILLED_DURATION_S = 15.0
SHORT_DURATION_S = 6.0


def run_cli(server: PrefectServer, *args: str, **env: str) -> str:
    """`python -m <args>` from the repository root against the server; its output, or a failure showing it."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=server.client_env(**env),
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert result.returncode == 0, f"{' '.join(args[:3])} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    """Poll `probe` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout_s:.0f} s")


def write_config(folder: Path, fleet: FleetHandle, *, queues: tuple[str, ...], name: str = "workers.yaml",
                 **dispatch: float) -> str:
    """The demo config with the fleet's instances on these queues, its orchestrators static, 6 s scenarios."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["prompts_dir"], raw["graphs_dir"] = str(ROOT / "config" / "prompts"), str(ROOT / "config" / "graphs")
    raw["instances"] = [{"name": f"sim-{i}", "kind": "static", "url": inst.url, "work_queue": queue,
                         "orchestrator": inst.orchestrator_address}
                        for i, (inst, queue) in enumerate(zip(fleet.instances, queues, strict=True))]
    raw["discovery"]["orchestrators"] = [{"address": o["address"], "uri": o["orch_uri"], "region": o["region"]}
                                         for o in fleet.orchestrators]
    raw["scenarios"] = [{"pipeline": "longlive", "modes": ["t2v"], "durations": [0.1], "prompts_pool": "nature"}]
    raw["dispatch"] |= {"slot_lease_s": SLOT_LEASE_S, "start_allowance_s": 120} | dispatch
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def process_tree(root: int) -> list[int]:
    """`root` and every process descending from it (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def kill_machine(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and every flow run process under it, as if its machine died."""
    for pid in process_tree(worker.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    worker.wait(timeout=10)


def start_worker(server: PrefectServer, queue: str, folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """`prefect worker start --pool scope-loadtest --work-queue <queue>` named after its queue, output to a file."""
    log = folder / f"worker-{queue}.log"
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL_NAME, "--work-queue", queue,
               "--name", f"worker-{queue}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=server.client_env(**env), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def worker_names(server: PrefectServer) -> set[str]:
    """The workers the pool has heard from."""
    return {w["name"] for w in server.post(f"/work_pools/{WORK_POOL_NAME}/workers/filter", {}).json()}


@pytest.fixture(scope="module")
def stack(prefect_server: PrefectServer, prefect_api, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The fleet, the pool with its two queues, the run-assignment deployment and one worker per queue."""
    folder = tmp_path_factory.mktemp("workers")
    with running_s3_server() as s3, s3.bucket() as data, running_fleet(instances=3, orchestrators=2) as fleet:
        config = write_config(folder, fleet, queues=QUEUES)
        env = {"LOADTEST_CONFIG": config, "LOADTEST_DATA_DIR": data, "SCOPE_CLOUD_API_KEY": TEST_API_KEY,
               "PREFECT_WORKER_QUERY_SECONDS": "1", "LOADTEST_LOCAL_DIR": str(folder / "local"), **s3.env()}
        asyncio.run(run_setup(load_settings(config), Lake(data)))  # the pool and the limits, as `loadtest setup`
        for queue in sorted(set(QUEUES)):
            assert prefect_server.post(f"/work_pools/{WORK_POOL_NAME}/queues", {"name": queue}).status_code in (201, 409)
        workers = {queue: start_worker(prefect_server, queue, folder, env) for queue in sorted(set(QUEUES))}
        try:  # the workers start while the deployment is created
            run_cli(prefect_server, "prefect", "--no-prompt", "deploy", "--name", "run-assignment/dispatched")
            wait_for("workers", lambda: {f"worker-{q}" for q in workers} <= worker_names(prefect_server),
                     READY_TIMEOUT_S)
            yield {"server": prefect_server, "fleet": fleet, "config": config, "data": data, "folder": folder,
                   "workers": workers, "s3_env": s3.env()}
        finally:
            for process, _ in workers.values():
                stop_process_group(process)


def deployment_runs(server: PrefectServer, since: dt.datetime) -> list[dict]:
    """The run-assignment flow runs created since `since`."""
    deployment = server.get("/deployments/name/run-assignment/dispatched")
    body = {"deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"expected_start_time": {"after_": since.isoformat()}}}
    response = server.post("/flow_runs/filter", body)
    response.raise_for_status()
    return response.json()


def runs_of(data: str, since: dt.datetime) -> list[dict]:
    """The lake's runs that started since `since`."""
    return Lake(data).query_frame("SELECT * FROM runs WHERE started_at >= ? ORDER BY started_at", [since]).to_dicts()


async def test_each_run_executes_on_the_worker_of_its_instances_queue(stack, monkeypatch):
    from flows.dispatch import dispatch

    monkeypatch.setenv("LOADTEST_DATA_DIR", stack["data"])
    monkeypatch.setenv("SCOPE_CLOUD_API_KEY", TEST_API_KEY)
    since = dt.datetime.now(dt.timezone.utc)
    summary = await dispatch(config=stack["config"], max_runs=4, window_s=ROUND_TIMEOUT_S)

    assert (summary["launched"], summary["errors"], summary["outcomes"]) == (4, [], {"passed": 4}), summary
    flow_runs = deployment_runs(stack["server"], since)
    assert len(flow_runs) == 4 and {r["state"]["type"] for r in flow_runs} == {"COMPLETED"}
    logs = {queue: log.read_text(errors="replace") for queue, (_, log) in stack["workers"].items()}
    for flow_run in flow_runs:
        queue = QUEUES[int(flow_run["parameters"]["instance"].removeprefix("sim-"))]
        assert flow_run["work_queue_name"] == queue
        served_by = {q for q, text in logs.items() if flow_run["id"] in text}
        assert served_by == {queue}, (flow_run["name"], served_by)
    runs = runs_of(stack["data"], since)
    assert len(runs) == 4 and {r["outcome"] for r in runs} == {"passed"}
    assert len({r["orchestrator"] for r in runs}) == 2
    for orchestrator in {r["orchestrator"] for r in runs}:
        mine = [r for r in runs if r["orchestrator"] == orchestrator]
        for earlier, later in zip(mine, mine[1:]):
            assert earlier["ended_at"] <= later["started_at"], f"two runs at once on {orchestrator}"
    answer = run_cli(stack["server"], "deployments.cli", "sql", "SELECT run_id, outcome FROM runs", "--json",
                     LOADTEST_DATA_DIR=stack["data"], **stack["s3_env"])
    assert {r["run_id"] for r in runs} <= {row["run_id"] for row in json.loads(answer)}


async def test_a_run_no_worker_serves_is_cancelled_and_reported(stack, monkeypatch, tmp_path):
    from flows.dispatch import dispatch

    config = write_config(tmp_path, stack["fleet"], queues=("nobody-a", "nobody-b", "nobody-b"), start_allowance_s=2)
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCOPE_CLOUD_API_KEY", TEST_API_KEY)
    since = dt.datetime.now(dt.timezone.utc)
    summary = await dispatch(config=config, max_runs=1, window_s=30)

    assert summary["launched"] == 1 and summary["outcomes"] == {}
    (error,) = summary["errors"]
    assert "no worker of queue 'nobody-" in error
    (flow_run,) = deployment_runs(stack["server"], since)
    assert flow_run["state"]["type"] == "CANCELLED"


def assignment(stack: dict, instance: int, duration_s: float) -> tuple[Assignment, Orchestrator]:
    """An assignment of the config's scenario through `sim-<instance>` to the orchestrator it is pinned to."""
    sim = stack["fleet"].instances[instance]
    entry = next(o for o in stack["fleet"].orchestrators if o["address"] == sim.orchestrator_address)
    return (Assignment(orchestrator=sim.orchestrator_address, scenario="longlive_t2v_6s", instance=f"sim-{instance}",
                       duration_s=duration_s, reason="test"),
            Orchestrator(address=entry["address"], uri=entry["orch_uri"], region=entry["region"],
                         first_seen=dt.datetime.now(dt.timezone.utc)))


async def send(stack: dict, instance: int, duration_s: float) -> str:
    """Submit one run through `sim-<instance>` to its queue, as dispatch does; its flow run id."""
    planned, orchestrator = assignment(stack, instance, duration_s)
    async with get_client() as client:
        flow_run = await submit(client, planned, orchestrator, work_queue=QUEUES[instance], config=stack["config"])
    return str(flow_run.id)


def final_flow_run(server: PrefectServer, flow_run_id: str) -> dict | None:
    """The flow run once final, else None."""
    run = server.get(f"/flow_runs/{flow_run_id}")
    return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


async def test_a_killed_worker_s_run_is_swept_aborted_and_its_orchestrator_freed(stack):
    server, data = stack["server"], stack["data"]
    since = dt.datetime.now(dt.timezone.utc)
    doomed = await send(stack, 0, KILLED_DURATION_S)  # orchestrator 0 through host-a
    bystander = await send(stack, 1, KILLED_DURATION_S)  # orchestrator 1 through host-b
    started = wait_for("the doomed run's started row",
                       lambda: [r for r in runs_of(data, since) if r["scope_instance"] == "sim-0"], RUN_TIMEOUT_S)[0]
    worker_a, _ = stack["workers"]["host-a"]
    kill_machine(worker_a)
    killed_at = dt.datetime.now(dt.timezone.utc)
    successor = await send(stack, 2, SHORT_DURATION_S)  # orchestrator 0 again, through host-b: waits for the slot

    other = wait_for("the bystander's end", lambda: final_flow_run(server, bystander), RUN_TIMEOUT_S)
    assert other["state"]["type"] == "COMPLETED", other["state"]
    assert server.get(f"/flow_runs/{doomed}")["state"]["type"] == "RUNNING"  # nobody is left to end it
    assert Lake(data).sweep_orphans(now=started["started_at"] + dt.timedelta(seconds=started["hard_cap_s"] + 1)) == [
        started["run_id"]]
    lease_ends_s = SLOT_LEASE_S + REPOSSESSOR_LOOP_S
    after = wait_for("the successor's end", lambda: final_flow_run(server, successor), lease_ends_s + RUN_TIMEOUT_S)
    assert after["state"]["type"] == "COMPLETED", after["state"]
    rows = {r["scope_instance"]: r for r in runs_of(data, since)}
    assert (rows["sim-0"]["outcome"], rows["sim-1"]["outcome"], rows["sim-2"]["outcome"]) == (
        "aborted", "passed", "passed")
    # the successor ran only once the dead holder's lease on orchestrator 0 had run out
    assert rows["sim-2"]["started_at"] >= started["started_at"] + dt.timedelta(seconds=SLOT_LEASE_S - 15)
    assert rows["sim-2"]["started_at"] > killed_at
