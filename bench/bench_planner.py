"""Planning time for a large fleet: 1,000 orchestrators x 16 scenarios with 7 days of run history.

Run: ``uv run python bench/bench_planner.py [--orchestrators 1000] [--days 7] [--repeats 7]``

The history is what the lake's `runs` view would hold if every orchestrator had used its whole
default budget (20 % of each day in monitored stream) on each of the last 7 days, plus today's
runs up to 14:00 UTC: about 46 runs per orchestrator-day of the default matrix (1, 5 and 15
minute scenarios), 90 % passed, 6 % failed, 3 % unavailable, 1 % aborted, a few still running.
One plan() call sees 64 free instances (48 managed, 16 static), 100 busy orchestrators and 5
just discovered ones.
Goal: one plan() call under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from analytics.coverage import RUNS_SCHEMA, budget_seconds, coverage_table
from config.settings import Budget, load_settings
from tasks.fleet.planner import InstanceSlot, plan

GOAL_S = 1.0
NOW = datetime(2026, 3, 9, 14, 0, tzinfo=timezone.utc)
OUTCOMES = np.array(["passed", "failed", "unavailable", "aborted"])
OUTCOME_WEIGHTS = (0.90, 0.06, 0.03, 0.01)
OVERHEAD_S = 60.0
MANAGED_INSTANCES, STATIC_INSTANCES, BUSY, NEW = 48, 16, 100, 5


def history(orchestrators: list[str], names: list[str], durations_s: np.ndarray, *, days: int,
            budget: Budget, rng: np.random.Generator) -> pl.DataFrame:
    """Runs of every orchestrator over the last ``days`` days and today until NOW, spread over each day."""
    per_day = int(budget_seconds(budget) / durations_s.mean())
    midnight = NOW.replace(hour=0, minute=0)
    day_starts = [midnight - timedelta(days=d) for d in range(days, -1, -1)]
    slots = len(orchestrators) * len(day_starts) * per_day
    orchestrator_index = np.repeat(np.arange(len(orchestrators)), len(day_starts) * per_day)
    day_index = np.tile(np.repeat(np.arange(len(day_starts)), per_day), len(orchestrators))
    slot_in_day = np.tile(np.arange(per_day), len(orchestrators) * len(day_starts))
    offsets_s = (slot_in_day + rng.uniform(0, 0.5, slots)) * (86_400 / per_day)
    scenario_index = (slot_in_day + orchestrator_index) % len(names)  # rotation, shifted per orchestrator
    outcome = rng.choice(OUTCOMES, slots, p=OUTCOME_WEIGHTS)
    started = np.array([d.timestamp() for d in day_starts])[day_index] + offsets_s
    stream_s = np.where(outcome == "passed", durations_s[scenario_index],
                        np.where(outcome == "failed", durations_s[scenario_index] / 2, np.nan))
    ended = started + OVERHEAD_S + np.nan_to_num(stream_s)
    keep = started < NOW.timestamp()
    running = keep & (ended > NOW.timestamp())  # still in flight: no outcome, no end yet
    frame = pl.DataFrame({
        "orchestrator": np.array(orchestrators)[orchestrator_index], "scenario": np.array(names)[scenario_index],
        "outcome": np.where(running, None, outcome), "started_at": started * 1e6,
        "ended_at": np.where(running, np.nan, ended * 1e6), "stream_s": np.where(running, np.nan, stream_s),
        "planned_duration_s": durations_s[scenario_index],
    }, nan_to_null=True)
    timestamps = [pl.col(c).cast(pl.Int64).cast(pl.Datetime("us", "UTC")) for c in ("started_at", "ended_at")]
    return frame.filter(pl.Series(keep)).with_columns(timestamps).select(list(RUNS_SCHEMA))


def instances(orchestrators: list[str]) -> list[InstanceSlot]:
    """Managed instances plus static ones pinned to some orchestrators."""
    managed = [InstanceSlot(f"managed-{i}", "managed") for i in range(MANAGED_INSTANCES)]
    static = [InstanceSlot(f"static-{i}", "static", orchestrators[i * 7]) for i in range(STATIC_INSTANCES)]
    return managed + static


def timed(repeats: int, call) -> list[float]:
    """Wall seconds of each of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return seconds


def main() -> int:
    """Build the history, time coverage_table and plan, print the numbers; exit 1 above the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orchestrators", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    settings = load_settings()
    scenarios, budget = settings.expand_scenarios(), settings.budget
    names = [s.name for s in scenarios]
    orchestrators = [f"0x{i:040x}" for i in range(args.orchestrators)]
    known, new = orchestrators[:-NEW], orchestrators[-NEW:]  # the last few were just discovered
    runs = history(known, names, np.array([s.duration_s for s in scenarios]), days=args.days,
                   budget=budget, rng=np.random.default_rng(7))
    first_seen = {o: NOW - timedelta(days=30) for o in known} | {o: NOW - timedelta(minutes=10) for o in new}
    busy = set(orchestrators[1::10][:BUSY])
    kwargs = dict(orchestrators=orchestrators, first_seen=first_seen, runs=runs, scenarios=scenarios,
                  free_instances=instances(orchestrators), busy_orchestrators=busy, budget=budget, now=NOW)
    assignments = plan(**kwargs)
    table_s = timed(args.repeats, lambda: coverage_table(runs, orchestrators=orchestrators, scenarios=names,
                                                         budget=budget, day=NOW.date(), now=NOW))
    plan_s = timed(args.repeats, lambda: plan(**kwargs))
    print(f"fleet: {len(orchestrators)} orchestrators x {len(scenarios)} scenarios, {runs.height:,} runs "
          f"over {args.days} days + today, {len(kwargs['free_instances'])} free instances")
    print(f"coverage_table: median {statistics.median(table_s) * 1e3:.0f} ms, min {min(table_s) * 1e3:.0f} ms")
    print(f"plan:           median {statistics.median(plan_s) * 1e3:.0f} ms, min {min(plan_s) * 1e3:.0f} ms "
          f"-> {len(assignments)} assignments (goal < {GOAL_S:g} s)")
    for assignment in (assignments[0], assignments[NEW]):
        print(f"  e.g. {assignment.orchestrator[-6:]} {assignment.scenario}: {assignment.reason}")
    return 0 if statistics.median(plan_s) < GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
