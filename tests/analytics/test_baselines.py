"""Rolling baselines on literal runs: windows, samples, scopes, quantiles and landing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from analytics.baselines import METRIC_DIRECTIONS, baseline_records, compute_baselines, metric_samples
from analytics.lake import Lake
from analytics.records import BaselineRecord, RunRecord, polars_schema

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RUN_SCHEMA = {"scenario": pl.String, "orchestrator": pl.String, "outcome": pl.String, "failure_category": pl.String,
              "started_at": pl.Datetime("us", "UTC"), **{m: pl.Float64 for m in METRIC_DIRECTIONS}}


def run(*, hours_ago: float = 1.0, scenario: str = "t2v", orchestrator: str | None = "orch-a",
        outcome: str = "passed", failure_category: str | None = None, **metrics: float | None) -> dict[str, Any]:
    """One runs-view row; metrics not given are null."""
    return {"scenario": scenario, "orchestrator": orchestrator, "outcome": outcome,
            "failure_category": failure_category, "started_at": NOW - dt.timedelta(hours=hours_ago),
            **{m: metrics.get(m) for m in METRIC_DIRECTIONS}}


def runs(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A runs frame with the columns the analytics read."""
    return pl.DataFrame(rows, schema=RUN_SCHEMA)


def row_of(baselines: pl.DataFrame, scope: str, metric: str, orchestrator: str | None = None,
           scenario: str = "t2v") -> dict[str, Any]:
    """The one baseline row of a series."""
    key = (pl.col("scope") == scope) & (pl.col("metric") == metric) & (pl.col("scenario") == scenario)
    key &= pl.col("orchestrator").is_null() if orchestrator is None else pl.col("orchestrator") == orchestrator
    matches = baselines.filter(key)
    assert matches.height == 1, matches
    return matches.row(0, named=True)


def test_p50_and_p95_interpolate_and_count_samples() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    frame = runs([run(hours_ago=i + 1, first_frame_s=v) for i, v in enumerate(values)])
    row = row_of(compute_baselines(frame, now=NOW), "scenario", "first_frame_s")
    # linear interpolation: P50 at position 4.5 -> 5.5; P95 at position 8.55 -> 9.55 (not the max, 10)
    assert (row["p50"], row["p95"], row["n"]) == (pytest.approx(5.5), pytest.approx(9.55), 10)
    assert (row["window_days"], row["computed_at"], row["date"]) == (7, NOW, NOW.date())


def test_window_is_the_last_seven_days_up_to_now() -> None:
    frame = runs([
        run(hours_ago=0, load_s=1.0),  # exactly now: inside
        run(hours_ago=7 * 24 - 0.01, load_s=2.0),  # just inside
        run(hours_ago=7 * 24, load_s=100.0),  # exactly 7 days ago: outside (half-open window)
        run(hours_ago=-1, load_s=100.0),  # after now: not yet
    ])
    row = row_of(compute_baselines(frame, now=NOW), "scenario", "load_s")
    assert (row["n"], row["p50"]) == (2, pytest.approx(1.5))
    shorter = row_of(compute_baselines(frame, now=NOW, window_days=1), "scenario", "load_s")
    assert (shorter["n"], shorter["window_days"]) == (1, 1)


def test_samples_come_from_runs_with_a_verdict_not_harness_failures() -> None:
    frame = runs([
        run(outcome="passed", connect_s=1.0),
        run(outcome="failed", failure_category="validation", connect_s=2.0),  # its connect phase completed
        run(outcome="failed", failure_category="harness", connect_s=50.0),  # the harness's own bug
        run(outcome="unavailable", connect_s=60.0),
        run(outcome="aborted", connect_s=70.0),
    ])
    row = row_of(compute_baselines(frame, now=NOW), "scenario", "connect_s")
    assert (row["n"], row["p50"]) == (2, pytest.approx(1.5))


def test_each_metric_counts_its_own_measured_values() -> None:
    frame = runs([
        run(first_frame_s=1.0, load_s=10.0, fps_steady=12.0),
        run(first_frame_s=2.0, load_s=None, fps_steady=float("nan")),  # load never completed; nan is no sample
        run(first_frame_s=3.0, load_s=30.0, fps_steady=14.0),
    ])
    baselines = compute_baselines(frame, now=NOW)
    counts = {m: row_of(baselines, "scenario", m)["n"] for m in ("first_frame_s", "load_s", "fps_steady")}
    assert counts == {"first_frame_s": 3, "load_s": 2, "fps_steady": 2}
    assert baselines.filter(pl.col("metric") == "connect_s").is_empty()  # never measured: no row


