"""The deployment layer against a real `prefect server start`: setup, `prefect deploy --all`, a worker, serve.

The worker path is the operator's: `loadtest setup`, `prefect --no-prompt deploy --all` from the
repository root, `prefect deployment run 'run-scenario/adhoc' -p ...` and
`prefect worker start --pool scope-loadtest --run-once`, each a real subprocess; the run lands
in a temporary lake. The one-process path starts `loadtest serve`, runs a scenario through it
without any worker, and stops it with SIGTERM. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings

from analytics.lake import Lake
from config.settings import default_config_path, load_settings
from deployments.serve import DeploymentPlan, deployment_plans, worker_bound_deployments
from deployments.setup import WORK_POOL_NAME, run_setup
from simulator.testing import running_simulator
from tests.conftest import DEMO_CONFIG, ROOT, TEST_API_KEY
from tests.integration.prefect_server import PrefectServer, stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "cd" * 20
DURATION_S = 3
CLI_TIMEOUT_S = 120.0
WORKER_TIMEOUT_S = 180.0
SERVE_READY_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 120.0
SERVE_STOP_TIMEOUT_S = 30.0
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"


def run_cli(server: PrefectServer, *args: str, timeout_s: float = CLI_TIMEOUT_S, **env: str) -> str:
    """`python -m <args>` from the repository root against the server; its output, or a failure showing it."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=server.client_env(**env),
                            capture_output=True, text=True, timeout=timeout_s)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args[:3])} exited {result.returncode}:\n{output[-3000:]}"
    return output


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, *, alive: subprocess.Popen | None = None) -> Any:
    """Poll `probe` until it returns something truthy; fail after `timeout_s` or when `alive` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"process exited with {alive.returncode} while waiting for {what}")
        if value := probe():
            return value
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout_s:.0f} s")


def terminal_flow_run(server: PrefectServer, flow_run_id: str) -> dict | None:
    """The flow run once it reached a terminal state, else None."""
    run = server.get(f"/flow_runs/{flow_run_id}")
    return run if run and run["state"]["type"] in TERMINAL_STATES else None


def landed_run(data_dir: Path, flow_run_id: str) -> dict:
    """The lake's `runs` row of a Prefect flow run."""
    rows = Lake(data_dir).query("SELECT * FROM runs").dicts()
    matching = [row for row in rows if row["prefect_flow_run_id"] == flow_run_id]
    assert len(matching) == 1, rows
    return matching[0]


def scenario_parameters(scope_url: str) -> dict[str, Any]:
    """The ad-hoc run every test triggers."""
    return {"scenario": SCENARIO, "scope_url": scope_url, "orchestrator": ORCHESTRATOR,
            "duration_s": DURATION_S, "config": str(DEMO_CONFIG)}


def interval_s(deployment: dict) -> list[float]:
    """The schedule intervals of a deployment read from the API."""
    return [schedule["schedule"]["interval"] for schedule in deployment["schedules"]]


def planned_interval_s(plan: DeploymentPlan) -> list[float]:
    """What `deployments/serve.py` plans for the same deployment."""
    return [] if plan.interval is None else [plan.interval.total_seconds()]


# ---------------------------------------------------------------- prefect.yaml and deployments/serve.py agree


