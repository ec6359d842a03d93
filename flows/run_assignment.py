"""`run-assignment`: one dispatched assignment, carried out on the worker of its instance's host.

Dispatch sends it to the work queue the instance names; here, on that machine, the run holds its
orchestrator and instance slots (leased, so a dead machine's slots come back), brings up a managed
instance, runs `run-scenario` and ends in the scenario's verdict state.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import State

from analytics.lake import Lake
from config.settings import load_settings
from flows.run_scenario import MAX_RUN_TIMEOUT_S, run_scenario
from tasks.fleet.assignment import RunAt, carry_out
from tasks.fleet.planner import Assignment
from tasks.fleet.roster import Orchestrator
from tasks.session.report import flow_state, run_summary_of
from tasks.session.target import utc_now

DISPATCHED = "dispatched"  # the Assignment.reason of a run whose reason stayed with dispatch


def scenario_runner(assignment: Assignment, orchestrator: Orchestrator, config: str | None) -> RunAt:
    """The `run-scenario` subflow of this assignment, as a function of the instance's URL."""

    async def run_at(scope_url: str) -> dict:
        state = await run_scenario(scenario=assignment.scenario, scope_url=scope_url,
                                   orchestrator=orchestrator.address, duration_s=assignment.duration_s,
                                   config=config, return_state=True)
        return await run_summary_of(state)

    return run_at


@flow(name="run-assignment", timeout_seconds=MAX_RUN_TIMEOUT_S)
async def run_assignment(scenario: str, instance: str, orchestrator: str, duration_s: float,
                         orchestrator_uri: str | None = None, region: str | None = None,
                         config: str | None = None) -> State:
    """Hold the slots, bring up the instance and run the scenario here; the final state carries the verdict."""
    settings = load_settings(config)
    assignment = Assignment(orchestrator=orchestrator, scenario=scenario, instance=instance,
                            duration_s=duration_s, reason=DISPATCHED)
    target = Orchestrator(address=orchestrator, uri=orchestrator_uri, region=region, first_seen=utc_now())
    summary = await carry_out(assignment, target, settings=settings, lake=Lake.from_env(),
                              run_at=scenario_runner(assignment, target, config), flow_run_id=flow_run.id)
    return flow_state(summary)
