"""Seeded statistical test of the drift rule on generated lakes: detection rate and false alarms.

Definitions:
- recent window = the 24 h before `now`; baseline window = the 7 days before that. `now` is a UTC
  midnight, so each window is whole UTC days of generated runs.
- a series = one metric of one scenario (every orchestrator pooled) or of one orchestrator x
  scenario; a series-day = one series judged at one `now`.
- noise: every metric is lognormal around its median with sigma = 0.3 (log scale), independent.

Detection: 400 scenarios x 3 orchestrators, 10 runs a day per orchestrator x scenario for 8 days,
first-frame latency x 1.5 on the last day. Each orchestrator x scenario first-frame series (10
recent vs 70 baseline samples) is one trial; the goal is >= 90 % flagged. The scenario series
(30 runs a day) are reported too.

False alarms: 30 days, 10 scenarios x 3 orchestrators, 5 runs a day per orchestrator x scenario
(15 per scenario), no shift; judged at the end of each of the 23 days that have a full 7-day
baseline behind them, all four metrics: 160 series x 23 days. The goal is <= 2 % flagged.

Runs land as Parquet in a temporary lake laid out like analytics/lake.py (one file per UTC day)
and are read back through the `runs` view, as the analyze flow reads them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analytics.drift import compute_drift
from analytics.lake import Lake
from analytics.records import RunRecord, polars_schema

UTC = dt.timezone.utc
END = dt.datetime(2026, 3, 31, tzinfo=UTC)  # a UTC midnight: windows cover whole generated days
SIGMA = 0.3
MEDIANS = {"first_frame_s": 2.0, "load_s": 20.0, "connect_s": 5.0, "fps_steady": 12.0}
DETECTION_SHIFT = 1.5
MIN_DETECTION_RATE = 0.90
MAX_FALSE_ALARM_RATE = 0.02


def simulate_runs(rng: np.random.Generator, *, days: int, scenarios: int, orchestrators: int,
                  runs_per_day: int, last_day_first_frame_factor: float = 1.0) -> pl.DataFrame:
    """`runs_per_day` passed runs per orchestrator x scenario and UTC day, over `days` days up to END."""
    pairs = scenarios * orchestrators
    per_day = pairs * runs_per_day
    day = np.repeat(np.arange(days), per_day)
    pair = np.tile(np.repeat(np.arange(pairs), runs_per_day), days)
    offset_us = ((day + rng.uniform(0.0, 1.0, day.size)) * 86_400e6).astype("timedelta64[us]")
    start = np.datetime64((END - dt.timedelta(days=days)).replace(tzinfo=None), "us")
    metrics = {m: median * np.exp(SIGMA * rng.standard_normal(day.size)) for m, median in MEDIANS.items()}
    metrics["first_frame_s"] *= np.where(day == days - 1, last_day_first_frame_factor, 1.0)
    return pl.DataFrame({
        "run_id": [f"sim-{i:07d}" for i in range(day.size)],
        "scenario": [f"scenario-{p // orchestrators:03d}" for p in pair],
        "orchestrator": [f"orch-{p % orchestrators}" for p in pair],
        "started_at": pl.Series(start + offset_us).dt.replace_time_zone("UTC"),
        **metrics,
    })


def land_generated_runs(lake: Lake, generated: pl.DataFrame) -> None:
    """Write final run rows with the lake's schema, one file per UTC day (as many runs' files would)."""
    schema = polars_schema(RunRecord)
    constants = {"state": "final", "pipeline": "passthrough", "mode": "t2v", "duration_class": "1m",
                 "planned_duration_s": 60.0, "hard_cap_s": 600.0, "scope_instance": "sim",
                 "harness_version": "0.0.0", "outcome": "passed", "input_kind": "none"}
    frame = generated.with_columns(date=pl.col("started_at").dt.date(),
                                   **{k: pl.lit(v) for k, v in constants.items()})
    frame = frame.select([(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                          for c, t in schema.items()])
    for (day,), rows in frame.group_by("date"):
        partition = lake.table_dir("runs") / f"date={day.isoformat()}"
        partition.mkdir(parents=True, exist_ok=True)
        rows.write_parquet(partition / f"generated-{day.isoformat()}.parquet")


def lake_of(path: Path, generated: pl.DataFrame) -> pl.DataFrame:
    """Land the generated runs in a lake at `path` and read them back through the runs view."""
    lake = Lake(path)
    land_generated_runs(lake, generated)
    runs = lake.runs_frame()
    assert runs.height == generated.height
    return runs


@pytest.fixture(scope="module")
def detection_drift(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """First-frame drift on the shifted last day of the detection lake."""
    rng = np.random.default_rng(20260331)
    generated = simulate_runs(rng, days=8, scenarios=400, orchestrators=3, runs_per_day=10,
                              last_day_first_frame_factor=DETECTION_SHIFT)
    runs = lake_of(tmp_path_factory.mktemp("detection"), generated)
    return compute_drift(runs, now=END).filter(pl.col("metric") == "first_frame_s")


@pytest.fixture(scope="module")
def false_alarm_drift(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Every series judged at the end of each day with a full baseline, over 30 unshifted days."""
    rng = np.random.default_rng(7)
    runs = lake_of(tmp_path_factory.mktemp("false-alarms"),
                   simulate_runs(rng, days=30, scenarios=10, orchestrators=3, runs_per_day=5))
    days_judged = 30 - 7
    return pl.concat([compute_drift(runs, now=END - dt.timedelta(days=k)) for k in range(days_judged)])