def test_scenario_scope_pools_orchestrators_and_pairs_keep_them_apart() -> None:
    frame = runs([
        run(orchestrator="orch-a", first_frame_s=1.0), run(orchestrator="orch-a", first_frame_s=3.0),
        run(orchestrator="orch-b", first_frame_s=10.0),
        run(orchestrator=None, first_frame_s=20.0),  # counts for the scenario only
        run(scenario="v2v", orchestrator="orch-a", first_frame_s=5.0),
    ])
    baselines = compute_baselines(frame, now=NOW).filter(pl.col("metric") == "first_frame_s")
    assert row_of(baselines, "scenario", "first_frame_s")["n"] == 4
    assert row_of(baselines, "scenario", "first_frame_s")["p50"] == pytest.approx(6.5)
    assert row_of(baselines, "orchestrator_scenario", "first_frame_s", "orch-a")["p50"] == pytest.approx(2.0)
    assert row_of(baselines, "orchestrator_scenario", "first_frame_s", "orch-b")["n"] == 1
    assert row_of(baselines, "orchestrator_scenario", "first_frame_s", "orch-a", scenario="v2v")["n"] == 1
    keys = baselines.select("scope", "scenario", "orchestrator").rows()
    assert keys == [("scenario", "t2v", None), ("scenario", "v2v", None),
                    ("orchestrator_scenario", "t2v", "orch-a"), ("orchestrator_scenario", "t2v", "orch-b"),
                    ("orchestrator_scenario", "v2v", "orch-a")]


def test_columns_are_exactly_the_baseline_record_schema_even_when_empty() -> None:
    expected = polars_schema(BaselineRecord)
    assert dict(compute_baselines(runs([run(first_frame_s=1.0)]), now=NOW).schema) == expected
    empty = compute_baselines(runs([]), now=NOW)
    assert empty.is_empty() and dict(empty.schema) == expected


def test_naive_timestamps_are_utc() -> None:
    frame = runs([run(hours_ago=2, first_frame_s=1.0)]).with_columns(pl.col("started_at").dt.replace_time_zone(None))
    naive_now = NOW.replace(tzinfo=None)
    samples = metric_samples(frame, since=naive_now - dt.timedelta(hours=3), until=naive_now)
    assert samples.filter(pl.col("metric") == "first_frame_s").height == 2  # both scopes
    assert compute_baselines(frame, now=naive_now)["computed_at"][0] == NOW


def test_refuses_a_frame_without_the_needed_columns_and_bad_windows() -> None:
    with pytest.raises(ValueError, match="fps_steady"):
        compute_baselines(runs([run()]).drop("fps_steady"), now=NOW)
    with pytest.raises(ValueError):
        compute_baselines(runs([run()]), now=NOW, window_days=0)


def test_metrics_are_run_columns_with_a_direction() -> None:
    assert set(METRIC_DIRECTIONS) <= set(RunRecord.model_fields)
    assert set(METRIC_DIRECTIONS.values()) == {"lower", "higher"}
    assert METRIC_DIRECTIONS["fps_steady"] == "higher"


def landed_run(run_id: str, hours_ago: float, first_frame_s: float, outcome: str = "passed") -> RunRecord:
    """A final run row for the lake."""
    started = NOW - dt.timedelta(hours=hours_ago)
    return RunRecord(run_id=run_id, state="final", scenario="t2v", pipeline="passthrough", mode="t2v",
                     duration_class="1m", planned_duration_s=60, hard_cap_s=600, orchestrator="orch-a",
                     scope_instance="local", harness_version="0.1.0", started_at=started,
                     ended_at=started + dt.timedelta(minutes=2), outcome=outcome, first_frame_s=first_frame_s)


def test_baselines_from_the_lake_land_as_history_and_show_in_the_view(lake: Lake) -> None:
    for i, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        lake.land_run(landed_run(f"run-{i}", hours_ago=10 * i + 1, first_frame_s=value))
    lake.land_run(landed_run("run-gone", hours_ago=3, first_frame_s=99.0, outcome="unavailable"))
    baselines = compute_baselines(lake.runs_frame(), now=NOW)
    assert row_of(baselines, "scenario", "first_frame_s")["p50"] == pytest.approx(2.5)
    earlier = compute_baselines(lake.runs_frame(), now=NOW - dt.timedelta(days=1))
    lake.land("baselines", baseline_records(earlier), file_stem="baselines-earlier")
    lake.land("baselines", baseline_records(baselines), file_stem="baselines-now")
    latest = lake.query_frame("SELECT * FROM baselines ORDER BY scope, metric")
    assert latest.height == baselines.height and set(latest["computed_at"]) == {NOW}
    history = lake.query_frame("SELECT DISTINCT computed_at FROM baselines_history")
    assert history.height == 2
    assert latest.filter(pl.col("scope") == "scenario")["n"].to_list() == [4]
