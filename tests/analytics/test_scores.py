"""Pass rates and their Wilson interval, cold starts, failure breakdown and scores, on literal runs."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl
import pytest

from analytics.records import RunRecord, ScoreRecord, polars_schema
from analytics.scores import (
    FPS_WEIGHT, INSUFFICIENT_EVIDENCE, LATENCY_WEIGHT, MIN_RUNS_TO_RANK, SCORE_BASE, WILSON_Z, cold_starts,
    compute_scores, evidence_label, failure_breakdown, in_window, pass_rates, score_records, wilson_interval,
)

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(days=7)


def run(n: int, **fields: Any) -> dict[str, Any]:
    """A final run row `n` hours before NOW, passed unless told otherwise."""
    started = NOW - dt.timedelta(hours=fields.pop("hours_ago", 1))
    outcome = fields.pop("outcome", "passed")
    failed = outcome == "failed"
    record = dict(
        run_id=f"r{n}", state="final", scenario="longlive_t2v_15s", pipeline="longlive", mode="t2v",
        duration_class="15s", planned_duration_s=15.0, hard_cap_s=300.0, orchestrator="0xa", scope_instance="sim",
        harness_version="test", started_at=started, ended_at=started + dt.timedelta(seconds=30), outcome=outcome,
        failure_category="runner" if failed else None, failure_phase="stream" if failed else None,
        first_frame_s=1.0, load_s=2.0, fps_steady=10.0, stream_s=15.0,
    )
    record.update(fields)
    if record["outcome"] is None:
        record["state"], record["ended_at"] = "started", None
    return RunRecord(**record).model_dump()


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows as a runs frame with the lake's schema."""
    return pl.DataFrame(rows, schema=polars_schema(RunRecord))


@pytest.mark.parametrize(("passed", "runs"), [(0, 1), (1, 1), (1, 2), (7, 10), (9, 10), (50, 100), (3, 30)])
def test_wilson_bounds_solve_the_score_equation(passed, runs):
    """Each bound p of the Wilson interval satisfies (p_hat - p)^2 = z^2 p (1 - p) / n, low <= p_hat <= high."""
    low, high = wilson_interval(passed, runs)
    p_hat = passed / runs
    assert 0.0 <= low <= p_hat <= high <= 1.0
    for bound in (low, high):
        assert (p_hat - bound) ** 2 == pytest.approx(WILSON_Z**2 * bound * (1 - bound) / runs, abs=1e-12)


def test_one_of_one_is_not_a_hundred_percent():
    low, high = wilson_interval(1, 1)
    assert round(low, 2) == 0.21  # quality.md
    assert high == 1.0
    assert wilson_interval(0, 0) is None


def test_window_keeps_finished_runs_started_in_it():
    rows = [run(1, hours_ago=1), run(2, hours_ago=30), run(3, hours_ago=24 * 8), run(4, hours_ago=-1),
            run(5, outcome=None)]
    assert in_window(frame(rows), now=NOW, window=DAY)["run_id"].to_list() == ["r1"]
    assert sorted(in_window(frame(rows), now=NOW, window=WEEK)["run_id"].to_list()) == ["r1", "r2"]


def test_pass_rates_count_verdicts_only():
    rows = ([run(i) for i in range(3)] + [run(10 + i, outcome="failed") for i in range(2)]
            + [run(20, outcome="unavailable"), run(21, outcome="aborted", failure_category="harness")]
            + [run(30, orchestrator="0xb", pipeline="ltx2")])
    rates = pass_rates(frame(rows), now=NOW, window=DAY)
    a = rates.filter(pl.col("orchestrator") == "0xa").row(0, named=True)
    assert (a["runs"], a["passed"], a["failed"]) == (5, 3, 2)
    assert a["pass_rate"] == pytest.approx(3 / 5)
    assert (a["wilson_low"], a["wilson_high"]) == pytest.approx(wilson_interval(3, 5))
    b = rates.filter(pl.col("orchestrator") == "0xb").row(0, named=True)
    assert (b["pipeline"], b["runs"], b["passed"]) == ("ltx2", 1, 1)


def test_vectorised_wilson_matches_the_scalar_one():
    rows, n = [], 0
    for orchestrator, (passed, failed) in {"0xa": (0, 4), "0xb": (4, 0), "0xc": (13, 7), "0xd": (1, 0)}.items():
        for outcome, count in (("passed", passed), ("failed", failed)):
            rows += [run(n := n + 1, orchestrator=orchestrator, outcome=outcome) for _ in range(count)]
    for row in pass_rates(frame(rows), now=NOW, window=DAY).iter_rows(named=True):
        assert (row["wilson_low"], row["wilson_high"]) == pytest.approx(wilson_interval(row["passed"], row["runs"]))


def test_below_ten_verdicts_is_insufficient_evidence_and_unscored():
    rows = ([run(i, orchestrator="0xa") for i in range(MIN_RUNS_TO_RANK - 1)]
            + [run(100 + i, orchestrator="0xb") for i in range(MIN_RUNS_TO_RANK)])
    scores = {r["orchestrator"]: r for r in compute_scores(frame(rows), now=NOW).to_dicts()}
    assert scores["0xa"]["sufficient_evidence"] is False and scores["0xa"]["score"] is None
    assert scores["0xa"]["wilson_low"] is not None  # the interval is still reported
    assert evidence_label(scores["0xa"]) == INSUFFICIENT_EVIDENCE
    assert scores["0xb"]["sufficient_evidence"] is True and scores["0xb"]["score"] is not None


