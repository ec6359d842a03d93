"""Waiting for a run sent to a worker: bounded start, bounded finish, the outcome from the lake or the state."""

from __future__ import annotations

import uuid
from fractions import Fraction

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Failed, Pending, Running, Scheduled, State

from analytics.records import RunRecord
from config.settings import ScopeInstanceConfig
from tasks.fleet.dispatching import session_share
from tasks.fleet.planner import Assignment
from tasks.fleet.submission import Bounds, RunLost, RunNotStarted, await_final, bounds_for, outcome_of
from tasks.session.target import utc_now

ASSIGNMENT = Assignment(orchestrator="0xabc", scenario="longlive_t2v_15s", instance="sim-a", duration_s=15.0,
                        reason="test")
QUICK = Bounds(start_s=0.05, finish_s=0.2, poll_s=0.01)


class FakeClient:
    """The few PrefectClient calls the wait makes, over a scripted list of states."""

    def __init__(self, states: list[State], children: list[FlowRun] | None = None) -> None:
        self.states, self.children, self.forced = states, children or [], []
        self.run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), work_queue_name="host-a", state=states[0])

    async def read_flow_run(self, flow_run_id: uuid.UUID) -> FlowRun:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return self.run.model_copy(update={"state": state})

    async def set_flow_run_state(self, flow_run_id: uuid.UUID, state: State, force: bool = False) -> None:
        self.forced.append((state.type.value, force))

    async def read_flow_runs(self, **_: object) -> list[FlowRun]:
        return self.children


async def test_a_run_that_finishes_is_returned_final():
    client = FakeClient([Scheduled(), Pending(), Running(), Completed()])
    run = await await_final(client, client.run, QUICK)
    assert run.state.is_completed() and client.forced == []


async def test_a_run_no_worker_takes_is_cancelled_after_the_start_allowance():
    client = FakeClient([Scheduled()])
    with pytest.raises(RunNotStarted, match="no worker of queue 'host-a'"):
        await await_final(client, client.run, QUICK)
    assert client.forced == [("CANCELLED", True)]


async def test_a_run_whose_worker_died_is_marked_crashed_after_its_hard_cap():
    client = FakeClient([Running()])
    with pytest.raises(RunLost, match="had no final state"):
        await await_final(client, client.run, QUICK)
    assert client.forced == [("CRASHED", True)]


def test_the_finish_bound_is_the_start_allowance_plus_the_scenarios_hard_cap(demo_settings):
    bounds = bounds_for(demo_settings, ASSIGNMENT)
    hard_cap_s = demo_settings.scenario(ASSIGNMENT.scenario).hard_cap_s
    assert bounds.start_s == demo_settings.dispatch.start_allowance_s
    assert bounds.finish_s == pytest.approx(bounds.start_s + hard_cap_s)


async def test_the_outcome_comes_from_the_lake_row_of_the_child_run(demo_settings, lake):
    child = FakeClient([Completed()]).run
    client = FakeClient([Completed()], children=[child])
    scenario = demo_settings.scenario(ASSIGNMENT.scenario)
    now = utc_now()
    lake.land_run(RunRecord(
        run_id="r1", state="final", scenario=scenario.name, pipeline=scenario.pipeline, mode=scenario.mode,
        duration_class=scenario.duration_class, planned_duration_s=15.0, hard_cap_s=scenario.hard_cap_s,
        orchestrator="0xabc", scope_instance="sim-a", harness_version="test", started_at=now, ended_at=now,
        outcome="failed", failure_reason="black frames", checks_failed=("black",),
        prefect_flow_run_id=str(child.id)))
    summary = await outcome_of(client, lake, client.run.model_copy(update={"state": Completed()}), ASSIGNMENT)
    assert (summary["run_id"], summary["outcome"], summary["checks_failed"]) == ("r1", "failed", ["black"])


@pytest.mark.parametrize(("state", "outcome"), [
    (Completed(), "passed"), (Completed(name="Unavailable"), "unavailable"),
    (Failed(message="protocol/load: x"), "failed"), (Failed(name="Aborted"), "aborted"),
])
async def test_without_a_row_in_this_lake_the_final_state_tells_the_outcome(lake, state, outcome):
    client = FakeClient([state])
    summary = await outcome_of(client, lake, client.run.model_copy(update={"state": state}), ASSIGNMENT)
    assert (summary["outcome"], summary["scope_instance"], summary["checks_failed"]) == (outcome, "sim-a", [])


async def test_a_crashed_run_without_a_row_is_lost(lake):
    client = FakeClient([State(type="CRASHED", name="Crashed", message="process killed")])
    with pytest.raises(RunLost, match="ended Crashed: process killed"):
        await outcome_of(client, lake, client.run.model_copy(update={"state": client.states[0]}), ASSIGNMENT)


def test_a_session_on_another_hosts_instance_takes_no_share_of_this_process(demo_settings):
    routed = ScopeInstanceConfig(name="sim-a", kind="static", url="http://127.0.0.1:9", work_queue="host-a")
    settings = demo_settings.model_copy(update={"instances": [routed]})
    assert session_share(settings, "sim-a") == Fraction(0)


@pytest.mark.parametrize("queue", ["host a", "host/a", "-a", ""])
def test_a_work_queue_name_is_a_plain_name(queue):
    with pytest.raises(ValueError, match="a name of letters"):
        ScopeInstanceConfig(name="sim-a", kind="static", url="http://127.0.0.1:9", work_queue=queue)