def test_prefect_yaml_declares_what_serve_serves():
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    plans = deployment_plans(load_settings(default_config_path()))  # prefect.yaml states the default intervals
    assert len(declared) == len(plans) == 7
    for entry, plan in zip(declared, plans, strict=True):
        path, function = entry["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
        assert flow.name == plan.flow_name and (ROOT / path).is_file()
        assert entry["name"] == plan.name
        assert [s["interval"] for s in entry.get("schedules", [])] == planned_interval_s(plan)
        assert entry["parameters"] == plan.parameters
        assert entry["work_pool"]["name"] == WORK_POOL_NAME
        limit = entry.get("concurrency_limit")
        assert (limit or {}).get("limit") == plan.concurrency_limit
        assert ((limit or {}).get("collision_strategy") == "CANCEL_NEW") == plan.cancel_new


def test_setup_and_serve_refuse_to_run_without_a_configured_server(capsys):
    from deployments.cli import EXIT_USAGE
    from deployments.cli_ops import cmd_serve, cmd_setup

    args = argparse.Namespace(config=str(DEMO_CONFIG), json=False, limit=None, replace=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # a temporary server would vanish with them
        assert cmd_setup(args) == EXIT_USAGE
        assert cmd_serve(args) == EXIT_USAGE
    assert capsys.readouterr().err.count("set PREFECT_API_URL") == 2


# ---------------------------------------------------------------- the worker path: setup, deploy, run, worker


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """setup, deploy --all, one ad-hoc run executed by `prefect worker start --run-once`."""
    data_dir = tmp_path_factory.mktemp("worker-lake") / "data"
    setup = run_cli(prefect_server, "deployments.cli", "setup", "--config", str(DEMO_CONFIG))
    run_cli(prefect_server, "prefect", "--no-prompt", "deploy", "--all")
    with running_simulator("healthy") as sim:
        parameters = [arg for key, value in scenario_parameters(sim.url).items() for arg in ("-p", f"{key}={value}")]
        triggered = run_cli(prefect_server, "prefect", "deployment", "run", "run-scenario/adhoc", *parameters)
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered).group(1)
        worker = run_cli(prefect_server, "prefect", "worker", "start", "--pool", WORK_POOL_NAME, "--run-once",
                         timeout_s=WORKER_TIMEOUT_S, PREFECT_WORKER_QUERY_SECONDS="1",
                         LOADTEST_DATA_DIR=str(data_dir), SCOPE_CLOUD_API_KEY=TEST_API_KEY)
    return {"setup": setup, "worker": worker, "flow_run_id": flow_run_id, "data_dir": data_dir, "scope_url": sim.url}


def test_setup_creates_the_process_work_pool_and_the_instance_limits(deployed, prefect_server):
    assert prefect_server.get(f"/work_pools/{WORK_POOL_NAME}")["type"] == "process"
    for instance in load_settings(DEMO_CONFIG).instances:
        assert prefect_server.get(f"/v2/concurrency_limits/instance-{instance.name}")["limit"] == 1
        assert f"created  concurrency-limit instance-{instance.name}" in deployed["setup"]
    assert f"created  work-pool {WORK_POOL_NAME}" in deployed["setup"]


def test_setup_again_adds_orchestrators_found_in_the_lake_and_resets_changed_limits(deployed, prefect_server):
    settings = load_settings(DEMO_CONFIG)
    changed, *kept = [f"instance-{i.name}" for i in settings.instances]
    assert prefect_server.patch(f"/v2/concurrency_limits/{changed}", {"limit": 3}).status_code == 204
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        actions = asyncio.run(run_setup(settings, Lake(deployed["data_dir"])))
    results = {action.name: action.result for action in actions}
    orchestrator_limit = f"orch-{ORCHESTRATOR}"  # the run landed by the worker named it
    assert results == {WORK_POOL_NAME: "exists", changed: "updated", orchestrator_limit: "created"} | {
        name: "exists" for name in kept}
    for name in (changed, orchestrator_limit):
        assert prefect_server.get(f"/v2/concurrency_limits/{name}")["limit"] == 1


def test_deploy_creates_the_four_deployments_on_the_pool_with_their_schedules(deployed, prefect_server):
    for plan in deployment_plans(load_settings(default_config_path())):
        deployment = prefect_server.get(f"/deployments/name/{plan.full_name}")
        assert deployment is not None, plan.full_name
        assert deployment["work_pool_name"] == WORK_POOL_NAME
        assert interval_s(deployment) == planned_interval_s(plan)
        assert all(s["active"] for s in deployment["schedules"]) and not deployment["paused"]
        assert deployment["parameters"] == plan.parameters
        # No clone, no download: the worker runs the code of the checkout the deployment came from.
        assert deployment["pull_steps"] == [{SET_WORKING_DIRECTORY: {"directory": str(ROOT)}}]


def test_dispatch_never_runs_twice_at_once(deployed, prefect_server):
    dispatch = prefect_server.get("/deployments/name/dispatch/scheduled")
    assert dispatch["global_concurrency_limit"]["limit"] == 1
    assert dispatch["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert prefect_server.get("/deployments/name/run-scenario/adhoc")["global_concurrency_limit"] is None


@pytest.mark.parametrize(("parameters", "named"), [
    ({"scenario": SCENARIO, "scope_url": "http://127.0.0.1:9", "duration_s": "soon"}, "duration_s"),
    ({"scope_url": "http://127.0.0.1:9"}, "scenario"),
])
def test_adhoc_parameters_are_typed(deployed, prefect_server, parameters, named):
    adhoc = prefect_server.get("/deployments/name/run-scenario/adhoc")
    response = prefect_server.post(f"/deployments/{adhoc['id']}/create_flow_run", {"parameters": parameters})
    assert response.status_code == 409
    assert named in response.json()["detail"]


def test_a_worker_runs_the_adhoc_deployment_and_the_run_lands(deployed, prefect_server):
    flow_run = prefect_server.get(f"/flow_runs/{deployed['flow_run_id']}")
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    assert flow_run["name"] == f"{SCENARIO} @ {ORCHESTRATOR[:8]}…"
    run = landed_run(deployed["data_dir"], deployed["flow_run_id"])
    assert (run["scenario"], run["outcome"], run["state"]) == (SCENARIO, "passed", "final")
    assert run["orchestrator"] == ORCHESTRATOR and run["scope_instance"] == deployed["scope_url"]
    assert TEST_API_KEY not in deployed["worker"]


def test_serve_will_not_silently_take_over_worker_deployments(deployed, prefect_server, capsys):
    from deployments.cli import EXIT_USAGE
    from deployments.cli_ops import cmd_serve

    plans = deployment_plans(load_settings(DEMO_CONFIG), str(DEMO_CONFIG))
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        bound = asyncio.run(worker_bound_deployments(plans))
        assert sorted(b.full_name for b in bound) == sorted(p.full_name for p in plans)  # else cmd_serve would serve
        assert {b.work_pool_name for b in bound} == {WORK_POOL_NAME}
        exit_code = cmd_serve(argparse.Namespace(config=str(DEMO_CONFIG), limit=None, replace=False))
    assert exit_code == EXIT_USAGE
    assert "--replace" in capsys.readouterr().err


# ---------------------------------------------------------------- the one-process path: loadtest serve


def _served(server: PrefectServer, plans: list[DeploymentPlan]) -> list[dict] | None:
    """The planned deployments once this serve process registered them and polls for their runs."""
    found = [server.get(f"/deployments/name/{plan.full_name}") for plan in plans]
    ready = all(d and d["status"] == "READY" and d["parameters"] == plan.parameters  # this serve's (config path)
                for d, plan in zip(found, plans, strict=True))
    return found if ready else None


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`loadtest serve --replace`, one ad-hoc run through it (no worker), then SIGTERM."""
    data_dir = tmp_path_factory.mktemp("serve-lake") / "data"
    plans = deployment_plans(load_settings(DEMO_CONFIG), str(DEMO_CONFIG))
    env = prefect_server.client_env(PREFECT_RUNNER_POLL_FREQUENCY="1", LOADTEST_DATA_DIR=str(data_dir),
                                    SCOPE_CLOUD_API_KEY=TEST_API_KEY)
    command = [sys.executable, "-m", "deployments.cli", "serve", "--config", str(DEMO_CONFIG), "--replace"]
    with open(data_dir.parent / "serve.log", "w+") as log, running_simulator("healthy") as sim:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deployments = wait_for("served deployments", lambda: _served(prefect_server, plans),
                                   SERVE_READY_TIMEOUT_S, alive=process)
            adhoc = next(d for d in deployments if d["name"] == "adhoc")
            created = prefect_server.post(f"/deployments/{adhoc['id']}/create_flow_run",
                                          {"parameters": scenario_parameters(sim.url)})
            assert created.status_code == 201, created.text
            flow_run = wait_for("finished served run", lambda: terminal_flow_run(prefect_server, created.json()["id"]),
                                RUN_TIMEOUT_S, alive=process)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=SERVE_STOP_TIMEOUT_S)
        finally:
            stop_process_group(process)  # whatever is left of the group this test started
        log.seek(0)
        output = log.read()
    after = {plan.full_name: prefect_server.get(f"/deployments/name/{plan.full_name}") for plan in plans}
    return {"plans": plans, "deployments": deployments, "flow_run": flow_run, "returncode": returncode,
            "after": after, "data_dir": data_dir, "output": output}


def test_serve_registers_every_deployment_with_the_configs_schedules(served):
    for plan, deployment in zip(served["plans"], served["deployments"], strict=True):
        assert deployment["work_pool_name"] is None, plan.full_name
        assert interval_s(deployment) == planned_interval_s(plan)
        assert deployment["parameters"] == plan.parameters
    dispatch = served["deployments"][1]
    assert dispatch["global_concurrency_limit"]["limit"] == 1
    assert dispatch["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"


def test_a_served_deployment_runs_without_a_worker_and_lands(served):
    flow_run = served["flow_run"]
    assert flow_run["state"]["type"] == "COMPLETED", served["output"][-3000:]
    run = landed_run(served["data_dir"], flow_run["id"])
    assert (run["scenario"], run["outcome"], run["orchestrator"]) == (SCENARIO, "passed", ORCHESTRATOR)
    assert TEST_API_KEY not in served["output"]


def test_serve_stops_on_sigterm_and_pauses_its_schedules(served):
    assert served["returncode"] == 0, served["output"][-3000:]
    paused = {name: deployment["paused"] for name, deployment in served["after"].items()}
    assert all(paused.values()), (paused, served["output"][-3000:])
