"""Three simulated days of planning for 20 orchestrators on 4 Scope instances, on a fake clock.

The simulation is event-driven: the clock jumps to the next run's end or the next dispatch tick
(every DISPATCH_EVERY), whichever comes first, and calls `plan()` there with the instances that
are free. An assignment is "executed" by writing its run into a runs frame the way the lake's
`runs` view shows it: an open row (no outcome) while it runs, its final row once the fake clock
passes its end. Outcomes follow each orchestrator's behaviour: healthy (passes), failing (fails
at load or mid-stream), or unavailable during an outage (no capacity), healthy otherwise.

The planner gets no busy set: whether an orchestrator is busy, cooling down, blacklisted or
backing off comes from the runs frame alone, as after a restart.

Parameters: the default 20 % budget is 17,280 stream seconds per orchestrator-day; 20
orchestrators would need 4 instance-days of pure stream, all the 4 instances have, with nothing
left for the connect/load/first-frame overhead of every run (40-100 s here) or the window's
closed hours. DAILY_PERCENT = 12 (10,368 s) leaves the fleet about a third idle, so every
healthy orchestrator can reach its budget and the check is about fairness, not capacity. The
window opens at 02:00 UTC so "nothing outside the window" is checked too.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from analytics.coverage import RUNS_SCHEMA
from config.scenarios import Scenario
from config.settings import Budget
from tasks.fleet.planner import NEW_ORCHESTRATOR_WINDOW, Assignment, InstanceSlot, plan

UTC = timezone.utc
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 3
DISPATCH_EVERY = timedelta(minutes=5)
DISCOVERY_EVERY = timedelta(hours=4)  # discovery.refresh_interval_hours: snapshots at 00, 04, 08, ... UTC
DAILY_PERCENT = 12.0
BUDGET = Budget(daily_percent=DAILY_PERCENT, min_run_gap_mins=5, max_run_duration_mins=30,
                schedule_start="02:00", schedule_end="24:00", blacklist_after_failures=5,
                unavailable_backoff_mins=30)
BUDGET_S = DAILY_PERCENT / 100 * 86_400
TOLERANCE = 0.10
OVERHEAD_S = (40.0, 100.0)  # connect + load + first frame, uniform
CLEANUP_S = 5.0
UNAVAILABLE_WALL_S = 8.0  # an orchestrator without capacity refuses quickly
# The default matrix's shape: 16 scenarios of 1, 5 and 15 minutes, long ones included.
MATRIX_MINUTES = {"longlive_t2v": (1, 5, 15), "longlive_v2v": (1, 5, 15), "longlive_i2v": (1, 5, 15),
                  "ltx2_t2v": (1, 5), "ltx2_i2v": (1, 5), "longlive_rife_v2v": (5, 15), "vda_rife_v2v": (5,)}
NEW_AT = START + timedelta(hours=13, minutes=20)
FAILURE_COLUMNS = ("failure_category", "failure_phase")
TIMESTAMPS = ("started_at", "ended_at")  # held as epoch microseconds: frames build much faster from ints


def micros(at: datetime | None) -> int | None:
    """Epoch microseconds of a UTC time."""
    return None if at is None else round(at.timestamp() * 1e6)


def make_scenario(name: str, duration_s: float) -> Scenario:
    """A scenario with just what the planner reads filled in realistically."""
    return Scenario(name=name, pipeline="longlive", pipeline_ids=["longlive"], mode="t2v", duration_s=duration_s,
                    duration_class=f"{duration_s:g}s", prompt_pool=None, prompts=(), parameters={}, graph=None,
                    sink_node_id=None, width=512, height=512, expected_fps=10.0, input_kind="none",
                    hard_cap_s=duration_s + 600)


MATRIX = [make_scenario(f"{stem}_{m}m", m * 60.0) for stem, minutes in MATRIX_MINUTES.items() for m in minutes]


@dataclass(frozen=True)
class Behaviour:
    """How an orchestrator answers: healthy, always failing, or unavailable during outages."""

    kind: str  # "healthy", "failing", "flaky"
    first_seen: datetime = START - timedelta(days=30)
    outages: tuple[tuple[datetime, datetime], ...] = ()

    def unavailable_at(self, at: datetime) -> bool:
        """True while an outage (no capacity) lasts."""
        return any(begin <= at < end for begin, end in self.outages)


def fleet() -> dict[str, Behaviour]:
    """14 healthy, 3 always failing, 2 with capacity outages, 1 discovered on day one afternoon."""
    behaviours = {f"0xhealthy{i:02d}": Behaviour("healthy") for i in range(14)}
    behaviours |= {f"0xfailing{i}": Behaviour("failing") for i in range(3)}
    outage_a = ((START, START + timedelta(hours=8)),)
    # begins as a discovery sees it: healthy until then, so only the snapshot can keep runs away
    outage_b = ((START + timedelta(days=1, hours=12), START + timedelta(days=1, hours=16)),)
    behaviours |= {"0xflaky0": Behaviour("flaky", outages=outage_a), "0xflaky1": Behaviour("flaky", outages=outage_b)}
    behaviours["0xnewcomer"] = Behaviour("healthy", first_seen=NEW_AT)
    return behaviours


def last_discovery(now: datetime) -> datetime:
    """When the latest discovery before ``now`` ran."""
    return START + (now - START) // DISCOVERY_EVERY * DISCOVERY_EVERY


@dataclass
class FleetSimulation:
    """The fake clock, the Scope instances and the runs frame the lake would hold."""

    behaviours: dict[str, Behaviour]
    instances: list[InstanceSlot]
    columns: dict[str, list] = field(default_factory=lambda: {n: [] for n in (*RUNS_SCHEMA, *FAILURE_COLUMNS,
                                                                                "scope_instance")})
    ends: list[tuple[datetime, int]] = field(default_factory=list)  # heap of (end, row index)
    finals: dict[int, dict] = field(default_factory=dict)  # row index -> its final fields
    busy_instances: set[str] = field(default_factory=set)
    cached: pl.DataFrame | None = None

    def frame(self) -> pl.DataFrame:
        """The runs as the lake's `runs` view shows them now (rebuilt only after a change)."""
        if self.cached is None:
            schema = {n: pl.Int64() if n in TIMESTAMPS else RUNS_SCHEMA.get(n, pl.String()) for n in self.columns}
            self.cached = pl.DataFrame(self.columns, schema=schema).with_columns(
                pl.col(TIMESTAMPS).cast(RUNS_SCHEMA["started_at"]))
        return self.cached

    def run(self, until: datetime) -> pl.DataFrame:
        """Plan and execute until ``until``, then let the runs in flight finish; returns every run."""
        now = START
        while now < until:
            self.finish_runs(now)
            self.start_runs(self.plan_now(now), now)
            next_tick = START + (now - START) // DISPATCH_EVERY * DISPATCH_EVERY + DISPATCH_EVERY
            now = min(next_tick, self.ends[0][0]) if self.ends else next_tick
        self.finish_runs(datetime.max.replace(tzinfo=UTC))
        return self.frame()

    def plan_now(self, now: datetime) -> list[Assignment]:
        """One dispatch: what the planner starts with the free instances at ``now``."""
        known = {name: b.first_seen for name, b in self.behaviours.items() if b.first_seen <= now}
        free = [slot for slot in self.instances if slot.name not in self.busy_instances]
        discovered_at = last_discovery(now)
        full = {name: discovered_at for name in known if self.behaviours[name].unavailable_at(discovered_at)}
        assignments = plan(orchestrators=list(known), first_seen=known, runs=self.frame(),
                           scenarios=MATRIX, free_instances=free, busy_orchestrators=set(),
                           budget=BUDGET, now=now, no_capacity_at=full)
        assert len({a.instance for a in assignments}) == len(assignments) <= len(free)
        assert len({a.orchestrator for a in assignments}) == len(assignments)
        return assignments

    def start_runs(self, assignments: list[Assignment], now: datetime) -> None:
        """Open a row per assignment and decide its outcome and end from the orchestrator's behaviour."""
        for assignment in assignments:
            index = len(self.columns["orchestrator"])
            row = dict(orchestrator=assignment.orchestrator, scenario=assignment.scenario, outcome=None,
                       started_at=now, ended_at=None, stream_s=None, planned_duration_s=assignment.duration_s,
                       failure_category=None, failure_phase=None, scope_instance=assignment.instance)
            for name, value in row.items():
                self.columns[name].append(micros(value) if name in TIMESTAMPS else value)
            final = self.outcome(assignment, now, random.Random(index))
            self.finals[index] = final
            heapq.heappush(self.ends, (final["ended_at"], index))
            self.busy_instances.add(assignment.instance)
            self.cached = None

    def outcome(self, assignment: Assignment, now: datetime, rng: random.Random) -> dict:
        """The final fields of a run started now."""
        behaviour = self.behaviours[assignment.orchestrator]
        if behaviour.unavailable_at(now):
            return dict(outcome="unavailable", stream_s=None, ended_at=now + timedelta(seconds=UNAVAILABLE_WALL_S))
        overhead_s = rng.uniform(*OVERHEAD_S) + CLEANUP_S
        if behaviour.kind == "failing":  # half die at load, half a third into the stream
            stream_s = None if rng.random() < 0.5 else assignment.duration_s / 3
            return dict(outcome="failed", stream_s=stream_s, ended_at=now + timedelta(seconds=overhead_s
                                                                                      + (stream_s or 0.0)),
                        failure_category="runner", failure_phase="load" if stream_s is None else "stream")
        wall_s = overhead_s + assignment.duration_s
        return dict(outcome="passed", stream_s=assignment.duration_s, ended_at=now + timedelta(seconds=wall_s))

    def finish_runs(self, now: datetime) -> None:
        """Land the final row of every run that ended by ``now``."""
        while self.ends and self.ends[0][0] <= now:
            _, index = heapq.heappop(self.ends)
            for name, value in self.finals.pop(index).items():
                self.columns[name][index] = micros(value) if name in TIMESTAMPS else value
            self.busy_instances.discard(self.columns["scope_instance"][index])
            self.cached = None


