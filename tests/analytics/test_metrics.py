"""The gauge families of metrics.md built from literal runs and literal analytics frames."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analytics.metrics import (
    FAMILIES, PREFIX, SPECS, Analysis, analyze_runs, build_registry, exposition_text, known_orchestrators,
)
from analytics.records import DriftRecord, polars_schema
from analytics.scores import pass_rates, wilson_interval
from config.settings import Budget
from tests.analytics.test_scores import NOW, frame, run

PUSHED_AT = NOW + dt.timedelta(seconds=5)
SCENARIOS = ("longlive_t2v_15s", "ltx2_t2v_15s")
# metrics.md, the contract with the dashboards: family -> label names.
METRICS_MD = {
    "runs": {"orchestrator", "pipeline", "mode", "outcome", "window"},
    "pass_ratio": {"orchestrator", "pipeline", "window"},
    "pass_ratio_wilson_low": {"orchestrator", "pipeline", "window"},
    "failures": {"category", "phase", "pipeline", "window"},
    "first_frame_seconds": {"scenario", "quantile", "window"},
    "pipeline_load_seconds": {"scenario", "quantile", "window"},
    "connect_seconds": {"scenario", "quantile", "window"},
    "steady_fps": {"scenario", "quantile", "window"},
    "orchestrator_first_frame_seconds": {"orchestrator", "scenario", "quantile"},
    "orchestrator_steady_fps": {"orchestrator", "scenario", "quantile"},
    "drift_ratio": {"scenario", "metric"},
    "regression": {"scenario", "metric"},
    "budget_seconds": {"orchestrator", "kind"},
    "coverage_ratio": {"orchestrator"},
    "cold_start_ratio": {"orchestrator"},
    "orchestrators": {"status"},
    "last_run_timestamp_seconds": {"orchestrator"},
    "push_timestamp_seconds": set(),
    "leaderboard_score": {"orchestrator", "region", "model", "window"},
    "live_video_score": {"orchestrator", "region", "model", "window", "ranked"},
    "leaderboard_jobs": {"orchestrator", "region", "model", "window"},
    "events_parity_ratio": {"orchestrator", "window"},
    "events_findings": {"orchestrator", "kind", "window"},
    "events_audited_runs": {"orchestrator", "window"},
}


def analysis_of(rows: list[dict], *, orchestrators=("0xa", "0xb")) -> Analysis:
    """analyze_runs over literal rows with the default budget."""
    runs = frame(rows)
    return analyze_runs(runs, now=NOW, orchestrators=known_orchestrators(runs, orchestrators, now=NOW),
                        scenarios=SCENARIOS, budget=Budget(), cold_start_threshold_s=60.0)


def exposed(analysis: Analysis) -> dict[str, list]:
    """Samples per family (prefix removed) as a Prometheus server would parse the exposition text."""
    text = exposition_text(build_registry(analysis, pushed_at=PUSHED_AT)).decode()
    return {f.name.removeprefix(PREFIX): f.samples for f in text_string_to_metric_families(text)}


def values(samples, **match) -> dict[tuple, float]:
    """{sorted label items: value} of the samples whose labels include `match`."""
    return {tuple(sorted(s.labels.items())): s.value for s in samples
            if all(s.labels.get(k) == v for k, v in match.items())}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """Two orchestrators, two pipelines, every outcome, runs inside and outside the 24 h window."""
    return [
        *(run(i, hours_ago=2 + i) for i in range(4)),
        run(10, outcome="failed", hours_ago=3),
        run(11, outcome="failed", hours_ago=40, failure_category="validation", failure_phase=None),
        run(12, outcome="unavailable", hours_ago=5, first_frame_s=None, load_s=None, fps_steady=None),
        run(13, outcome="aborted", failure_category="harness", hours_ago=6),
        run(20, orchestrator="0xb", pipeline="ltx2", scenario="ltx2_t2v_15s", hours_ago=30, load_s=75.0),
        run(21, orchestrator="0xb", pipeline="ltx2", scenario="ltx2_t2v_15s", hours_ago=1, mode="i2v"),
        run(30, orchestrator=None, hours_ago=1),
        run(40, hours_ago=24 * 9),  # outside every window
    ]


def test_every_family_of_metrics_md_with_its_labels():
    assert {spec.name: set(spec.labels) for spec in FAMILIES} == METRICS_MD


def test_every_family_is_exposed_even_from_an_empty_lake():
    text = exposition_text(build_registry(analysis_of([]), pushed_at=PUSHED_AT)).decode()
    for spec in FAMILIES:
        assert f"# TYPE {spec.full_name} gauge" in text
    families = exposed(analysis_of([]))
    assert families["push_timestamp_seconds"][0].value == PUSHED_AT.timestamp()
    assert values(families["orchestrators"]) == {(("status", s),): (2.0 if s == "active" else 0.0)
                                                 for s in ("active", "blacklisted", "unavailable")}


def test_samples_carry_exactly_their_family_labels(rows):
    for name, samples in exposed(analysis_of(rows)).items():
        for sample in samples:
            assert set(sample.labels) == set(SPECS[name].labels), (name, sample)


def test_run_counts_per_window_equal_the_rows(rows):
    samples = exposed(analysis_of(rows))["runs"]
    for window, hours in (("24h", 24), ("7d", 24 * 7)):
        expected = Counter(
            (r["orchestrator"] or "unknown", r["pipeline"], r["mode"], r["outcome"]) for r in rows
            if NOW - dt.timedelta(hours=hours) < r["started_at"] <= NOW
        )
        got = {(s.labels["orchestrator"], s.labels["pipeline"], s.labels["mode"], s.labels["outcome"]): s.value
               for s in samples if s.labels["window"] == window}
        assert got == {key: float(n) for key, n in expected.items()}


def test_pass_ratio_and_wilson_low_come_from_the_verdicts(rows):
    families = exposed(analysis_of(rows))
    for window, length in (("24h", dt.timedelta(hours=24)), ("7d", dt.timedelta(days=7))):
        for rate in pass_rates(frame(rows), now=NOW, window=length).iter_rows(named=True):
            key = {"orchestrator": rate["orchestrator"] or "unknown", "pipeline": rate["pipeline"], "window": window}
            assert list(values(families["pass_ratio"], **key).values()) == [rate["passed"] / rate["runs"]]
            low = wilson_interval(rate["passed"], rate["runs"])[0]
            assert list(values(families["pass_ratio_wilson_low"], **key).values()) == [pytest.approx(low)]


def test_failures_by_category_and_phase(rows):
    samples = exposed(analysis_of(rows))["failures"]
    assert values(samples, window="24h") == {
        (("category", "runner"), ("phase", "stream"), ("pipeline", "longlive"), ("window", "24h")): 1.0}
    assert values(samples, window="7d", category="validation") == {
        (("category", "validation"), ("phase", "unknown"), ("pipeline", "longlive"), ("window", "7d")): 1.0}


def test_baselines_by_quantile_and_window(rows):
    analysis = analysis_of(rows)
    samples = exposed(analysis)["pipeline_load_seconds"]
    for window, baselines in (("24h", analysis.baselines_24h), ("7d", analysis.baselines)):
        expected = baselines.filter((pl.col("scope") == "scenario") & (pl.col("metric") == "load_s"))
        assert expected.height > 0
        for row in expected.iter_rows(named=True):
            key = {"scenario": row["scenario"], "window": window}
            assert list(values(samples, quantile="0.5", **key).values()) == [row["p50"]]
            assert list(values(samples, quantile="0.95", **key).values()) == [row["p95"]]
    per_orchestrator = values(exposed(analysis)["orchestrator_steady_fps"], orchestrator="0xb", quantile="0.5")
    assert list(per_orchestrator) == [(("orchestrator", "0xb"), ("quantile", "0.5"), ("scenario", "ltx2_t2v_15s"))]


def _drift_row(scenario: str, metric: str, change: float | None, verdict: str, scope="scenario") -> dict:
    return DriftRecord(computed_at=NOW, scope=scope, scenario=scenario, orchestrator=None if scope == "scenario"
                       else "0xa", metric=metric, change_ratio=change, n_recent=5, n_baseline=10,
                       verdict=verdict).model_dump()


def test_drift_ratio_and_regression_from_the_drift_rows(rows):
    drift = pl.DataFrame([
        _drift_row("s1", "first_frame_s", 0.5, "regressed"),
        _drift_row("s1", "fps_steady", -0.3, "improved"),
        _drift_row("s2", "load_s", None, "insufficient_data"),
        _drift_row("s1", "load_s", 0.9, "regressed", scope="orchestrator_scenario"),
    ], schema=polars_schema(DriftRecord))
    families = exposed(dataclasses.replace(analysis_of(rows), drift=drift))
    assert values(families["drift_ratio"]) == {
        (("metric", "first_frame_s"), ("scenario", "s1")): 0.5, (("metric", "fps_steady"), ("scenario", "s1")): -0.3}
    assert values(families["regression"]) == {
        (("metric", "first_frame_s"), ("scenario", "s1")): 1.0, (("metric", "fps_steady"), ("scenario", "s1")): 0.0,
        (("metric", "load_s"), ("scenario", "s2")): 0.0}


def test_orchestrator_statuses_fold_onto_the_three_of_metrics_md(rows):
    statuses = ["active", "cooldown", "over_budget", "blacklisted", "unavailable", "blacklisted"]
    coverage = pl.DataFrame({"orchestrator": [f"0x{i}" for i in range(len(statuses))], "status": statuses,
                             "budget_s": [100.0] * 6, "used_s": [float(i) for i in range(6)],
                             "coverage_ratio": [0.5] * 6})
    families = exposed(dataclasses.replace(analysis_of(rows), coverage=coverage))
    assert values(families["orchestrators"]) == {
        (("status", "active"),): 3.0, (("status", "blacklisted"),): 2.0, (("status", "unavailable"),): 1.0}
    assert values(families["budget_seconds"], orchestrator="0x4") == {
        (("kind", "planned"), ("orchestrator", "0x4")): 100.0, (("kind", "used"), ("orchestrator", "0x4")): 4.0}


def test_today_budget_and_coverage_come_from_the_coverage_table(rows):
    analysis = analysis_of(rows)
    families = exposed(analysis)
    for row in analysis.coverage.iter_rows(named=True):
        key = {"orchestrator": row["orchestrator"]}
        assert list(values(families["coverage_ratio"], **key).values()) == [row["coverage_ratio"]]
        assert list(values(families["budget_seconds"], kind="used", **key).values()) == [row["used_s"]]
    assert set(analysis.coverage["orchestrator"]) == {"0xa", "0xb"}


def test_cold_start_ratio_and_last_run(rows):
    families = exposed(analysis_of(rows))
    # 0xb: one load of 75 s (cold) and one of 2 s in the 7 days
    assert values(families["cold_start_ratio"], orchestrator="0xb") == {(("orchestrator", "0xb"),): 0.5}
    last = max(r["ended_at"] for r in rows if r["orchestrator"] == "0xa")
    assert values(families["last_run_timestamp_seconds"], orchestrator="0xa") == {
        (("orchestrator", "0xa"),): last.timestamp()}


def test_known_orchestrators_are_the_discovered_and_the_recently_run(rows):
    gone = run(99, orchestrator="0xgone", hours_ago=24 * 8)
    assert known_orchestrators(frame([*rows, gone]), ["0xz"], now=NOW) == ["0xa", "0xb", "0xz"]
    analysis = analysis_of([*rows, gone], orchestrators=("0xz",))
    assert analysis.computed_at == NOW
    assert set(analysis.coverage["orchestrator"]) == {"0xa", "0xb", "0xz"}


def test_exposition_is_deterministic(rows):
    analysis = analysis_of(rows)
    assert exposition_text(build_registry(analysis, pushed_at=PUSHED_AT)) == exposition_text(
        build_registry(analysis, pushed_at=PUSHED_AT))


def _board_row(window: str, orchestrator: str, *, jobs: int, score: float, live: float | None,
               ranked: bool, region: str = "FRA", model: str = "longlive") -> dict:
    """One row of Leaderboard.score_table (the columns the gauges read, plus a few they ignore)."""
    return {"window": window, "model": model, "pipeline": "live-video-to-video", "orchestrator": orchestrator,
            "region": region, "jobs": jobs, "unavailable": 1, "success_rate": 0.9, "score": score,
            "live_video_score": live, "live_video_jobs": jobs, "ranked": ranked}


@pytest.fixture(scope="module")
def board() -> pl.DataFrame:
    """A literal leaderboard score table: ranked, unranked, no live score, unavailable only; two windows."""
    return pl.DataFrame([
        _board_row("24h", "0xa", jobs=12, score=0.97, live=0.81, ranked=True),
        _board_row("24h", "0xb", jobs=3, score=0.5, live=0.4, ranked=False, region="GLOBAL"),
        _board_row("7d", "0xa", jobs=30, score=0.95, live=0.8, ranked=True),
        _board_row("7d", "0xc", jobs=4, score=0.7, live=None, ranked=False, model="ltx2"),  # posted stats only
        _board_row("7d", "0xd", jobs=0, score=0.0, live=None, ranked=False),  # unavailable runs only
    ])


def test_an_analysis_without_a_leaderboard_exposes_its_families_empty(rows):
    analysis = analysis_of(rows)
    assert analysis.leaderboard.is_empty()
    families = exposed(analysis)
    assert [families[name] for name in ("leaderboard_score", "live_video_score", "leaderboard_jobs")] == [[], [], []]


def test_leaderboard_score_and_jobs_per_orchestrator_region_model_window(rows, board):
    families = exposed(dataclasses.replace(analysis_of(rows), leaderboard=board))

    def key(orchestrator, window, region="FRA", model="longlive"):
        return (("model", model), ("orchestrator", orchestrator), ("region", region), ("window", window))

    assert values(families["leaderboard_score"]) == {
        key("0xa", "24h"): 0.97, key("0xb", "24h", region="GLOBAL"): 0.5, key("0xa", "7d"): 0.95,
        key("0xc", "7d", model="ltx2"): 0.7}  # 0xd has no job, so no score
    assert values(families["leaderboard_jobs"]) == {
        key("0xa", "24h"): 12.0, key("0xb", "24h", region="GLOBAL"): 3.0, key("0xa", "7d"): 30.0,
        key("0xc", "7d", model="ltx2"): 4.0, key("0xd", "7d"): 0.0}


def test_live_video_score_says_whether_it_is_ranked(rows, board):
    families = exposed(dataclasses.replace(analysis_of(rows), leaderboard=board))

    def key(orchestrator, window, ranked, region="FRA"):
        return (("model", "longlive"), ("orchestrator", orchestrator), ("ranked", ranked), ("region", region),
                ("window", window))

    assert values(families["live_video_score"]) == {
        key("0xa", "24h", "true"): 0.81, key("0xb", "24h", "false", region="GLOBAL"): 0.4,
        key("0xa", "7d", "true"): 0.8}  # no live-video score: no sample


def test_analyze_runs_keeps_the_leaderboard_it_is_given(board):
    analysis = analyze_runs(frame([]), now=NOW, orchestrators=[], scenarios=SCENARIOS, budget=Budget(),
                            cold_start_threshold_s=60.0, leaderboard=board)
    assert analysis.leaderboard.equals(board)


def _audited(n: int, source: str | None, findings: tuple[str, ...] = (), **fields) -> dict:
    """A run whose events came from `source`: complete without findings, null completeness without a source."""
    complete = None if source in (None, "none") else not findings
    return run(n, events_source=source, events_findings=findings, events_complete=complete,
               events_seen=None if complete is None else 9, **fields)


@pytest.fixture(scope="module")
def audited_rows() -> list[dict]:
    """Runs of both orchestrators with and without an events source, complete and with findings."""
    return [
        _audited(50, "kafka", hours_ago=2),
        _audited(51, "kafka", ("missing: stream_heartbeat", "missing: session_closed", "late: stream_stopped 9 s"),
                 hours_ago=3),
        _audited(52, "file", ("out_of_order: session_created before pipeline_loaded", "garbled"), hours_ago=4,
                 outcome="failed"),
        _audited(53, "none", hours_ago=2),  # no source: neither complete nor a finding
        _audited(54, None, hours_ago=2),  # a row older than the audit
        _audited(55, "kafka", hours_ago=30),  # 7 days only
        _audited(56, "kafka", ("missing: playback_ready",), hours_ago=2, media_path="local"),  # no verdict on 0xa
        _audited(57, "kafka", ("duplicated: stream_started x2",), hours_ago=2, orchestrator=None),
        _audited(58, "kafka", hours_ago=24 * 9),  # outside every window
        _audited(60, "kafka", hours_ago=1, orchestrator="0xb"),
    ]


def test_events_parity_ratio_and_audited_runs_count_only_runs_with_a_source(audited_rows):
    families = exposed(analysis_of(audited_rows))
    assert values(families["events_audited_runs"]) == {
        (("orchestrator", "0xa"), ("window", "24h")): 3.0, (("orchestrator", "0xb"), ("window", "24h")): 1.0,
        (("orchestrator", "0xa"), ("window", "7d")): 4.0, (("orchestrator", "0xb"), ("window", "7d")): 1.0}
    assert values(families["events_parity_ratio"]) == {
        (("orchestrator", "0xa"), ("window", "24h")): pytest.approx(1 / 3),
        (("orchestrator", "0xb"), ("window", "24h")): 1.0,
        (("orchestrator", "0xa"), ("window", "7d")): 0.5, (("orchestrator", "0xb"), ("window", "7d")): 1.0}


def test_events_findings_count_runs_per_kind_with_every_kind_present(audited_rows):
    samples = exposed(analysis_of(audited_rows))["events_findings"]
    kinds = {"missing", "duplicated", "out_of_order", "null_ids", "mismatched_ids", "late", "ttff_disagrees",
             "fps_disagrees"}
    found = {s.labels["kind"]: s.value for s in samples if s.labels["orchestrator"] == "0xa"
             and s.labels["window"] == "24h"}
    # r51's two missing events are one run; r52's unparseable finding is `unknown`
    assert found == dict.fromkeys(kinds, 0.0) | {"missing": 1.0, "late": 1.0, "out_of_order": 1.0, "unknown": 1.0}
    assert {s.labels["kind"]: s.value for s in samples if s.labels["orchestrator"] == "0xb"
            and s.labels["window"] == "7d"} == dict.fromkeys(kinds, 0.0)
    assert {s.labels["orchestrator"] for s in samples} == {"0xa", "0xb"}  # no run without one is counted


def test_runs_without_any_events_source_expose_no_event_samples(rows):
    families = exposed(analysis_of(rows))
    assert [families[name] for name in ("events_parity_ratio", "events_audited_runs", "events_findings")] == [
        [], [], []]
