"""The `run-scenario` Prefect flow against simulated Scope instances, on the temporary Prefect API
of tests/integration/conftest.py (`prefect_api`, shared by every test that runs flows).

One passing run (healthy instance) and one failing run (output turns black) go through the
real flow: a task per lifecycle phase, a markdown artifact with the verdict, the summary
returned and the run landed in the lake with its flow run id.
"""

from __future__ import annotations

import asyncio
import os
import re
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactSort, TaskRunSort

from analytics.lake import Lake
from flows.run_scenario import run_scenario
from simulator.testing import running_simulator
from tasks.session.report import run_summary_of
from tests.conftest import DEMO_CONFIG, TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "ab" * 20
DURATION_S = 4.0
PHASES = ("prepare", "connect", "load", "start", "stream", "cleanup", "finish")


async def _flow(profile: str, overrides: dict | None) -> dict:
    with running_simulator(profile, overrides=overrides) as sim:
        state = await run_scenario(
            scenario=SCENARIO, scope_url=sim.url, orchestrator=ORCHESTRATOR, duration_s=DURATION_S,
            config=str(DEMO_CONFIG), return_state=True,
        )
        return {"summary": await run_summary_of(state), "state": state, "scope_url": sim.url, "truth": sim.truth()}


@pytest.fixture(scope="module")
async def flow_results(prefect_api, tmp_path_factory):
    """A passing and a failing flow run, at the same time, landing in one temporary lake."""
    data_dir = tmp_path_factory.mktemp("flow") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOADTEST_DATA_DIR", str(data_dir))
        env.setenv("SCOPE_CLOUD_API_KEY", TEST_API_KEY)
        passed, failed, unavailable = await asyncio.gather(
            _flow("healthy", None),
            _flow("black", {"fault_after_s": 1.5}),
            _flow("no_capacity", None),
        )
    lake = Lake(data_dir)
    runs = {r["run_id"]: r for r in lake.query("SELECT * FROM runs").dicts()}
    for result in (passed, failed, unavailable):
        result["run"] = runs[result["summary"]["run_id"]]
    return {"passed": passed, "failed": failed, "unavailable": unavailable, "runs": runs}


def test_a_healthy_run_passes_with_attribution(flow_results):
    result = flow_results["passed"]
    summary = result["summary"]
    assert summary["outcome"] == "passed", summary["failure_reason"]
    assert summary["scenario"] == SCENARIO
    assert summary["orchestrator"] == ORCHESTRATOR
    assert summary["scope_instance"] == result["scope_url"]
    assert summary["failure_category"] is None and summary["checks_failed"] == []
    assert summary["first_frame_s"] > 0 and summary["frames_sampled"] > 0
    assert result["truth"]["live_webrtc_sessions"] == 0 and result["truth"]["leaked_sessions"] == 0
    assert summary["media_driver"] == "webrtc" and summary["media_path"] == "relay"


def test_a_black_output_fails_in_validation(flow_results):
    summary = flow_results["failed"]["summary"]
    assert summary["outcome"] == "failed"
    assert summary["failure_category"] == "validation"
    assert summary["failure_phase"] == "stream"
    assert summary["checks_failed"][0] == "black"
    assert summary["artifacts_path"] and os.path.isdir(summary["artifacts_path"])


def test_both_runs_landed_with_their_flow_run_ids(flow_results):
    runs = flow_results["runs"]
    assert len(runs) == 3
    for key in ("passed", "failed"):
        run = flow_results[key]["run"]
        assert run["state"] == "final" and run["outcome"] == flow_results[key]["summary"]["outcome"]
        assert UUID(run["prefect_flow_run_id"])
    assert flow_results["passed"]["run"]["prefect_flow_run_id"] != flow_results["failed"]["run"]["prefect_flow_run_id"]


@pytest.mark.parametrize("key", ["passed", "failed", "unavailable"])
async def test_the_flow_run_is_named_after_scenario_and_orchestrator(flow_results, key):
    flow_run_id = UUID(flow_results[key]["run"]["prefect_flow_run_id"])
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
    assert flow_run.name == f"{SCENARIO} @ {ORCHESTRATOR[:8]}…"
    assert re.fullmatch(r"\S+ @ 0x[0-9a-f]{6}…", flow_run.name)


async def test_the_prefect_ui_shows_each_verdict_as_the_flow_runs_state(flow_results):
    """A failed run is Failed with its reason, unavailable is a named Completed: the run history is the UI's."""
    states = {}
    async with get_client() as client:
        for key in ("passed", "failed", "unavailable"):
            flow_run = await client.read_flow_run(UUID(flow_results[key]["run"]["prefect_flow_run_id"]))
            states[key] = flow_run.state
    assert states["passed"].is_completed() and states["passed"].name == "Completed"
    assert states["failed"].is_failed()
    assert flow_results["failed"]["summary"]["failure_reason"] in states["failed"].message
    assert states["unavailable"].is_completed() and states["unavailable"].name == "Unavailable"


@pytest.mark.parametrize("key", ["passed", "failed"])
async def test_a_markdown_artifact_states_the_verdict(flow_results, key):
    summary = flow_results[key]["summary"]
    flow_run_id = UUID(flow_results[key]["run"]["prefect_flow_run_id"])
    async with get_client() as client:
        # Prefect 3.8.8's client sends null for every argument left out, which its server refuses.
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(),
            sort=ArtifactSort.CREATED_DESC,
            limit=10,
        )
    markdown = [a for a in artifacts if a.type == "markdown"]
    assert len(markdown) == 1
    text = str(markdown[0].data)
    assert f"**{summary['outcome'].upper()}**" in text
    assert summary["run_id"] in text and ORCHESTRATOR in text
    if summary["outcome"] != "passed":
        assert summary["failure_reason"] in text and "black" in text
    assert TEST_API_KEY not in text


@pytest.mark.parametrize("key", ["passed", "failed"])
async def test_every_phase_ran_as_a_task(flow_results, key):
    flow_run_id = UUID(flow_results[key]["run"]["prefect_flow_run_id"])
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,  # Prefect 3.8.8's server refuses the client's null default
            limit=50,
        )
    ordered = [run.name.rsplit("-", 1)[0] for run in sorted(task_runs, key=lambda run: run.start_time)]
    names = set(ordered)
    assert [name for name in ordered if name in PHASES] == list(PHASES)  # each once, in lifecycle order
    assert {"sweep-orphans", "publish-run-artifact"} <= names
    assert all(run.state is not None and run.state.is_completed() for run in task_runs)
