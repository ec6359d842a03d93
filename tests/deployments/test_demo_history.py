"""The demo's history step: the generated week it lands, as the lake's views and the analytics see it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from analytics.baselines import compute_baselines
from analytics.drift import compute_drift
from deployments.demo import HISTORY_DAYS, HISTORY_RUNS_PER_DAY, PROFILES, land_demo_history

END = dt.datetime(2026, 3, 31, 9, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Instance:
    """What the history step reads of a fleet instance."""

    orchestrator_address: str
    profile: str


INSTANCES = [Instance(f"0x{index + 1:02d}" + "ab" * 19, profile) for index, profile in enumerate(PROFILES)]


def test_the_history_step_lands_runs_the_runs_view_shows_as_generated(lake, demo_settings):
    history = land_demo_history(lake, INSTANCES, demo_settings, end=END)
    scenarios = len(demo_settings.expand_scenarios())
    assert history.runs == len(PROFILES) * scenarios * HISTORY_DAYS * HISTORY_RUNS_PER_DAY
    assert history.earlier_generated == 0
    rows = lake.query("select generated, count(*), count(distinct orchestrator), count(distinct scenario), "
                      "min(started_at) from runs group by 1").rows
    assert rows == [(True, history.runs, len(PROFILES), scenarios, rows[0][4])]
    assert rows[0][4] > END - dt.timedelta(days=HISTORY_DAYS)
    busy = INSTANCES[PROFILES.index("no_capacity")].orchestrator_address
    outcomes = lake.query(f"select distinct outcome from runs where orchestrator = '{busy}'").rows
    assert outcomes == [("unavailable",)]


def test_the_demo_history_alone_gives_baselines_and_exactly_the_injected_regression(lake, demo_settings):
    history = land_demo_history(lake, INSTANCES, demo_settings, end=END)
    runs = lake.runs_frame()
    assert compute_baselines(runs, now=END).height > 0
    drift = compute_drift(runs, now=END)
    flagged = drift.filter(pl.col("verdict").is_in(["regressed", "improved"]))
    injected = history.injection
    assert flagged.select("scenario", "orchestrator", "metric", "verdict").rows() == [
        (injected.scenario, injected.orchestrator, injected.metric, "regressed")]
    assert flagged["p_value"][0] < 0.01 and flagged["change_ratio"][0] > 0.2


def test_landing_again_counts_the_generated_runs_already_there(lake, demo_settings):
    first = land_demo_history(lake, INSTANCES, demo_settings, end=END)
    again = land_demo_history(lake, INSTANCES, demo_settings, end=END + dt.timedelta(hours=1))
    assert again.earlier_generated == first.runs
    assert lake.query("select count(*) from runs where generated").rows == [(first.runs + again.runs,)]