def test_score_follows_the_documented_formula():
    """A twice-slower first frame and half the fps of a peer cost exactly what the docstring says."""
    fast = [run(i, orchestrator="0xa", first_frame_s=1.0, fps_steady=12.0) for i in range(10)]
    slow = [run(100 + i, orchestrator="0xb", first_frame_s=3.0, fps_steady=6.0) for i in range(10)]
    scores = {r["orchestrator"]: r for r in compute_scores(frame(fast + slow), now=NOW).to_dicts()}
    ff_p50, fps_p50 = (1.0 + 3.0) / 2, (12.0 + 6.0) / 2  # the pooled scenario medians (10 + 10 samples)
    low = wilson_interval(10, 10)[0]
    expected = {
        "0xa": (1.0, 1.0),  # faster than typical: capped at 1
        "0xb": (ff_p50 / 3.0, 6.0 / fps_p50),
    }
    for orchestrator, (latency, fps) in expected.items():
        row = scores[orchestrator]
        assert (row["latency_score"], row["fps_score"]) == pytest.approx((latency, fps))
        assert row["score"] == pytest.approx(low * (SCORE_BASE + LATENCY_WEIGHT * latency + FPS_WEIGHT * fps))
    assert list(scores) == ["0xa", "0xb"]  # best first


def test_failures_weigh_through_the_wilson_bound_and_unranked_rows_come_last():
    good = [run(i, orchestrator="0xa") for i in range(12)]
    flaky = [run(100 + i, orchestrator="0xb", outcome="failed" if i % 2 else "passed") for i in range(12)]
    new = [run(200, orchestrator="0xc")]
    ranked = compute_scores(frame(good + flaky + new), now=NOW)
    assert ranked["orchestrator"].to_list() == ["0xa", "0xb", "0xc"]
    flaky_row = ranked.row(1, named=True)
    assert flaky_row["wilson_low"] == pytest.approx(wilson_interval(6, 12)[0])


def test_missing_quality_figures_count_as_zero():
    rows = [run(i, fps_steady=None) for i in range(10)]
    row = compute_scores(frame(rows), now=NOW).row(0, named=True)
    assert row["fps_score"] is None
    assert row["score"] == pytest.approx(wilson_interval(10, 10)[0] * (SCORE_BASE + LATENCY_WEIGHT * 1.0))


def test_runs_without_an_orchestrator_are_not_scored():
    scores = compute_scores(frame([run(1, orchestrator=None)]), now=NOW)
    assert scores.height == 0


def test_scores_have_the_score_record_columns_and_land(lake):
    rows = [run(i) for i in range(3)]
    scores = compute_scores(frame(rows), now=NOW, window_days=3)
    assert scores.columns == list(ScoreRecord.model_fields)
    records = score_records(scores)
    assert records[0].window_days == 3 and records[0].computed_at == NOW
    lake.land("scores", records, file_stem="s1")
    landed = lake.query("SELECT orchestrator, runs, passed, wilson_low FROM scores").dicts()
    assert landed == [{"orchestrator": "0xa", "runs": 3, "passed": 3, "wilson_low": records[0].wilson_low}]


def test_scores_of_no_runs_are_an_empty_typed_frame():
    scores = compute_scores(frame([]), now=NOW)
    assert scores.height == 0 and scores.columns == list(ScoreRecord.model_fields)


def test_cold_starts_use_the_flag_else_the_threshold():
    rows = [run(1, cold_start=True, load_s=5.0), run(2, cold_start=False, load_s=90.0),
            run(3, cold_start=None, load_s=61.0), run(4, cold_start=None, load_s=59.0),
            run(5, cold_start=None, load_s=None, outcome="unavailable"),
            run(6, orchestrator="0xb", cold_start=None, load_s=100.0)]
    result = {r["orchestrator"]: r for r in cold_starts(frame(rows), now=NOW, window=DAY, threshold_s=60.0).to_dicts()}
    assert (result["0xa"]["loads"], result["0xa"]["cold_starts"]) == (4, 2)
    assert result["0xa"]["cold_start_ratio"] == pytest.approx(0.5)
    assert result["0xb"]["cold_start_ratio"] == 1.0


def test_failure_breakdown_by_category_phase_and_pipeline():
    rows = [run(1, outcome="failed"), run(2, outcome="failed"),
            run(3, outcome="failed", failure_category="validation", failure_phase="stream", pipeline="ltx2"),
            run(4, outcome="failed", failure_category="network", failure_phase=None),
            run(5, outcome="unavailable", failure_category="orchestrator", failure_phase="connect"),
            run(6, outcome="failed", hours_ago=48)]
    breakdown = failure_breakdown(frame(rows), now=NOW, window=DAY).to_dicts()
    assert breakdown == [
        {"category": "runner", "phase": "stream", "pipeline": "longlive", "failures": 2},
        {"category": "network", "phase": "unknown", "pipeline": "longlive", "failures": 1},
        {"category": "validation", "phase": "stream", "pipeline": "ltx2", "failures": 1},
    ]
    assert sum(r["failures"] for r in failure_breakdown(frame(rows), now=NOW, window=WEEK).to_dicts()) == 5


def test_wilson_interval_narrows_with_evidence():
    widths = [math.fsum((-lo, hi)) for lo, hi in (wilson_interval(8 * k, 10 * k) for k in (1, 4, 16))]
    assert widths == sorted(widths, reverse=True)
