"""The fair planner: which orchestrator runs which scenario on which free Scope instance, now.

``plan()`` is a pure function of its arguments (no Prefect, no I/O, no clock, no sleeping):
everything it knows about the past comes from the lake's runs frame, so a restarted
harness plans exactly as the one before it would have (architecture.md, rule 1).

How one call decides:
1. Outside the ``schedule_start``-``schedule_end`` window (UTC) nothing is planned.
2. Candidates are the orchestrators that are not blacklisted, not backing off after an
   `unavailable` run or after the latest discovery saw them without free capacity (capacity 0,
   capacity in use: ``no_capacity_at``; the same `unavailable_backoff_mins` from the snapshot,
   because capacity frees within minutes while discovery runs every few hours, and a later
   snapshot with capacity replaces it), not cooling down after their last run, not running (neither in
   ``busy_orchestrators`` nor with a run still open in the lake) and have enough budget
   left today for the shortest scenario.
3. Of those, the *due* ones run: a newly seen orchestrator (first seen within the last hour
   and not tested since) always; any other when its share of today's budget used (running
   runs' planned seconds included) is below the share of today's window that has passed,
   plus a small lead (PACE_LEAD_SHARE). Pacing spreads each budget over the window instead
   of spending it all right after the window opens.
4. New orchestrators go first, then the one furthest below its budget share, then the one
   that has waited longest since its last run.
5. Each gets a distinct free instance: a static instance pinned to it, else a managed one.
   Static instances only ever run the orchestrator they are pinned to.
6. Each gets the scenario it ran least recently (never-run ones first, in matrix order),
   among those whose duration fits its remaining budget. Scenarios longer than
   ``max_run_duration_mins`` are skipped, not shortened: a shortened long run would be
   counted as covering a scenario it did not test (the settings loader already refuses
   such scenarios; this guards matrices built in code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import polars as pl

from analytics.coverage import SECONDS_PER_DAY, coverage_table, normalised_runs
from analytics.records import as_utc
from config.scenarios import Scenario
from config.settings import Budget

NEW_ORCHESTRATOR_WINDOW = timedelta(hours=1)
# How far ahead of the even pace an orchestrator may run, as a share of its daily budget: enough
# for the first run when the window opens, small enough to keep the day's runs spread out.
PACE_LEAD_SHARE = 0.05
_UTC_TYPE = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class InstanceSlot:
    """A free Scope instance: static ones run only their pinned orchestrator, managed ones any."""

    name: str
    kind: Literal["static", "managed"]
    orchestrator: str | None = None


@dataclass(frozen=True)
class Assignment:
    """One planned run: this scenario on this orchestrator through this instance, and why."""

    orchestrator: str
    scenario: str
    instance: str
    duration_s: float
    reason: str


def _second_of_day(hhmm: str) -> float:
    """``"07:30"`` -> 27000.0; ``"24:00"`` -> 86400.0."""
    hours, minutes = hhmm.split(":")
    return (int(hours) * 60 + int(minutes)) * 60.0


def window_elapsed_fraction(budget: Budget, now: datetime) -> float | None:
    """Share of today's open window (its part inside this UTC day) that has passed; None while closed."""
    now = as_utc(now)
    if not budget.is_open(now.time()):
        return None
    start_s, end_s = _second_of_day(budget.schedule_start), _second_of_day(budget.schedule_end)
    # A window that wraps midnight is open at both ends of the UTC day the budget counts.
    segments = [(start_s, end_s)] if start_s < end_s else [(0.0, end_s), (start_s, SECONDS_PER_DAY)]
    at_s = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    open_s = sum(end - begin for begin, end in segments)
    elapsed_s = sum(min(max(at_s - begin, 0.0), end - begin) for begin, end in segments)
    return elapsed_s / open_s