@pytest.fixture(scope="module")
def simulated() -> tuple[pl.DataFrame, dict[str, Behaviour]]:
    """The runs of three simulated days."""
    behaviours = fleet()
    instances = [InstanceSlot(f"scope-{i}", "managed") for i in range(4)]
    runs = FleetSimulation(behaviours, instances).run(START + timedelta(days=DAYS))
    return runs.with_columns(pl.col("started_at").dt.date().alias("day")), behaviours


def names(behaviours: dict[str, Behaviour], *kinds: str) -> list[str]:
    """The orchestrators with one of these behaviours."""
    return [name for name, b in behaviours.items() if b.kind in kinds]


def days() -> list[date]:
    """The simulated UTC days."""
    return [(START + timedelta(days=d)).date() for d in range(DAYS)]


def test_every_run_finished_and_stayed_in_the_window_and_the_duration_cap(simulated) -> None:
    runs, _ = simulated
    assert runs.height > 500 and runs["outcome"].null_count() == 0
    opens_s = int(BUDGET.schedule_start[:2]) * 3600
    hours = runs["started_at"].dt.hour().cast(pl.Int32)
    assert (hours * 3600 >= opens_s).all()
    assert runs["planned_duration_s"].max() <= BUDGET.max_run_duration_mins * 60


