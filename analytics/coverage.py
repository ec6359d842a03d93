"""Coverage and budget per orchestrator and UTC day, derived from the lake's runs only.

Nothing here is remembered between calls: budget use, blacklists, cool-downs and back-offs
are recomputed from the `runs` view (final state per run) every time, so a restart of the
harness, or a second harness process landing into the same lake, sees the same answer.

Counting rules (quality.md):
- the budget is `daily_percent` % of 86,400 seconds of monitored stream per UTC day;
- a run belongs to the UTC day it started on; `unavailable` runs use no budget;
- which outcomes are the orchestrator's is decided by analytics/attribution.py alone: the
  failure streak counts the day's trailing failures held against the orchestrator after its
  last passed run; every other run (`unavailable`, `aborted`, a failure in `prepare` or of the
  harness, a stream failure of a local session) neither extends nor breaks it, and the new UTC
  day starts a new streak, which is what lifts a blacklist;
- a scenario is covered by a run that is a verdict on the orchestrator's streaming;
- cool-down and back-off look at every run, not only the day's: a run that ended a minute
  before midnight still cools its orchestrator down after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

import polars as pl

from analytics.attribution import AGAINST, ATTRIBUTION_COLUMNS, VERDICT, with_attribution
from analytics.records import as_utc
from config.settings import Budget

SECONDS_PER_DAY = 86_400.0
OUTCOMES = ("passed", "failed", "unavailable", "aborted")
# The columns of the lake's `runs` view this module reads; any other column is ignored.
RUNS_SCHEMA: dict[str, pl.DataType] = {
    "orchestrator": pl.String(),
    "scenario": pl.String(),
    "outcome": pl.String(),
    "started_at": pl.Datetime("us", "UTC"),
    "ended_at": pl.Datetime("us", "UTC"),
    "stream_s": pl.Float64(),
    "planned_duration_s": pl.Float64(),
}
# Read when present (null when absent): what the attribution rule needs.
OPTIONAL_SCHEMA: dict[str, pl.DataType] = {name: pl.String() for name in ATTRIBUTION_COLUMNS}
_SCHEMA = {**RUNS_SCHEMA, **OPTIONAL_SCHEMA}
_UTC_TYPE = pl.Datetime("us", "UTC")
# The columns of coverage_table, in order (docs/interfaces: one row per orchestrator and UTC day).
COVERAGE_COLUMNS = (
    "orchestrator", "date", "budget_s", "used_s", "runs", "passed", "failed", "unavailable", "aborted",
    "scenarios_covered", "scenarios_due", "coverage_ratio", "consecutive_failures", "blacklisted",
    "last_run_ended_at", "cooling_down", "last_unavailable_at", "backing_off", "over_budget", "status",
    # beyond the shared interface: what a planner needs to see runs still in flight and new orchestrators
    "running", "reserved_s", "last_run_started_at",
)
_DAY_COUNTS = ("runs", *OUTCOMES, "consecutive_failures", "scenarios_covered")
# `running` is counted over every day: a run started yesterday may still be running.
_COUNT_COLUMNS = (*_DAY_COUNTS, "running")


def budget_seconds(budget: Budget) -> float:
    """Seconds of monitored stream one orchestrator may use per UTC day."""
    return budget.daily_percent / 100.0 * SECONDS_PER_DAY


def normalised_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """RUNS_SCHEMA and OPTIONAL_SCHEMA columns typed, times in UTC, addresses lowercase; no orchestrator-less rows."""
    missing = [name for name in RUNS_SCHEMA if name not in runs.columns]
    if missing:
        raise ValueError(f"runs frame lacks columns {missing}")
    if dict(runs.schema) != _SCHEMA:  # already normalised frames pass through untouched
        runs = runs.select([_typed(name, runs.schema[name]) if name in runs.columns
                            else pl.lit(None, dtype).alias(name) for name, dtype in _SCHEMA.items()])
    runs = runs.with_columns(pl.col("orchestrator").str.to_lowercase())  # one orchestrator, one key
    return runs.filter(pl.col("orchestrator").is_not_null()) if runs["orchestrator"].null_count() else runs


def _typed(name: str, dtype: pl.DataType) -> pl.Expr:
    """One column cast to its RUNS_SCHEMA type; naive timestamps are taken to be UTC (as records.as_utc does)."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        in_utc = column.dt.replace_time_zone("UTC") if dtype.time_zone is None else column.dt.convert_time_zone("UTC")
        return in_utc.cast(_UTC_TYPE)
    return column.cast(_SCHEMA[name])


