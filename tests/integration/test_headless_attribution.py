"""A headless run on a cloud-connected instance is `headless`, and tells nothing about the orchestrator.

Scope 0.2.4 runs a headless session on its own box even while connected to the cloud, so the
run lands `media_path = headless`, and neither it nor a headless run whose figures would move
every number changes the orchestrator's baselines, drift, scores or gauges.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analytics.lake import Lake
from analytics.metrics import analyze_runs, family_samples
from analytics.records import RunRecord
from config.settings import Budget
from tests.integration.sessions import DEFAULT_ORCHESTRATOR, run_on_simulator

pytestmark = pytest.mark.integration

SCENARIO = "longlive_t2v_15s"
HISTORY_RUNS = 14


def relay_history(scenario, now: dt.datetime) -> list[RunRecord]:
    """Passed relay runs of one orchestrator over the last days, with a little spread."""
    rows = []
    for index in range(HISTORY_RUNS):
        started = now - dt.timedelta(hours=6 * (index + 1))
        rows.append(RunRecord(
            run_id=f"{started:%Y%m%dT%H%M%S}-{index:08x}", state="final", scenario=scenario.name,
            pipeline=scenario.pipeline, mode=scenario.mode, duration_class=scenario.duration_class,
            planned_duration_s=scenario.duration_s, hard_cap_s=scenario.hard_cap_s, orchestrator=DEFAULT_ORCHESTRATOR,
            scope_instance="scope-a", harness_version="test", started_at=started, ended_at=started, outcome="passed",
            media_driver="webrtc", media_path="relay", connect_s=0.3 + index / 100, load_s=0.5 + index / 100,
            first_frame_s=0.6 + index / 100, fps_steady=12.0 - index / 100, stream_s=15.0,
        ))
    return rows


def loud_headless(scenario, now: dt.datetime) -> RunRecord:
    """A headless run whose stream figures would move every baseline and score if they counted."""
    return relay_history(scenario, now)[0].model_copy(update={
        "run_id": f"{now:%Y%m%dT%H%M%S}-ffffffff", "started_at": now - dt.timedelta(minutes=5),
        "ended_at": now, "media_driver": "headless", "media_path": "headless", "first_frame_s": 45.0,
        "fps_steady": 1.0, "outcome": "failed", "failure_category": "validation", "failure_phase": "stream",
        "checks_failed": ("fps",),
    })


def analysis_of(runs: pl.DataFrame, now: dt.datetime, scenario: str):
    return analyze_runs(runs, now=now, orchestrators=[DEFAULT_ORCHESTRATOR], scenarios=[scenario],
                        budget=Budget(), cold_start_threshold_s=60.0)


async def test_a_headless_run_changes_no_baseline_score_or_gauge(demo_settings, tmp_path):
    settings = demo_settings.model_copy(update={"media_driver": "headless"})  # the cloud stays enabled
    lake = Lake(tmp_path / "data")
    record, truth = await run_on_simulator(settings, lake, scenario=SCENARIO, duration_s=3.0)
    assert record.media_driver == "headless" and record.media_path == "headless"
    assert truth["connects"], "the instance was cloud-connected during the run"
    now = dt.datetime.now(dt.UTC)
    scenario = settings.scenario(SCENARIO)
    lake.land("runs", [*relay_history(scenario, now), loud_headless(scenario, now)], file_stem="history")
    every_run = lake.runs_frame()
    headless_ids = every_run.filter(pl.col("media_path") == "headless").get_column("run_id")
    assert headless_ids.len() == 2
    relay_only = every_run.filter(~pl.col("run_id").is_in(headless_ids))
    with_headless, without = analysis_of(every_run, now, SCENARIO), analysis_of(relay_only, now, SCENARIO)
    assert with_headless.baselines.height > 0 and with_headless.scores.height > 0
    for name in ("baselines", "drift", "scores"):
        ours, theirs = getattr(with_headless, name), getattr(without, name)
        assert_frame_equal(ours.drop("computed_at"), theirs.drop("computed_at"))
    pushed_at = now
    gauges, reference = family_samples(with_headless, pushed_at=pushed_at), family_samples(without, pushed_at=pushed_at)
    for family in ("runs", "pass_ratio", "pass_ratio_wilson_low", "first_frame_seconds", "steady_fps",
                   "orchestrator_first_frame_seconds", "orchestrator_steady_fps", "failures"):
        assert gauges[family] == reference[family], family
