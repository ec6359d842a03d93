"""The fair planner, on literal runs and a fixed clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest

from analytics.coverage import OPTIONAL_SCHEMA, RUNS_SCHEMA, budget_seconds
from config.scenarios import Scenario
from config.settings import Budget
from tasks.fleet.planner import NEW_ORCHESTRATOR_WINDOW, PACE_LEAD_SHARE, InstanceSlot, plan, window_elapsed_fraction

UTC = timezone.utc
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
NOON = MIDNIGHT + timedelta(hours=12)
BUDGET = Budget(daily_percent=20, min_run_gap_mins=5, max_run_duration_mins=30, unavailable_backoff_mins=30,
                blacklist_after_failures=5)
BUDGET_S = budget_seconds(BUDGET)
LONG_AGO = MIDNIGHT - timedelta(days=30)
SCHEMA = {**RUNS_SCHEMA, **OPTIONAL_SCHEMA}


def make_scenario(name: str, duration_s: float) -> Scenario:
    """A scenario with just what the planner reads filled in realistically."""
    return Scenario(name=name, pipeline="longlive", pipeline_ids=["longlive"], mode="t2v", duration_s=duration_s,
                    duration_class=f"{duration_s:g}s", prompt_pool=None, prompts=(), parameters={}, graph=None,
                    sink_node_id=None, width=512, height=512, expected_fps=10.0, input_kind="none",
                    hard_cap_s=duration_s + 600)


MATRIX = [make_scenario("short_1m", 60.0), make_scenario("mid_5m", 300.0), make_scenario("long_15m", 900.0)]


def run(orchestrator: str, at: datetime, outcome: str | None = "passed", *, scenario: str = "short_1m",
        stream_s: float | None = 60.0, wall_s: float = 120.0) -> dict[str, Any]:
    """One row of the runs view; outcome None is a run still in flight; a failure is the orchestrator's."""
    return dict(orchestrator=orchestrator, scenario=scenario, outcome=outcome, started_at=at,
                ended_at=at + timedelta(seconds=wall_s) if outcome else None,
                stream_s=stream_s if outcome else None, planned_duration_s=60.0,
                failure_category="runner" if outcome == "failed" else None,
                failure_phase="stream" if outcome == "failed" else None)


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    """The rows as a runs frame."""
    return pl.DataFrame(list(rows), schema=SCHEMA)


def managed(count: int) -> list[InstanceSlot]:
    """``count`` managed instances."""
    return [InstanceSlot(f"managed-{i}", "managed") for i in range(count)]


def planned(runs: pl.DataFrame, orchestrators: list[str], *, now: datetime = NOON, instances: int = 1,
            free: list[InstanceSlot] | None = None, first_seen: dict[str, datetime] | None = None,
            busy: set[str] | None = None, scenarios: list[Scenario] = MATRIX, budget: Budget = BUDGET,
            no_capacity_at: dict[str, datetime] | None = None):
    """plan() with defaults: everyone seen long ago, managed instances, nobody busy, capacity unknown."""
    return plan(orchestrators=orchestrators, first_seen=first_seen or {o: LONG_AGO for o in orchestrators},
                runs=runs, scenarios=scenarios, free_instances=free if free is not None else managed(instances),
                busy_orchestrators=busy or set(), budget=budget, now=now, no_capacity_at=no_capacity_at)


def used(orchestrator: str, share_of_budget: float, *, at: datetime = MIDNIGHT + timedelta(hours=1)) -> dict:
    """A finished run that used ``share_of_budget`` of the day's budget."""
    return run(orchestrator, at, stream_s=share_of_budget * BUDGET_S)


# --- the window and pacing ---------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end", "hhmm", "expected"), [
    ("00:00", "24:00", "12:00", 0.5),
    ("06:00", "22:00", "14:00", 0.5),
    ("06:00", "22:00", "05:59", None),
    ("06:00", "22:00", "22:00", None),
    ("22:00", "06:00", "03:00", 3 / 8),   # wraps midnight: open 00-06 and 22-24 of this UTC day
    ("22:00", "06:00", "23:00", 7 / 8),
    ("22:00", "06:00", "12:00", None),
])
def test_window_elapsed_fraction(start: str, end: str, hhmm: str, expected: float | None) -> None:
    budget = BUDGET.model_copy(update={"schedule_start": start, "schedule_end": end})
    hours, minutes = map(int, hhmm.split(":"))
    now = MIDNIGHT + timedelta(hours=hours, minutes=minutes)
    assert window_elapsed_fraction(budget, now) == (pytest.approx(expected) if expected is not None else None)