def test_healthy_orchestrators_end_each_day_within_ten_percent_of_their_budget(simulated) -> None:
    runs, behaviours = simulated
    used = (runs.filter(pl.col("outcome") != "unavailable").group_by("orchestrator", "day")
            .agg(pl.col("stream_s").fill_null(0.0).sum().alias("used_s")))
    lookup = {(o, d): s for o, d, s in used.iter_rows()}
    for orchestrator in names(behaviours, "healthy", "flaky"):  # flaky ones catch up after their outage
        for day in days():
            if behaviours[orchestrator].first_seen.date() == day:
                continue  # discovered mid-day: its first day is a part day
            used_s = lookup.get((orchestrator, day), 0.0)
            assert abs(used_s - BUDGET_S) <= TOLERANCE * BUDGET_S, (orchestrator, day, used_s, BUDGET_S)


def test_every_scenario_is_covered_on_every_healthy_orchestrator(simulated) -> None:
    runs, behaviours = simulated
    covered = runs.filter(pl.col("outcome") == "passed").group_by("orchestrator").agg(pl.col("scenario").unique())
    by_orchestrator = {o: set(s) for o, s in covered.iter_rows()}
    for orchestrator in names(behaviours, "healthy", "flaky"):
        assert by_orchestrator[orchestrator] == {s.name for s in MATRIX}, orchestrator


def test_failing_orchestrators_are_blacklisted_after_exactly_five_failures_each_day(simulated) -> None:
    runs, behaviours = simulated
    for orchestrator in names(behaviours, "failing"):
        mine = runs.filter(pl.col("orchestrator") == orchestrator)
        per_day = dict(mine.group_by("day").agg(pl.len()).iter_rows())
        assert per_day == {day: BUDGET.blacklist_after_failures for day in days()}, orchestrator
        assert set(mine["outcome"]) == {"failed"}