def plan(*, orchestrators: Sequence[str], first_seen: Mapping[str, datetime], runs: pl.DataFrame,
         scenarios: Sequence[Scenario], free_instances: Sequence[InstanceSlot], busy_orchestrators: set[str],
         budget: Budget, now: datetime, no_capacity_at: Mapping[str, datetime] | None = None,
         refused: AbstractSet[tuple[str, str]] = frozenset()) -> list[Assignment]:
    """The runs to start now, at most one per free instance and per orchestrator, best first.

    `refused` holds (instance, scenario) pairs the instance's own pipelines cannot run (its
    preflight said so): those scenarios are never planned on that instance."""
    now = as_utc(now)
    matrix = [s for s in dict((s.name, s) for s in scenarios).values()
              if s.duration_s <= budget.max_run_duration_mins * 60]
    pace = window_elapsed_fraction(budget, now)
    if pace is None or not matrix or not free_instances:
        return []
    runs = normalised_runs(runs)
    table = coverage_table(runs, orchestrators=orchestrators, scenarios=[s.name for s in matrix],
                           budget=budget, day=now.date(), now=now, no_capacity_at=no_capacity_at)
    due = _due(table, first_seen=first_seen, busy=busy_orchestrators, pace=pace, now=now,
               shortest_s=min(s.duration_s for s in matrix))
    matched = _match_instances(due, free_instances)
    last_started = _last_started(runs, [row["orchestrator"] for row, _ in matched])
    planned = [_assignment(row, slot, [s for s in matrix if (slot.name, s.name) not in refused], last_started,
                           budget=budget, pace=pace, now=now) for row, slot in matched]
    return [assignment for assignment in planned if assignment is not None]


def _due(table: pl.DataFrame, *, first_seen: Mapping[str, datetime], busy: set[str], pace: float,
         now: datetime, shortest_s: float) -> pl.DataFrame:
    """The orchestrators that may and should run now, best first."""
    seen = pl.DataFrame({"orchestrator": [a.lower() for a in first_seen],
                         "first_seen_at": [as_utc(t) for t in first_seen.values()]},
                        schema={"orchestrator": pl.String(), "first_seen_at": _UTC_TYPE})
    committed = pl.col("used_s") + pl.col("reserved_s")
    untested = pl.col("last_run_started_at").is_null() | (pl.col("last_run_started_at") < pl.col("first_seen_at"))
    is_new = (pl.col("first_seen_at") >= pl.lit(now - NEW_ORCHESTRATOR_WINDOW).cast(_UTC_TYPE)) & untested
    table = table.join(seen, on="orchestrator", how="left", maintain_order="left").with_columns(
        (committed / pl.col("budget_s")).alias("share"),
        (pl.col("budget_s") - committed).alias("remaining_s"),
        is_new.fill_null(False).alias("is_new"),
    )
    may_run = (~pl.col("blacklisted") & ~pl.col("backing_off") & ~pl.col("cooling_down")
               & (pl.col("running") == 0) & ~pl.col("orchestrator").is_in([a.lower() for a in busy])
               & (pl.col("remaining_s") >= shortest_s))
    should_run = pl.col("is_new") | (pl.col("share") < pace + PACE_LEAD_SHARE)
    ranked = table.filter(may_run & should_run).sort(
        [pl.col("is_new"), pl.when("is_new").then(pl.col("first_seen_at")), "share", "last_run_ended_at",
         "orchestrator"],
        descending=[True, False, False, False, False], nulls_last=[False, True, False, False, False],
    )
    return ranked.with_columns((pl.int_range(pl.len()) + 1 - pl.col("is_new").sum()).alias("rank"))


def _match_instances(due: pl.DataFrame, free_instances: Sequence[InstanceSlot]) -> list[tuple[dict[str, Any],
                                                                                              InstanceSlot]]:
    """Each due orchestrator in order takes its pinned static instance, else a managed one, while any is free."""
    pinned: dict[str, list[InstanceSlot]] = {}
    managed: list[InstanceSlot] = []
    for slot in dict((s.name, s) for s in free_instances).values():
        if slot.kind == "managed":
            managed.append(slot)
        elif slot.orchestrator is not None:  # a static instance without a pin cannot attribute its runs
            pinned.setdefault(slot.orchestrator.lower(), []).append(slot)
    if not managed:  # only pinned instances: nobody else can use them
        due = due.filter(pl.col("orchestrator").is_in(list(pinned)))
    matched = []
    for row in due.iter_rows(named=True):
        own = pinned.get(row["orchestrator"])
        slot = own.pop() if own else managed.pop(0) if managed else None
        if slot is not None:
            matched.append((row, slot))
        if not managed and not any(pinned.values()):
            break
    return matched