def test_nothing_is_planned_outside_the_window() -> None:
    budget = BUDGET.model_copy(update={"schedule_start": "06:00", "schedule_end": "22:00"})
    assert planned(frame(), ["0xa"], now=MIDNIGHT + timedelta(hours=5, minutes=59), budget=budget) == []
    assert len(planned(frame(), ["0xa"], now=MIDNIGHT + timedelta(hours=6), budget=budget)) == 1


def test_budget_is_paced_over_the_window_instead_of_spent_at_its_start() -> None:
    one_am = MIDNIGHT + timedelta(hours=1)
    pace = window_elapsed_fraction(BUDGET, one_am)
    ahead = frame(used("0xa", pace + PACE_LEAD_SHARE + 0.01, at=MIDNIGHT))
    behind = frame(used("0xa", pace + PACE_LEAD_SHARE - 0.01, at=MIDNIGHT))
    assert planned(ahead, ["0xa"], now=one_am) == []
    assert [a.orchestrator for a in planned(behind, ["0xa"], now=one_am)] == ["0xa"]
    # the same use later in the day is behind the pace: it runs again
    assert planned(ahead, ["0xa"], now=NOON)


# --- who goes first ----------------------------------------------------------------------------

def test_the_orchestrator_furthest_below_its_budget_share_goes_first() -> None:
    runs = frame(used("0xa", 0.30), used("0xb", 0.10), used("0xc", 0.20))
    assignments = planned(runs, ["0xa", "0xb", "0xc"], instances=2)
    assert [a.orchestrator for a in assignments] == ["0xb", "0xc"]
    used_pct = 0.10 * BUDGET.daily_percent
    assert assignments[0].reason.startswith(f"furthest below budget ({used_pct:.1f} % of {BUDGET.daily_percent:g} %")


def test_a_new_orchestrator_goes_first_within_its_first_hour() -> None:
    runs = frame(used("0xold", 0.0))
    seen = {"0xold": LONG_AGO, "0xnew": NOON - timedelta(minutes=10)}
    (first,) = planned(runs, ["0xold", "0xnew"], first_seen=seen)
    assert first.orchestrator == "0xnew" and first.reason.startswith("new orchestrator (first seen 10 min ago")
    stale = {"0xold": LONG_AGO, "0xnew": NOON - NEW_ORCHESTRATOR_WINDOW - timedelta(minutes=1)}
    (first,) = planned(runs, ["0xold", "0xnew"], first_seen=stale)
    assert not first.reason.startswith("new")  # past its first hour it queues by budget like everyone


def test_a_rediscovered_orchestrator_with_runs_since_first_seen_is_not_new() -> None:
    seen = NOON - timedelta(minutes=30)
    runs = frame(used("0xa", 0.5 + 2 * PACE_LEAD_SHARE, at=seen + timedelta(minutes=1)))
    assert planned(runs, ["0xa"], first_seen={"0xa": seen}) == []  # ahead of pace, so not due


# --- who is skipped ----------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "busy", "why"), [
    ([run("0xa", NOON - timedelta(hours=h), "failed") for h in range(5, 0, -1)], set(), "blacklisted"),
    ([run("0xa", NOON - timedelta(minutes=4), wall_s=60)], set(), "cooling down"),
    ([run("0xa", NOON - timedelta(minutes=20), "unavailable", wall_s=5)], set(), "backing off"),
    ([run("0xa", NOON - timedelta(hours=2), stream_s=BUDGET_S - 59)], set(), "budget left < shortest"),
    ([run("0xa", NOON - timedelta(minutes=30), None)], set(), "running in the lake"),
    ([], {"0xa"}, "busy"),
])
def test_skipped_orchestrators(rows: list[dict], busy: set[str], why: str) -> None:
    assert planned(frame(*rows), ["0xa"], busy=busy) == [], why
    assert [a.orchestrator for a in planned(frame(*rows), ["0xa", "0xb"], busy=busy)] == ["0xb"], why