def test_unavailable_orchestrators_are_retried_after_the_back_off_and_never_blacklisted(simulated) -> None:
    runs, behaviours = simulated
    for orchestrator in names(behaviours, "flaky"):
        mine = runs.filter(pl.col("orchestrator") == orchestrator).sort("started_at")
        retries = mine.with_columns(pl.col("started_at").shift(-1).alias("next_at")).filter(
            (pl.col("outcome") == "unavailable") & pl.col("next_at").is_not_null())
        waited = (retries["next_at"] - retries["ended_at"]).min()
        assert waited >= timedelta(minutes=BUDGET.unavailable_backoff_mins)
        (outage_end,) = [end for _, end in behaviours[orchestrator].outages]
        after = mine.filter(pl.col("started_at") >= outage_end)
        assert after["outcome"][0] == "passed"
        # retried as soon as the back-off, the next dispatch and a free instance allow
        longest_run = timedelta(seconds=max(s.duration_s for s in MATRIX) + OVERHEAD_S[1] + CLEANUP_S)
        backoff = timedelta(minutes=BUDGET.unavailable_backoff_mins)
        assert after["started_at"][0] - outage_end <= backoff + DISPATCH_EVERY + longest_run
        # more `unavailable` runs that day than a blacklist's worth of failures, yet no blacklist
        outage_day = mine.filter(pl.col("day") == outage_end.date())["outcome"].to_list()
        assert outage_day.count("unavailable") > BUDGET.blacklist_after_failures
        assert after["started_at"][0].date() == outage_end.date()


def test_no_run_starts_while_the_latest_discovery_saw_no_free_capacity(simulated) -> None:
    runs, behaviours = simulated
    backoff = timedelta(minutes=BUDGET.unavailable_backoff_mins)
    sightings = [(name, START + k * DISCOVERY_EVERY) for k in range(DAYS * 6) for name in names(behaviours, "flaky")
                 if behaviours[name].unavailable_at(START + k * DISCOVERY_EVERY)]
    assert len(sightings) == 3  # flaky0 at 00:00 and 04:00 of day one, flaky1 at 12:00 of day two
    for name, seen_at in sightings:
        started = runs.filter((pl.col("orchestrator") == name) & pl.col("started_at").is_between(
            seen_at, seen_at + backoff, closed="left"))
        assert started.is_empty(), (name, seen_at, started)


def test_a_new_orchestrator_is_tested_within_its_first_hour(simulated) -> None:
    runs, behaviours = simulated
    first_run = runs.filter(pl.col("orchestrator") == "0xnewcomer")["started_at"].min()
    assert NEW_AT <= first_run <= NEW_AT + NEW_ORCHESTRATOR_WINDOW


@pytest.mark.parametrize("key", ["orchestrator", "scope_instance"])
def test_no_orchestrator_or_instance_ever_runs_two_runs_at_once(simulated, key: str) -> None:
    runs, _ = simulated
    gaps = runs.sort(key, "started_at").with_columns(
        (pl.col("started_at").shift(-1).over(key) - pl.col("ended_at")).alias("gap"))
    assert gaps["gap"].drop_nulls().min() >= timedelta(0)
    if key == "orchestrator":  # and each orchestrator rests between runs
        assert gaps["gap"].drop_nulls().min() >= timedelta(minutes=BUDGET.min_run_gap_mins)


def test_runs_spread_over_the_window_instead_of_bunching(simulated) -> None:
    runs, behaviours = simulated
    opens_h = int(BUDGET.schedule_start[:2])
    quarter_h = (24 - opens_h) / 4
    steady = [name for name in names(behaviours, "healthy") if behaviours[name].first_seen < START]
    for day in days():
        mine = runs.filter(pl.col("orchestrator").is_in(steady) & (pl.col("day") == day))
        hours = mine["started_at"].dt.hour().cast(pl.Float64) + mine["started_at"].dt.minute() / 60
        shares = mine.with_columns(((hours - opens_h) // quarter_h).alias("quarter")).group_by("quarter").agg(
            pl.col("stream_s").sum() / mine["stream_s"].sum())
        # every quarter of the window gets between half and one and a half times an even share
        assert shares.height == 4, shares
        assert 0.5 * 0.25 < shares["stream_s"].min() and shares["stream_s"].max() < 1.5 * 0.25, (day, shares)