def rates(drift: pl.DataFrame) -> pl.DataFrame:
    """Per scope: series-days, share flagged, share the plain 20 % rule alone would flag."""
    return drift.group_by("scope").agg(
        series_days=pl.len(),
        insufficient=(pl.col("verdict") == "insufficient_data").sum(),
        flagged=(pl.col("verdict") == "regressed").mean(),
        ratio_rule_alone=(pl.col("change_ratio") > 0.2).mean(),
        median_n_recent=pl.col("n_recent").median(),
        median_n_baseline=pl.col("n_baseline").median(),
    ).sort("scope")


def test_a_fifty_percent_first_frame_shift_is_flagged_in_at_least_90_percent_of_trials(
        detection_drift: pl.DataFrame) -> None:
    measured = rates(detection_drift)
    print(f"\ndetection (+50 % first-frame, sigma {SIGMA}):\n{measured}")
    by_scope = {row["scope"]: row for row in measured.iter_rows(named=True)}
    pairs = by_scope["orchestrator_scenario"]
    assert (pairs["series_days"], pairs["insufficient"]) == (1200, 0)
    assert (pairs["median_n_recent"], pairs["median_n_baseline"]) == (10, 70)  # 10 runs a day
    assert pairs["flagged"] >= MIN_DETECTION_RATE, f"detected {pairs['flagged']:.3f} of shifted series"
    assert by_scope["scenario"]["flagged"] >= MIN_DETECTION_RATE


def test_without_a_shift_at_most_2_percent_of_series_days_are_flagged(false_alarm_drift: pl.DataFrame) -> None:
    measured = rates(false_alarm_drift)
    overall = (false_alarm_drift["verdict"] == "regressed").mean()
    print(f"\nfalse alarms (no shift, sigma {SIGMA}, 5 runs a day per orchestrator x scenario):\n{measured}\n"
          f"overall {overall:.4f} of {false_alarm_drift.height} series-days")
    assert false_alarm_drift.height == (10 + 30) * 4 * 23
    assert (false_alarm_drift["verdict"] == "insufficient_data").sum() == 0  # every series-day was judged
    assert overall <= MAX_FALSE_ALARM_RATE
    for row in measured.iter_rows(named=True):
        assert row["flagged"] <= MAX_FALSE_ALARM_RATE, row
    # The significance test is what keeps it low: the 20 % rule alone flags far more at 5 runs a day.
    pairs = measured.filter(pl.col("scope") == "orchestrator_scenario").row(0, named=True)
    assert pairs["median_n_recent"] == 5
    assert pairs["ratio_rule_alone"] > 5 * MAX_FALSE_ALARM_RATE
