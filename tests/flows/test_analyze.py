"""The analyze flow's pieces without Prefect: the leaderboard table reaches the analysis and the summary."""

from __future__ import annotations

import datetime as dt

from analytics.lake import Lake
from analytics.metrics import family_samples
from flows.analyze import analysis_summary, analyze_snapshot, read_snapshot, score_leaderboard
from tasks.publish.pushgateway import PublishResult
from tests.analytics.leaderboard.test_leaderboard_board import ORCH_A, ORCH_B, run
from tests.conftest import DEMO_CONFIG

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
PUBLISHED = PublishResult(target="file", ok=True, attempts=1, location="metrics.prom", grouping_key={})


def test_the_leaderboard_of_the_lake_reaches_the_gauges_and_the_summary(lake: Lake):
    ended = NOW - dt.timedelta(hours=1)
    for i in range(3):
        lake.land_run(run(f"a{i}", ended=ended))
    lake.land_run(run("b0", orchestrator=ORCH_B, outcome="failed", ended=ended))
    lake.land_run(run("old", ended=NOW - dt.timedelta(days=3)))  # in the 7 days only
    snapshot = read_snapshot(str(DEMO_CONFIG), lake=lake, now=NOW)
    board = score_leaderboard(snapshot)
    jobs = {(r["window"], r["orchestrator"]): r["jobs"] for r in board.iter_rows(named=True)}
    assert jobs == {("24h", ORCH_A): 3, ("24h", ORCH_B): 1, ("7d", ORCH_A): 4, ("7d", ORCH_B): 1}

    analysis = analyze_snapshot(snapshot, board)
    samples = family_samples(analysis, pushed_at=NOW)
    assert ((ORCH_A, "FRA", "longlive", "24h"), 3.0) in samples["leaderboard_jobs"]
    assert all(labels[-1] == "false" for labels, _ in samples["live_video_score"])  # under 10 jobs
    assert analysis_summary(analysis, {}, PUBLISHED)["leaderboard_groups"] == 4


def test_without_a_leaderboard_the_analysis_has_an_empty_one(lake: Lake):
    analysis = analyze_snapshot(read_snapshot(str(DEMO_CONFIG), lake=lake, now=NOW))
    assert analysis.leaderboard.is_empty()
    assert analysis_summary(analysis, {}, PUBLISHED)["leaderboard_groups"] == 0
