"""The dispatch loop against a real lake with stand-in launches: session cap, capacity, failing instances."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from fractions import Fraction

import pytest

from analytics.lake import Lake
from analytics.records import OrchestratorSnapshot, RunRecord
from config.settings import (
    Discovery, DispatchSettings, MaxSessions, ScopeInstanceConfig, Settings, StaticOrchestrator,
)
from tasks.fleet.dispatching import Orchestrator, dispatch_runs, read_fleet_state, session_share
from tasks.fleet.planner import Assignment
from tasks.session.target import utc_now

MANAGED = "python -m simulator serve --port {port}"  # never started here: the launches are stand-ins


def fleet_settings(base: Settings, *, orchestrators: int, instances: int, driver: str = "headless",
                   max_sessions: MaxSessions | None = None) -> Settings:
    """The demo settings with static orchestrators, managed instances, a cooldown, a session cap."""
    static = [StaticOrchestrator(address=f"0xORCH{i}", uri=f"https://orch{i}.test:8935") for i in range(orchestrators)]
    managed = [ScopeInstanceConfig(name=f"managed-{i}", kind="managed", command=MANAGED) for i in range(instances)]
    return base.model_copy(update={
        "discovery": Discovery(orchestrators=static), "instances": managed, "media_driver": driver,
        "budget": base.budget.model_copy(update={"min_run_gap_mins": 30}),
        "dispatch": DispatchSettings(max_concurrent_sessions=max_sessions or MaxSessions()),
    })


def landing_launch(lake: Lake, settings: Settings, log: list[Assignment], active: list[int], *, turns: int = 20):
    """A launch that holds its session for a few event-loop turns, then lands a passed run."""

    async def launch(assignment: Assignment, orchestrator: Orchestrator) -> dict:
        log.append(assignment)
        run_id = f"run-{len(log)}"
        active[0] += 1
        active[1] = max(active[1], active[0])
        for _ in range(turns):
            await asyncio.sleep(0)
        active[0] -= 1
        scenario = settings.scenario(assignment.scenario)
        started = utc_now()
        lake.land_run(RunRecord(
            run_id=run_id, state="final", scenario=scenario.name, pipeline=scenario.pipeline,
            mode=scenario.mode, duration_class=scenario.duration_class, planned_duration_s=scenario.duration_s,
            hard_cap_s=scenario.hard_cap_s, orchestrator=orchestrator.address, scope_instance=assignment.instance,
            harness_version="test", started_at=started, ended_at=started, outcome="passed",
            stream_s=scenario.duration_s))
        return {"outcome": "passed"}

    return launch


@pytest.mark.parametrize(("driver", "cap"), [("headless", 2), ("webrtc", 3)])
async def test_never_more_sessions_at_once_than_the_process_holds(demo_settings, lake, driver, cap) -> None:
    limits = MaxSessions(headless=cap, webrtc=cap)
    settings = fleet_settings(demo_settings, orchestrators=8, instances=8, driver=driver, max_sessions=limits)
    log, active = [], [0, 0]
    summary = await dispatch_runs(settings=settings, lake=lake, launch=landing_launch(lake, settings, log, active),
                                  window_s=60)
    assert summary.launched == len(log) == 8 and summary.errors == []
    assert active[1] == cap


def test_a_session_takes_its_drivers_share_of_the_process(demo_settings) -> None:
    settings = fleet_settings(demo_settings, orchestrators=1, instances=2,
                              max_sessions=MaxSessions(webrtc=3, headless=64))
    webrtc = settings.instances[1].model_copy(update={"driver": "webrtc"})
    settings = settings.model_copy(update={"instances": [settings.instances[0], webrtc]})
    assert (session_share(settings, "managed-0"), session_share(settings, "managed-1")) == (Fraction(1, 64),
                                                                                          Fraction(1, 3))
    assert MaxSessions() == MaxSessions(webrtc=12, headless=64)  # the defaults measured-facts.md and make bench size


def snapshot(address: str, *, capacity: int, in_use: int, minutes_ago: float = 0.0) -> OrchestratorSnapshot:
    """A gateway snapshot of one orchestrator."""
    return OrchestratorSnapshot(snapshot_at=utc_now() - timedelta(minutes=minutes_ago), address=address,
                                uri=f"https://{address}.test", source="gateway", offers_scope=True,
                                capacity=capacity, capacity_in_use=in_use)


async def test_an_orchestrator_the_latest_discovery_saw_full_is_not_dispatched(demo_settings, lake) -> None:
    settings = fleet_settings(demo_settings, orchestrators=0, instances=2).model_copy(
        update={"budget": demo_settings.budget.model_copy(update={"min_run_gap_mins": 30,
                                                                   "unavailable_backoff_mins": 30})})
    lake.land("orchestrators", [snapshot("0xfull", capacity=0, in_use=3, minutes_ago=1),
                                snapshot("0xfree", capacity=1, in_use=1, minutes_ago=1)], file_stem="d1")
    log, active = [], [0, 0]
    await dispatch_runs(settings=settings, lake=lake, launch=landing_launch(lake, settings, log, active), window_s=60)
    assert [a.orchestrator for a in log] == ["0xfree"]
    # a later discovery that shows free capacity lets it run
    lake.land("orchestrators", [snapshot("0xfull", capacity=1, in_use=2)], file_stem="d2")
    await dispatch_runs(settings=settings, lake=lake, launch=landing_launch(lake, settings, log, active), window_s=60)
    assert [a.orchestrator for a in log] == ["0xfree", "0xfull"]


async def test_an_instance_whose_launch_raised_is_not_launched_again_in_that_call(demo_settings, lake) -> None:
    settings = fleet_settings(demo_settings, orchestrators=3, instances=1)
    calls: list[Assignment] = []

    async def failing(assignment: Assignment, orchestrator: Orchestrator) -> dict:
        calls.append(assignment)
        raise RuntimeError("Scope server exited with code 1")

    summary = await dispatch_runs(settings=settings, lake=lake, launch=failing, max_runs=50, window_s=60)
    assert (summary.launched, len(summary.errors), len(calls)) == (1, 1, 1)


def test_an_instance_with_a_landed_failed_start_backs_off(demo_settings, lake) -> None:
    settings = fleet_settings(demo_settings, orchestrators=1, instances=2)
    scenario = settings.expand_scenarios()[0]
    ended = utc_now()
    lake.land_run(RunRecord(
        run_id="start-failed", state="final", scenario=scenario.name, pipeline=scenario.pipeline, mode=scenario.mode,
        duration_class=scenario.duration_class, planned_duration_s=scenario.duration_s, hard_cap_s=scenario.hard_cap_s,
        orchestrator="0xorch0", scope_instance="managed-1", harness_version="test", started_at=ended,
        ended_at=ended, outcome="aborted", failure_category="harness", failure_phase="prepare",
        failure_reason="managed instance managed-1: Scope server exited with code 1 before answering /health"))
    state = read_fleet_state(lake, settings, now=ended)
    assert state.instances_backing_off == {"managed-1": ended + timedelta(seconds=10)}
    assert set(state.orchestrators) == {"0xorch0"} and state.orchestrators["0xorch0"].address == "0xorch0"