def _last_started(runs: pl.DataFrame, orchestrators: list[str]) -> dict[tuple[str, str], datetime]:
    """When each (orchestrator, scenario) last started a run that counts for rotation.

    An `unavailable` run tested nothing, so the scenario stays first in line for the retry.
    """
    rows = (
        runs.filter(pl.col("orchestrator").is_in(orchestrators)
                    & (pl.col("outcome").is_null() | (pl.col("outcome") != "unavailable")))
        .group_by("orchestrator", "scenario")
        .agg(pl.col("started_at").max())
    )
    return {(orchestrator, scenario): started for orchestrator, scenario, started in rows.iter_rows()}


def _assignment(row: dict[str, Any], slot: InstanceSlot, matrix: list[Scenario],
                last_started: dict[tuple[str, str], datetime], *, budget: Budget, pace: float,
                now: datetime) -> Assignment | None:
    """The assignment of one matched orchestrator: its least recently run scenario that fits, and why."""
    orchestrator, remaining_s = row["orchestrator"], row["remaining_s"]
    if not any(s.duration_s <= remaining_s for s in matrix):
        return None  # the instance can run none of the scenarios that fit

    def staleness(indexed: tuple[int, Scenario]) -> tuple[bool, datetime, int]:
        """Never run first, then oldest start first, then matrix order."""
        index, scenario = indexed
        last = last_started.get((orchestrator, scenario.name))
        return (last is not None, last or now, index)

    least_recent = min(enumerate(matrix), key=staleness)[1]
    scenario = min(((i, s) for i, s in enumerate(matrix) if s.duration_s <= remaining_s), key=staleness)[1]
    why = [_why_orchestrator(row, budget=budget, pace=pace, now=now),
           _why_scenario(scenario, last_started.get((orchestrator, scenario.name)))]
    if scenario is not least_recent:
        why.append(f"{least_recent.name} ({least_recent.duration_s:g} s) exceeds the {remaining_s:.0f} s left")
    return Assignment(orchestrator=orchestrator, scenario=scenario.name, instance=slot.name,
                      duration_s=scenario.duration_s, reason="; ".join(why))


def _why_orchestrator(row: dict[str, Any], *, budget: Budget, pace: float, now: datetime) -> str:
    """Why this orchestrator runs now, in words."""
    if row["is_new"]:
        minutes = (now - row["first_seen_at"]).total_seconds() / 60
        return f"new orchestrator (first seen {minutes:.0f} min ago, not tested yet)"
    used_pct = 100 * (row["used_s"] + row["reserved_s"]) / SECONDS_PER_DAY
    place = "furthest below budget" if row["rank"] == 1 else f"#{row['rank']} furthest below budget"
    text = (f"{place} ({used_pct:.1f} % of {budget.daily_percent:g} % of the day used, "
            f"pace allows {pace * budget.daily_percent:.1f} %)")
    last_unavailable, last_ended = row["last_unavailable_at"], row["last_run_ended_at"]
    if last_unavailable is not None and (last_ended is None or last_unavailable >= last_ended):
        text += (f", retrying after `unavailable` or no free capacity "
                 f"({budget.unavailable_backoff_mins:g} min back-off over)")
    return text


def _why_scenario(scenario: Scenario, last: datetime | None) -> str:
    """Why this scenario, in words."""
    if last is None:
        return f"{scenario.name} never run here"
    return f"{scenario.name} run least recently (last started {last:%Y-%m-%d %H:%M} UTC)"