def test_an_orchestrator_discovery_saw_full_waits_out_the_unavailable_back_off_from_the_snapshot() -> None:
    backoff = timedelta(minutes=BUDGET.unavailable_backoff_mins)
    full_since = {"0xa": NOON - backoff + timedelta(minutes=1)}
    assert [a.orchestrator for a in planned(frame(), ["0xa", "0xb"], instances=2, no_capacity_at=full_since)] \
        == ["0xb"]
    (retry,) = planned(frame(), ["0xa"], no_capacity_at={"0xa": NOON - backoff})
    assert retry.orchestrator == "0xa" and "back-off over" in retry.reason
    # a new orchestrator without capacity waits too: capacity is a fact, not a matter of priority
    seen = {"0xa": NOON - timedelta(minutes=5)}
    assert planned(frame(), ["0xa"], first_seen=seen, no_capacity_at={"0xa": NOON - timedelta(minutes=5)}) == []


def test_one_orchestrator_in_any_casing_is_one_key() -> None:
    checksummed, lower = "0xAbCd", "0xabcd"
    runs = frame(run(checksummed, NOON - timedelta(minutes=2), wall_s=60))  # cooling down
    assert planned(runs, [lower]) == []
    assert planned(frame(), [checksummed], busy={lower}) == []
    assert planned(frame(), [lower], no_capacity_at={checksummed: NOON}) == []
    (assignment,) = planned(frame(), [checksummed], free=[InstanceSlot("static", "static", checksummed)])
    assert (assignment.orchestrator, assignment.instance) == (lower, "static")


def test_four_failures_or_interruptions_by_unavailable_or_aborted_do_not_blacklist() -> None:
    outcomes = ["failed", "failed", "aborted", "failed", "unavailable", "failed"]
    runs = frame(*[run("0xa", NOON - timedelta(hours=6 - i), outcome) for i, outcome in enumerate(outcomes)])
    assert [a.orchestrator for a in planned(runs, ["0xa"])] == ["0xa"]


def test_an_unavailable_orchestrator_is_retried_with_the_same_scenario_after_the_back_off() -> None:
    runs = frame(run("0xa", NOON - timedelta(hours=3), scenario="long_15m"),
                 run("0xa", NOON - timedelta(hours=2), scenario="short_1m"),
                 run("0xa", NOON - timedelta(minutes=31), "unavailable", scenario="mid_5m", wall_s=5))
    (retry,) = planned(runs, ["0xa"])
    # `unavailable` tested nothing: mid_5m still counts as never run, ahead of the older long_15m
    assert retry.scenario == "mid_5m" and "mid_5m never run here" in retry.reason
    assert "retrying after `unavailable`" in retry.reason


def test_a_blacklist_is_lifted_the_next_utc_day() -> None:
    failures = frame(*[run("0xa", NOON + timedelta(hours=h), "failed") for h in range(5)])
    assert planned(failures, ["0xa"], now=NOON + timedelta(hours=11)) == []
    assert planned(failures, ["0xa"], now=MIDNIGHT + timedelta(days=1, minutes=1))


# --- which scenario ----------------------------------------------------------------------------

def test_rotation_runs_the_least_recently_run_scenario_across_days() -> None:
    runs = frame(run("0xa", NOON - timedelta(days=2), scenario="long_15m"),
                 run("0xa", NOON - timedelta(days=3), scenario="mid_5m"),
                 run("0xa", NOON - timedelta(hours=1), scenario="short_1m"))
    (assignment,) = planned(runs, ["0xa"])
    assert (assignment.scenario, assignment.duration_s) == ("mid_5m", 300.0)
    assert "run least recently (last started 2026-02-27 12:00 UTC)" in assignment.reason
    (first,) = planned(frame(), ["0xa"])
    assert first.scenario == MATRIX[0].name and "never run here" in first.reason


def test_the_rotation_survives_a_restart_because_it_comes_from_the_runs() -> None:
    runs, seen = frame(), []
    for minute in range(0, 3 * 20, 20):  # every call is a fresh planner: no state but the runs
        (assignment,) = planned(runs, ["0xa"], now=NOON + timedelta(minutes=minute))
        seen.append(assignment.scenario)
        runs = pl.concat([runs, frame(run("0xa", NOON + timedelta(minutes=minute), scenario=assignment.scenario))])
    assert seen == [s.name for s in MATRIX]