def coverage_table(runs: pl.DataFrame, *, orchestrators: Sequence[str], scenarios: Sequence[str],
                   budget: Budget, day: date, now: datetime,
                   no_capacity_at: Mapping[str, datetime] | None = None) -> pl.DataFrame:
    """One row per orchestrator (in the given order) with its budget, use, coverage and state for UTC ``day``.

    ``no_capacity_at``: when discovery last saw an orchestrator without free capacity (capacity 0,
    capacity in use); it backs off from then as after an `unavailable` run.
    """
    runs = normalised_runs(runs)
    names = list(dict.fromkeys(o.lower() for o in orchestrators))
    base = pl.DataFrame({"orchestrator": names}, schema={"orchestrator": pl.String()})
    table = (
        base.join(_day_stats(runs, day, scenarios), on="orchestrator", how="left", maintain_order="left")
        .join(_lifetime_stats(runs), on="orchestrator", how="left", maintain_order="left")
        .join(_seen_full(no_capacity_at or {}), on="orchestrator", how="left", maintain_order="left")
        .with_columns(pl.col(_COUNT_COLUMNS).fill_null(0), pl.col("used_s", "reserved_s").fill_null(0.0),
                      pl.max_horizontal("last_unavailable_at", "seen_full_at").alias("last_unavailable_at"))
        .drop("seen_full_at")
    )
    return _with_states(table, budget=budget, day=day, now=as_utc(now), scenarios_due=len(set(scenarios)))


def _seen_full(no_capacity_at: Mapping[str, datetime]) -> pl.DataFrame:
    """`orchestrator`, `seen_full_at`: discovery's sightings without free capacity."""
    columns = {"orchestrator": [a.lower() for a in no_capacity_at],
               "seen_full_at": [as_utc(t) for t in no_capacity_at.values()]}
    return pl.DataFrame(columns, schema={"orchestrator": pl.String(), "seen_full_at": _UTC_TYPE})


def _day_stats(runs: pl.DataFrame, day: date, scenarios: Sequence[str]) -> pl.DataFrame:
    """Counts, stream seconds, coverage and the failure streak of the runs started on ``day``."""
    outcome = pl.col("outcome")
    verdict = pl.col(VERDICT).is_not_null()
    # Rows stay in start order inside each group, so the reversed cumulative sum below counts
    # the orchestrator's failures after its last pass: the trailing failure streak.
    counted = (outcome == "passed") | pl.col(AGAINST)
    streak = ((outcome.filter(counted) == "passed").cum_sum(reverse=True) == 0).sum()
    return (
        with_attribution(runs.filter(pl.col("started_at").dt.date() == day))
        .sort("started_at")
        .group_by("orchestrator")
        .agg(
            pl.len().alias("runs"),
            *[(outcome == name).sum().alias(name) for name in OUTCOMES],
            pl.when(outcome == "unavailable").then(0.0).otherwise(pl.col("stream_s")).fill_null(0.0).sum()
            .alias("used_s"),
            pl.col("planned_duration_s").filter(outcome.is_null()).sum().alias("reserved_s"),
            pl.col("scenario").filter(verdict & pl.col("scenario").is_in(list(scenarios))).n_unique()
            .alias("scenarios_covered"),
            streak.alias("consecutive_failures"),
        )
        .with_columns(pl.col(_DAY_COUNTS).cast(pl.Int64), pl.col("used_s", "reserved_s").cast(pl.Float64))
    )


def _lifetime_stats(runs: pl.DataFrame) -> pl.DataFrame:
    """Per orchestrator over every run: when the last run started and ended, the last `unavailable`, runs open."""
    outcome = pl.col("outcome")
    return runs.group_by("orchestrator").agg(
        pl.col("started_at").max().alias("last_run_started_at"),
        pl.col("ended_at").max().alias("last_run_ended_at"),
        # when the harness learnt there was no capacity: the end of that run (its start if it has none)
        pl.coalesce("ended_at", "started_at").filter(outcome == "unavailable").max().alias("last_unavailable_at"),
        outcome.is_null().sum().cast(pl.Int64).alias("running"),
    )


def _with_states(table: pl.DataFrame, *, budget: Budget, day: date, now: datetime,
                 scenarios_due: int) -> pl.DataFrame:
    """Budget, coverage ratio, blacklist, cool-down, back-off and the one-word status."""
    budget_s = budget_seconds(budget)
    gap = timedelta(minutes=budget.min_run_gap_mins)
    backoff = timedelta(minutes=budget.unavailable_backoff_mins)
    # Compared with cut-offs rather than `now < last + gap`: Polars 2.1 returns one row for
    # `duration + column` when a left join left the column all null.
    cooled_at = pl.lit(now - gap).cast(_UTC_TYPE)
    backed_off_at = pl.lit(now - backoff).cast(_UTC_TYPE)
    table = table.with_columns(
        pl.lit(day).alias("date"),
        pl.lit(budget_s).alias("budget_s"),
        pl.lit(scenarios_due).cast(pl.Int64).alias("scenarios_due"),
        (pl.col("scenarios_covered") / scenarios_due if scenarios_due else pl.lit(None, pl.Float64))
        .alias("coverage_ratio"),
        (pl.col("consecutive_failures") >= budget.blacklist_after_failures).alias("blacklisted"),
        (pl.col("last_run_ended_at") > cooled_at).fill_null(False).alias("cooling_down"),
        (pl.col("last_unavailable_at") > backed_off_at).fill_null(False).alias("backing_off"),
        (pl.col("used_s") >= budget_s).alias("over_budget"),
    )
    status = (
        pl.when("blacklisted").then(pl.lit("blacklisted"))
        .when("backing_off").then(pl.lit("unavailable"))
        .when("over_budget").then(pl.lit("over_budget"))
        .when("cooling_down").then(pl.lit("cooldown"))
        .otherwise(pl.lit("active"))
    )
    return table.with_columns(status.alias("status")).select(COVERAGE_COLUMNS)

