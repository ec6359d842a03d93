"""The drift rule on literal samples and runs, the drift frame and its reports."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from analytics.drift import (
    DriftRule,
    change_ratio,
    compute_drift,
    drift_records,
    drift_report_json,
    drift_report_markdown,
    judge_series,
)
from analytics.lake import Lake
from analytics.records import DriftRecord, polars_schema
from tests.analytics.test_baselines import NOW, landed_run, run, runs

# Ten evenly spread values around 1.0 (no ties); shifting them moves every sample alike.
BASE = np.linspace(0.9, 1.1, 10)


def test_change_ratio_is_positive_when_worse_in_both_directions() -> None:
    assert change_ratio(1.5, 1.0, "lower") == pytest.approx(0.5)  # latency up 50 %
    assert change_ratio(0.8, 1.0, "lower") == pytest.approx(-0.2)
    assert change_ratio(8.0, 10.0, "higher") == pytest.approx(0.2)  # fps down 20 %: worse
    assert change_ratio(12.0, 10.0, "higher") == pytest.approx(-0.2)
    assert change_ratio(1.0, 0.0, "lower") is None and change_ratio(None, 1.0, "lower") is None


def test_a_large_clear_shift_regresses() -> None:
    recent, baseline = BASE[:6] * 1.5, np.tile(BASE, 3)
    judged = judge_series(recent, baseline, direction="lower")
    assert judged.verdict == "regressed"
    assert judged.change_ratio == pytest.approx(np.median(recent) / np.median(baseline) - 1)
    assert judged.p_value < 0.01 and (judged.n_recent, judged.n_baseline) == (6, 30)


def test_a_large_median_change_without_significance_is_stable() -> None:
    # The recent median is 43 % up, but a third of the recent values sit at the baseline's bottom.
    baseline = np.linspace(1.0, 2.0, 20)
    recent = np.array([1.05, 1.1, 2.1, 2.2, 2.3, 2.4])
    judged = judge_series(recent, baseline, direction="lower")
    assert judged.change_ratio > 0.2 and judged.p_value >= 0.01
    assert judged.verdict == "stable"


def test_a_significant_but_small_change_is_stable() -> None:
    rng = np.random.default_rng(5)
    baseline, recent = rng.normal(10, 0.2, 200), rng.normal(10.5, 0.2, 50)  # +5 %, p tiny
    judged = judge_series(recent, baseline, direction="lower")
    assert judged.p_value < 1e-6 and judged.change_ratio < 0.2
    assert judged.verdict == "stable"


def test_fps_drops_regress_and_rises_improve() -> None:
    baseline = np.tile(BASE * 12.0, 2)
    dropped = judge_series(BASE[:5] * 8.0, baseline, direction="higher")
    assert dropped.verdict == "regressed"
    assert dropped.change_ratio == pytest.approx(1 - np.median(BASE[:5] * 8.0) / np.median(baseline))
    risen = judge_series(BASE[:5] * 16.0, baseline, direction="higher")
    assert risen.verdict == "improved" and risen.change_ratio < -0.2
    assert risen.p_value > 0.99  # the stored p-value tests "worse"
    faster = judge_series(BASE[:5] * 0.5, baseline / 12.0, direction="lower")
    assert faster.verdict == "improved"


@pytest.mark.parametrize(("n_recent", "n_baseline"), [(4, 30), (5, 9), (0, 30)])
def test_too_few_samples_is_insufficient_data(n_recent: int, n_baseline: int) -> None:
    recent, baseline = np.tile(BASE * 3.0, 2)[:n_recent], np.tile(BASE, 4)[:n_baseline]
    judged = judge_series(recent, baseline, direction="lower")
    assert (judged.verdict, judged.p_value) == ("insufficient_data", None)
    assert (judged.n_recent, judged.n_baseline) == (n_recent, n_baseline)
    assert (judged.recent_median is None) == (n_recent == 0)


def test_rule_thresholds_are_parameters() -> None:
    recent, baseline = BASE[4:10] * 1.08, np.tile(BASE, 3)  # +12.8 %, p < 0.001
    assert judge_series(recent, baseline, direction="lower").verdict == "stable"
    assert judge_series(recent, baseline, direction="lower", rule=DriftRule(threshold=0.1)).verdict == "regressed"
    assert judge_series(recent, baseline, direction="lower", rule=DriftRule(min_recent=7)).verdict == (
        "insufficient_data")
    with pytest.raises(ValueError):
        DriftRule(alpha=0.0)
    with pytest.raises(ValueError):
        DriftRule(baseline_days=0)


def day_of_runs(days_ago: float, values: np.ndarray, **fields: Any) -> list[dict[str, Any]]:
    """Runs spread over one day, ending `days_ago` days before NOW."""
    step = 24.0 / len(values)
    return [run(hours_ago=24 * days_ago + step * (i + 0.5), **fields, first_frame_s=float(v))
            for i, v in enumerate(values)]


def test_windows_recent_is_the_last_day_baseline_the_seven_before() -> None:
    rows = [r for day in range(1, 8) for r in day_of_runs(day, BASE[:3])]  # 21 baseline samples
    rows += day_of_runs(0, BASE[:6] * 2)  # recent day, doubled
    rows += day_of_runs(8, BASE * 100)  # older than the baseline window: ignored
    rows.append(run(hours_ago=24, first_frame_s=1000.0))  # exactly 24 h ago: baseline, not recent
    drift = compute_drift(runs(rows), now=NOW).filter(pl.col("metric") == "first_frame_s")
    scenario = drift.filter(pl.col("scope") == "scenario").row(0, named=True)
    assert (scenario["n_recent"], scenario["n_baseline"]) == (6, 22)
    assert scenario["baseline_p50"] == pytest.approx(float(np.median([*np.tile(BASE[:3], 7), 1000.0])))
    assert scenario["verdict"] == "regressed"
    assert drift["scope"].to_list() == ["scenario", "orchestrator_scenario"]


def test_a_series_that_went_silent_is_insufficient_data() -> None:
    rows = [r for day in range(1, 8) for r in day_of_runs(day, BASE[:3], orchestrator="orch-b")]
    drift = compute_drift(runs(rows), now=NOW)
    assert drift.height == 2 and set(drift["verdict"]) == {"insufficient_data"}
    assert drift["n_recent"].to_list() == [0, 0] and drift["recent_median"].null_count() == 2


def test_drift_columns_are_the_drift_record_schema_even_when_empty() -> None:
    expected = polars_schema(DriftRecord)
    assert dict(compute_drift(runs([run(first_frame_s=1.0)]), now=NOW).schema) == expected
    empty = compute_drift(runs([]), now=NOW)
    assert empty.is_empty() and dict(empty.schema) == expected


def mixed_drift() -> pl.DataFrame:
    """Drift with one regression per scope, one improvement and insufficient series."""
    rows = [r for day in range(1, 8) for r in day_of_runs(day, BASE[:3], scenario="t2v", load_s=20.0)]
    rows += day_of_runs(0, BASE[:6] * 1.6, scenario="t2v")
    rows += [r for day in range(1, 8) for r in day_of_runs(day, BASE[:3], scenario="v2v|x")]
    rows += day_of_runs(0, BASE[:6] * 0.5, scenario="v2v|x")
    return compute_drift(runs(rows), now=NOW)


def test_report_json_lists_regressions_first_then_insufficient_counts() -> None:
    report = drift_report_json(mixed_drift())
    assert list(report)[:5] == ["computed_at", "rule", "summary", "regressions", "insufficient_data"]
    assert report["summary"] == {"series": 6, "regressed": 2, "improved": 2, "stable": 0, "insufficient_data": 2}
    regressions = report["regressions"]
    assert {(r["scope"], r["scenario"], r["metric"]) for r in regressions} == {
        ("scenario", "t2v", "first_frame_s"), ("orchestrator_scenario", "t2v", "first_frame_s")}
    assert regressions[0]["change_percent"] == pytest.approx(100 * regressions[0]["change_ratio"], abs=0.01)
    assert regressions[0]["better"] == "lower" and regressions[0]["p_value"] < 0.01
    assert report["insufficient_data"] == {"series": 2, "by_metric": {"load_s": 2},
                                           "by_scope": {"orchestrator_scenario": 1, "scenario": 1}}
    assert report["computed_at"] == NOW.isoformat()
    json.dumps(report, allow_nan=False)  # plain JSON: no NaN, no datetimes


def test_report_markdown_shows_regressions_and_counts() -> None:
    text = drift_report_markdown(mixed_drift())
    assert text.index("## Regressions") < text.index("## Insufficient data") < text.index("## Improvements")
    regression_rows = [line for line in text.splitlines() if line.endswith("|") and "% worse" in line]
    assert len(regression_rows) == 2 and all("| t2v |" in line for line in regression_rows)
    assert "v2v\\|x" in text  # a pipe in a name does not break the table
    assert "2 series. By metric: load_s 2." in text
    quiet = drift_report_markdown(compute_drift(runs([]), now=NOW))
    assert "No regressions." in quiet and "**0 regressed**" in quiet


def test_drift_lands_as_history_and_shows_in_the_view(lake: Lake) -> None:
    for day in range(1, 8):
        for i, value in enumerate(BASE[:3]):
            lake.land_run(landed_run(f"base-{day}-{i}", hours_ago=24 * day + i + 1, first_frame_s=float(value)))
    for i, value in enumerate(BASE[:5] * 2):
        lake.land_run(landed_run(f"recent-{i}", hours_ago=i + 1, first_frame_s=float(value)))
    drift = compute_drift(lake.runs_frame(), now=NOW)
    assert set(drift["verdict"]) == {"regressed"}
    lake.land("drift", drift_records(drift), file_stem="drift-now")
    view = lake.query_frame("SELECT scope, metric, verdict, n_recent, n_baseline FROM drift ORDER BY scope")
    assert view.rows() == [("orchestrator_scenario", "first_frame_s", "regressed", 5, 21),
                           ("scenario", "first_frame_s", "regressed", 5, 21)]
