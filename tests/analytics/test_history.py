"""Generated history: its shape, its marking, and that the analytics find exactly what was injected."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics.baselines import METRICS, compute_baselines
from analytics.drift import DEFAULT_DRIFT_RULE, compute_drift
from analytics.history import (
    HistorySpec,
    Injection,
    OrchestratorShape,
    ScenarioShape,
    generate_history,
    history_records,
    land_history,
    measured_runs,
)
from analytics.records import RunRecord
from analytics.scores import compute_scores

END = dt.datetime(2026, 3, 31, 12, 30, tzinfo=dt.timezone.utc)
# like the demo fleet: one orchestrator among six measured ones cannot move a scenario's pooled median 20 %
ORCHESTRATORS = (
    OrchestratorShape("0x" + "a1" * 20), OrchestratorShape("0x" + "b2" * 20), OrchestratorShape("0x" + "f6" * 20),
    OrchestratorShape("0x" + "07" * 20, first_frame_s=0.6, connect_s=0.4),
    OrchestratorShape("0x" + "c3" * 20, connect_s=1.65, load_s=2.15, first_frame_s=1.65, fps=8.0),
    OrchestratorShape("0x" + "d4" * 20, outcomes=(("failed", 1.0),), failure=("validation", "stream", "black")),
    OrchestratorShape("0x" + "e5" * 20, outcomes=(("unavailable", 1.0),)),
)
BLACK, BUSY = ORCHESTRATORS[-2:]
SCENARIOS = (
    ScenarioShape("longlive_t2v_15s", "longlive", "t2v", 15.0, 12.0, ("longlive",), "15s"),
    ScenarioShape("longlive_v2v_15s", "longlive", "v2v", 15.0, 12.0, ("longlive",), "15s"),
    ScenarioShape("ltx2_t2v_15s", "ltx2", "t2v", 15.0, 10.0, ("ltx2",), "15s", speed=1.5),
    ScenarioShape("longlive_rife_v2v_15s", "longlive+rife", "v2v", 15.0, 24.0, ("longlive", "rife"), "15s"),
)
SLOWER = Injection(orchestrator=ORCHESTRATORS[1].address, scenario="ltx2_t2v_15s", metric="first_frame_s",
                   factor=1.6)


def spec(**changes) -> HistorySpec:
    """A week and a day of the five orchestrators on the four scenarios, the first frame slower on one pair."""
    return HistorySpec(**{"orchestrators": ORCHESTRATORS, "scenarios": SCENARIOS, "end": END,
                          "injections": (SLOWER,), "seed": 3} | changes)


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return generate_history(spec())


def flagged(drift: pl.DataFrame) -> list[tuple]:
    """(scope, scenario, orchestrator, metric, verdict) of every series drift did not call stable."""
    judged = drift.filter(pl.col("verdict").is_in(["regressed", "improved"]))
    return sorted(judged.select("scope", "scenario", "orchestrator", "metric", "verdict").rows())


@pytest.mark.parametrize("injection", [
    SLOWER,
    Injection(orchestrator=ORCHESTRATORS[2].address, scenario="longlive_v2v_15s", metric="load_s", factor=1.6),
    Injection(orchestrator=ORCHESTRATORS[0].address, scenario="longlive_rife_v2v_15s", metric="fps_steady",
              factor=0.7),
], ids=["first_frame", "load_on_the_slow_one", "fps_drop"])
def test_drift_flags_exactly_the_injected_series(injection):
    runs = generate_history(spec(injections=(injection,)))
    drift = compute_drift(runs, now=END)
    assert flagged(drift) == [("orchestrator_scenario", injection.scenario, injection.orchestrator,
                               injection.metric, "regressed")]
    (row,) = drift.filter(pl.col("verdict") == "regressed").iter_rows(named=True)
    assert row["p_value"] < DEFAULT_DRIFT_RULE.alpha
    assert DEFAULT_DRIFT_RULE.threshold < row["change_ratio"] < 2 * abs(injection.factor - 1)


def test_without_an_injection_drift_flags_nothing_and_judges_every_measured_series(history):
    drift = compute_drift(generate_history(spec(injections=())), now=END)
    assert flagged(drift) == []
    assert drift.filter(pl.col("verdict") == "insufficient_data").is_empty()


def test_baselines_have_a_row_per_measured_series_and_metric(history):
    baselines = compute_baselines(history, now=END).filter(pl.col("scope") == "orchestrator_scenario")
    measured = {a.address for a in ORCHESTRATORS if a.outcomes != (("unavailable", 1.0),)}
    assert set(baselines["orchestrator"]) == measured
    full = baselines.filter(pl.col("orchestrator") != BLACK.address)  # failing in the stream: no fps
    assert full.height == (len(measured) - 1) * len(SCENARIOS) * len(METRICS)
    assert full["n"].min() >= 7 * spec().runs_per_day * 0.8  # most of a week of runs per series


def test_every_series_has_its_runs_on_every_day_inside_the_window(history):
    day = (pl.col("started_at") - (END - dt.timedelta(days=spec().days))).dt.total_seconds() // 86_400
    per_day = history.group_by("orchestrator", "scenario", day).len()
    assert set(per_day["len"]) == {spec().runs_per_day}
    assert history.height == len(ORCHESTRATORS) * len(SCENARIOS) * spec().days * spec().runs_per_day
    assert history["started_at"].min() > END - dt.timedelta(days=spec().days)
    assert history["started_at"].max() <= END
    assert history["run_id"].n_unique() == history.height


def test_runs_are_marked_generated_and_valid_lake_rows(history):
    assert history.columns == list(RunRecord.model_fields)
    assert history["generated"].all()
    records = history_records(history.head(50))
    assert all(r.generated and r.state == "final" for r in records)


def test_the_same_seed_gives_the_same_history_and_another_seed_another():
    assert generate_history(spec()).equals(generate_history(spec()))
    assert not generate_history(spec(seed=4))["first_frame_s"].equals(generate_history(spec())["first_frame_s"])


def test_outcomes_follow_the_weights_on_every_day(history):
    healthy = history.filter(pl.col("orchestrator") == ORCHESTRATORS[0].address)
    daily = healthy.group_by(pl.col("started_at").dt.date()).agg(passed=(pl.col("outcome") == "passed").mean())
    assert daily["passed"].min() >= 0.85
    assert set(history.filter(pl.col("orchestrator") == BUSY.address)["outcome"]) == {"unavailable"}


def test_a_failure_leaves_the_figures_of_its_phase_and_later_ones_null(history):
    failed = history.filter(pl.col("outcome") == "failed")
    assert not failed.is_empty()
    by_phase = {"connect": 0, "load": 1, "start": 2, "stream": 3}
    for row in failed.iter_rows(named=True):
        figures = [row[m] for m in ("connect_s", "load_s", "first_frame_s", "fps_steady")]
        cut = by_phase[row["failure_phase"]]
        assert all(v is not None for v in figures[:cut]) and all(v is None for v in figures[cut:]), row
    black = history.filter(pl.col("orchestrator") == BLACK.address)
    assert set(black["checks_failed"].list.first()) == {"black"}
    unmeasured = history.filter(pl.col("outcome").is_in(["unavailable", "aborted"]))
    assert unmeasured.select(pl.col("connect_s", "first_frame_s").is_null().all()).row(0) == (True, True)


def test_the_injected_failure_share_holds_on_the_last_day_only():
    half = Injection(orchestrator=ORCHESTRATORS[0].address, pipeline="longlive", failed_share=0.5)
    runs = generate_history(spec(injections=(half,), runs_per_day=6))
    pair = runs.filter((pl.col("orchestrator") == half.orchestrator) & (pl.col("pipeline") == "longlive"))
    last_day = pair.filter(pl.col("started_at") > END - dt.timedelta(days=1))
    assert (last_day["outcome"] == "failed").mean() == pytest.approx(0.5, abs=0.1)
    assert (pair.filter(pl.col("started_at") <= END - dt.timedelta(days=1))["outcome"] == "failed").mean() < 0.1


def test_measured_runs_leave_generated_ones_out_of_scores(history):
    real = history.tail(30).with_columns(generated=pl.lit(False), orchestrator=pl.lit("0x" + "ff" * 20),
                                         run_id=pl.format("real-{}", pl.int_range(30)))
    mixed = pl.concat([history, real])
    scored = compute_scores(measured_runs(mixed), now=END)
    assert set(scored["orchestrator"]) == {"0x" + "ff" * 20}
    assert measured_runs(mixed.with_columns(generated=pl.lit(None, dtype=pl.Boolean))).height == mixed.height
    assert measured_runs(mixed.drop("generated")).height == mixed.height


def test_the_runs_view_tells_generated_runs_from_measured_ones(lake, history):
    some = history.filter(pl.col("orchestrator") == ORCHESTRATORS[0].address)
    assert land_history(lake, some) == some.height
    measured = history_records(history.head(1))[0].model_copy(update={"run_id": "measured-1", "generated": False})
    lake.land_run(measured)
    counts = dict(lake.query("select generated, count(*) from runs group by 1").rows)
    assert counts == {True: some.height, False: 1}
    # a run landed before the column existed reads as measured
    old = lake.table_dir("runs") / "date=2026-01-01"
    old.mkdir(parents=True)
    pl.DataFrame({"run_id": ["old-1"], "state": ["final"]}).write_parquet(old / "old-1-final.parquet")
    assert lake.query("select generated from runs where run_id = 'old-1'").rows == [(False,)]
