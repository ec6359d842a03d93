"""Sending one assignment to the worker of its instance's host, and waiting for its outcome, bounded.

Dispatch creates a run of the `run-assignment/dispatched` deployment in the work queue the
instance names (`instances[].work_queue`); the worker serving that queue carries it out
(assignment.py). Dispatch then polls the run: a run still scheduled after
`dispatch.start_allowance_s` had no worker and is cancelled (RunNotStarted); a run that started
but has no final state after the allowance plus the scenario's hard cap lost its worker: it is
marked Crashed (RunLost) and the lake's sweeper lands it `aborted`. A finished run's summary is
its row in the lake (one lake for every worker), else what its final state says.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from prefect.states import Cancelled, Crashed

from analytics.lake import Lake
from config.settings import Settings
from errors import Category, HarnessError, Phase
from tasks.fleet.planner import Assignment
from tasks.fleet.roster import Orchestrator
from tasks.session.report import summary_of_row

DEPLOYMENT = "run-assignment/dispatched"
POLL_S = 2.0
# The outcome a finished run-assignment state stands for, by (state type, state name).
OUTCOME_OF_STATE = {
    (StateType.COMPLETED, "Completed"): "passed",
    (StateType.COMPLETED, "Unavailable"): "unavailable",
    (StateType.FAILED, "Failed"): "failed",
    (StateType.FAILED, "Aborted"): "aborted",
}


class RunNotStarted(HarnessError):
    """No worker took the submitted run within the start allowance (none serves its queue, or all are down)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, category=Category.HARNESS, phase=Phase.PREPARE)


class RunLost(HarnessError):
    """The run started but never reached a final state in time, or crashed: its worker died or failed it."""


@dataclass(frozen=True)
class Bounds:
    """How long one submitted run may take to start, and then to finish."""

    start_s: float
    finish_s: float
    poll_s: float = POLL_S


def bounds_for(settings: Settings, assignment: Assignment) -> Bounds:
    """The start allowance from config; the finish bound adds the scenario's hard cap at its duration."""
    scenario = settings.scenario(assignment.scenario).with_duration(assignment.duration_s)
    allowance = settings.dispatch.start_allowance_s
    return Bounds(start_s=allowance, finish_s=allowance + scenario.hard_cap_s)


def assignment_parameters(assignment: Assignment, orchestrator: Orchestrator, config: str | None) -> dict:
    """The `run-assignment` flow's parameters for this assignment."""
    return {"scenario": assignment.scenario, "instance": assignment.instance, "orchestrator": orchestrator.address,
            "orchestrator_uri": orchestrator.uri, "region": orchestrator.region,
            "duration_s": assignment.duration_s, "config": config}


async def submit(client: PrefectClient, assignment: Assignment, orchestrator: Orchestrator, *, work_queue: str,
                 config: str | None) -> FlowRun:
    """Create the deployment run in `work_queue`, linked to the calling flow run; return at once."""
    name = f"{assignment.scenario} @ {orchestrator.address[:8]}… via {assignment.instance}"
    return await arun_deployment(DEPLOYMENT, client=client, parameters=assignment_parameters(assignment, orchestrator,
                                config), work_queue_name=work_queue, flow_run_name=name, timeout=0)


async def await_final(client: PrefectClient, flow_run: FlowRun, bounds: Bounds) -> FlowRun:
    """Poll the run until it is final; RunNotStarted (cancelled) or RunLost (marked Crashed) past its bounds."""
    submitted = time.monotonic()
    queue = flow_run.work_queue_name
    while True:
        run = await client.read_flow_run(flow_run.id)
        if run.state is not None and run.state.is_final():
            return run
        waited = time.monotonic() - submitted
        if (run.state is None or run.state.is_scheduled()) and waited >= bounds.start_s:
            message = f"no worker of queue {queue!r} took run {run.id} within {bounds.start_s:.0f} s"
            await client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
            raise RunNotStarted(message)
        if waited >= bounds.finish_s:
            message = (f"run {run.id} in queue {queue!r} started but had no final state after {waited:.0f} s; "
                       "its worker is gone, the sweeper lands it aborted")
            await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            raise RunLost(message)
        await asyncio.sleep(bounds.poll_s)


async def outcome_of(client: PrefectClient, lake: Lake, run: FlowRun, assignment: Assignment) -> dict:
    """The run's summary from the lake (by its own or its run-scenario child's id), else from its final state."""
    children = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
    ids = [str(run.id), *(str(child.id) for child in children)]
    rows = lake.query_frame("SELECT * FROM runs WHERE list_contains(?, prefect_flow_run_id) AND outcome IS NOT NULL",
                            [ids]).to_dicts()
    if rows:
        return summary_of_row(rows[-1])
    outcome = OUTCOME_OF_STATE.get((run.state.type, run.state.name))
    if outcome is None:
        raise RunLost(f"run {run.id} ended {run.state.name}: {run.state.message or 'no message'}")
    return summary_of_row({"scenario": assignment.scenario, "orchestrator": assignment.orchestrator,
                           "scope_instance": assignment.instance, "outcome": outcome,
                           "failure_reason": run.state.message or None})


async def run_on_worker(assignment: Assignment, orchestrator: Orchestrator, *, settings: Settings, lake: Lake,
                        work_queue: str, config: str | None) -> dict:
    """Submit the assignment to its queue and wait, bounded, for its outcome."""
    async with get_client() as client:
        submitted = await submit(client, assignment, orchestrator, work_queue=work_queue, config=config)
        final = await await_final(client, submitted, bounds_for(settings, assignment))
        return await outcome_of(client, lake, final, assignment)