def test_a_scenario_that_does_not_fit_the_budget_left_waits_for_tomorrow() -> None:
    runs = frame(run("0xa", NOON - timedelta(days=3), scenario="long_15m"),
                 run("0xa", NOON - timedelta(hours=2), scenario="mid_5m", stream_s=BUDGET_S - 400),
                 run("0xa", NOON - timedelta(hours=1), scenario="short_1m", stream_s=0.0))
    (assignment,) = planned(runs, ["0xa"], now=MIDNIGHT + timedelta(hours=23, minutes=50))
    assert assignment.scenario == "mid_5m"  # long_15m was next but 900 s > the 400 s left
    assert "long_15m (900 s) exceeds the 400 s left" in assignment.reason


def test_scenarios_longer_than_the_maximum_run_duration_are_never_planned() -> None:
    too_long = make_scenario("soak_60m", BUDGET.max_run_duration_mins * 60 + 1)
    assignments = planned(frame(), ["0xa", "0xb"], instances=2, scenarios=[too_long, *MATRIX])
    assert {a.scenario for a in assignments} == {MATRIX[0].name}
    assert all(a.duration_s <= BUDGET.max_run_duration_mins * 60 for a in assignments)
    assert planned(frame(), ["0xa"], scenarios=[too_long]) == []


# --- which instance ----------------------------------------------------------------------------

def test_static_instances_run_only_their_pinned_orchestrator() -> None:
    free = [InstanceSlot("static-a", "static", "0xa"), InstanceSlot("static-c", "static", "0xc"),
            InstanceSlot("managed-0", "managed")]
    runs = frame(used("0xa", 0.3), used("0xb", 0.1), used("0xc", 0.9))  # 0xc is ahead of pace: not due
    assignments = {a.orchestrator: a.instance for a in planned(runs, ["0xa", "0xb", "0xc"], free=free)}
    assert assignments == {"0xb": "managed-0", "0xa": "static-a"}
    only_static = planned(runs, ["0xa", "0xb", "0xc"], free=free[:2])
    assert [(a.orchestrator, a.instance) for a in only_static] == [("0xa", "static-a")]


def test_one_run_per_instance_and_per_orchestrator() -> None:
    orchestrators = [f"0x{i}" for i in range(10)]
    assignments = planned(frame(), orchestrators, instances=4)
    assert len(assignments) == 4
    assert len({a.instance for a in assignments}) == len({a.orchestrator for a in assignments}) == 4
    assert len(planned(frame(), orchestrators[:2], instances=4)) == 2
    assert planned(frame(), orchestrators, free=[]) == []


def test_plan_is_a_pure_function_of_its_inputs() -> None:
    runs = frame(used("0xa", 0.1), used("0xb", 0.05), run("0xc", NOON - timedelta(hours=1), "failed"))
    before = runs.clone()
    first = planned(runs, ["0xa", "0xb", "0xc"], instances=3)
    assert planned(runs, ["0xa", "0xb", "0xc"], instances=3) == first
    assert runs.equals(before)


# --- scenarios an instance's own pipelines refused (preflight) ------------------------------------

def test_a_scenario_refused_on_an_instance_is_never_planned_there_and_another_takes_its_turn():
    free = [InstanceSlot("scope-a", "static", "0xa"), InstanceSlot("scope-b", "static", "0xb")]
    never_run = frame()
    first = {a.instance: a.scenario for a in planned(never_run, ["0xa", "0xb"], free=free)}
    assert first == {"scope-a": "short_1m", "scope-b": "short_1m"}  # never run first, matrix order
    refused = {("scope-a", "short_1m")}
    again = plan(orchestrators=["0xa", "0xb"], first_seen={o: LONG_AGO for o in ("0xa", "0xb")}, runs=never_run,
                 scenarios=MATRIX, free_instances=free, busy_orchestrators=set(), budget=BUDGET, now=NOON,
                 refused=refused)
    assert {a.instance: a.scenario for a in again} == {"scope-a": "mid_5m", "scope-b": "short_1m"}


def test_an_instance_that_can_run_none_of_the_scenarios_gets_no_assignment():
    free = [InstanceSlot("scope-a", "static", "0xa")]
    refused = {("scope-a", s.name) for s in MATRIX}
    assert plan(orchestrators=["0xa"], first_seen={"0xa": LONG_AGO}, runs=frame(), scenarios=MATRIX,
                free_instances=free, busy_orchestrators=set(), budget=BUDGET, now=NOON, refused=refused) == []
