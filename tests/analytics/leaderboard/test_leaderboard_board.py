"""The leaderboard answers computed from a lake of literal runs and posted stats."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import polars as pl
import pytest

from analytics.lake import Lake
from analytics.leaderboard.board import Leaderboard, StatsQuery
from analytics.leaderboard.ingest import land_stat, stat_record
from analytics.leaderboard.stats import Stats, stats_body
from analytics.records import OrchestratorSnapshot, RunRecord

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
ORCH_A, ORCH_B = "0x" + "a" * 40, "0x" + "b" * 40


def run(run_id: str, *, outcome: str = "passed", orchestrator: str = ORCH_A, ended: dt.datetime = NOW,
        **fields: Any) -> RunRecord:
    """A final relay run of longlive on orchestrator A in region fra, ended at `ended`."""
    base: dict[str, Any] = dict(
        run_id=run_id, state="final", scenario="longlive_t2v_1m", pipeline="longlive", mode="t2v",
        duration_class="1m", planned_duration_s=60.0, hard_cap_s=600.0, scope_instance="sim", harness_version="t",
        started_at=ended - dt.timedelta(seconds=90), ended_at=ended, orchestrator=orchestrator, region="fra",
        outcome=outcome, media_path="relay", media_driver="webrtc", first_frame_s=2.0, fps_received=12.0,
        expected_fps=12.0, cold_start=False,
    )
    if outcome == "failed":
        base |= dict(failure_category="orchestrator", failure_phase="stream", failure_reason="stalled",
                     checks_failed=("stall",), first_frame_s=None, fps_received=None)
    return RunRecord(**(base | fields))


def land_runs(lake: Lake, *runs: RunRecord) -> None:
    for record in runs:
        lake.land_run(record)


_POSTED = itertools.count()


def post(lake: Lake, received_at: dt.datetime = NOW, **fields: Any) -> Stats:
    """Land a posted stat as the API would (each with its own timestamp, so bodies differ)."""
    body = {"region": "FRA", "orchestrator": ORCH_B, "success_rate": 1.0, "round_trip_time": 5.0,
            "timestamp": int(received_at.timestamp()) - next(_POSTED), "model": "longlive",
            "pipeline": "live-video-to-video"} | fields
    stats = Stats.model_validate(body)
    land_stat(lake, stat_record(stats, body=stats_body(stats), poster="test", received_at=received_at))
    return stats


@pytest.fixture
def board(lake: Lake, demo_settings) -> Leaderboard:
    return Leaderboard(lake, demo_settings)


def ai_query(**fields: Any) -> StatsQuery:
    return StatsQuery(**({"since": NOW - DAY, "until": NOW + dt.timedelta(minutes=1), "model": "longlive",
                          "pipeline": "live-video-to-video"} | fields))


def test_the_reference_example_from_posted_stats(lake, board):
    # Median of the succeeded non-zero round trips is 5 s; orchestrator A averages 2 s at success 1.
    for rtt in (5.0, 5.0, 8.0):
        post(lake, round_trip_time=rtt)
    post(lake, orchestrator=ORCH_A, round_trip_time=2.0)
    answer = board.aggregated_stats(ai_query())
    a = answer[ORCH_A]["FRA"]
    expected_rtt_score = 0.8 ** (2.0 / 5.0)
    assert a["round_trip_score"] == pytest.approx(expected_rtt_score, abs=1e-9)
    assert a["score"] == pytest.approx(0.65 + 0.35 * expected_rtt_score, abs=1e-9)
    assert a["median_round_trip_time"] == pytest.approx(5.0)
    b = answer[ORCH_B]["FRA"]
    assert b["round_trip_score"] == pytest.approx(math.exp(math.log(0.8) / 5.0 * 6.0))  # B averages 6 s


def test_orchestrator_filter_keeps_the_median_of_everyone(lake, board):
    for rtt in (4.0, 6.0):
        post(lake, round_trip_time=rtt)
    post(lake, orchestrator=ORCH_A, round_trip_time=1.0)
    alone = board.aggregated_stats(ai_query(orchestrator=ORCH_A))
    everyone = board.aggregated_stats(ai_query())
    assert list(alone) == [ORCH_A]
    assert alone[ORCH_A] == everyone[ORCH_A]


def test_relay_runs_are_jobs_and_unavailable_is_counted_beside(lake, board):
    land_runs(lake, run("r1"), run("r2", outcome="failed"),
              run("r3", outcome="unavailable", first_frame_s=None, media_path=None),
              run("r4", outcome="unavailable", media_path=None, media_driver="headless"),
              run("local", media_path="local"), run("gen", generated=True),
              run("harness", outcome="failed", failure_category="harness"),
              run("prep", outcome="failed", failure_phase="prepare"))
    row = board.aggregated_stats(ai_query())[ORCH_A]["FRA"]
    assert (row["jobs"], row["unavailable"]) == (2, 1)
    assert row["success_rate"] == pytest.approx(0.5)
    low, high = row["success_rate_ci95"]
    assert 0 < low < 0.5 < high < 1


def test_success_rate_zero_scores_zero(lake, board):
    land_runs(lake, run("f1", outcome="failed"), run("p", orchestrator=ORCH_B))
    assert board.aggregated_stats(ai_query())[ORCH_A]["FRA"]["score"] == 0.0


def test_live_video_score_needs_ten_jobs(lake, board):
    land_runs(lake, *(run(f"r{i}", fps_received=24.0, first_frame_s=4.0) for i in range(9)))
    row = board.aggregated_stats(ai_query())[ORCH_A]["FRA"]
    assert row["live_video_score"] is None and row["live_video_evidence"] == "insufficient evidence"
    land_runs(lake, run("r9", fps_received=24.0, first_frame_s=4.0))
    row = board.aggregated_stats(ai_query())[ORCH_A]["FRA"]
    # 24 fps at a 12 fps target is not penalised: fps part 1; latency part 1 - 4/8.
    assert row["live_video_score"] == pytest.approx(0.7 + 0.3 * 0.5)
    assert row["live_video_evidence"] == "sufficient"


def test_window_selects_on_end_time_and_until_alone(lake, board):
    land_runs(lake, run("old", ended=NOW - 2 * DAY), run("new"))
    assert board.aggregated_stats(ai_query())[ORCH_A]["FRA"]["jobs"] == 1
    everything_before = ai_query(since=dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
    assert board.aggregated_stats(everything_before)[ORCH_A]["FRA"]["jobs"] == 2


def test_filters_region_model_and_job_type(lake, board):
    land_runs(lake, run("r1"), run("r2", region="us-east"))
    post(lake, orchestrator=ORCH_A, model=None, pipeline=None, seg_duration=2.0, round_trip_time=1.0)
    assert set(board.aggregated_stats(ai_query(region="US-EAST"))[ORCH_A]) == {"US-EAST"}
    assert board.aggregated_stats(ai_query(model="ltx2")) == {}
    transcoding = board.aggregated_stats(StatsQuery(since=NOW - DAY, until=NOW + DAY))
    row = transcoding[ORCH_A]["FRA"]
    assert row["latency_score"] == pytest.approx(1 - math.exp(-2.0))
    assert row["total_score"] == row["score"] == pytest.approx(1 - math.exp(-2.0))


def test_raw_stats_newest_first_by_region(lake, board):
    land_runs(lake, run("r1", ended=NOW - dt.timedelta(hours=2)), run("r2", outcome="failed"))
    post(lake, orchestrator=ORCH_A, received_at=NOW - dt.timedelta(hours=1), round_trip_time=3.0)
    raw = board.raw_stats(ai_query(orchestrator=ORCH_A))
    fra = raw["FRA"]
    assert [s["source"] for s in fra] == ["scope-loadtest", "posted", "scope-loadtest"]
    assert fra[0]["success_rate"] == 0.0 and fra[0]["errors"][0]["error_code"] == "stall"
    assert fra[1]["round_trip_time"] == 3.0
    assert Stats.model_validate({k: v for k, v in fra[2].items() if k != "source"}).round_trip_time == 2.0


def test_a_stat_we_posted_to_ourselves_is_not_counted_twice(lake, board, demo_settings):
    record = run("self")
    land_runs(lake, record)
    from analytics.leaderboard.stats import stats_of_run
    stats = stats_of_run(record.model_dump())
    land_stat(lake, stat_record(stats, body=stats_body(stats), poster="us", received_at=NOW))
    assert board.aggregated_stats(ai_query())[ORCH_A]["FRA"]["jobs"] == 1


def test_pipelines_and_regions(lake, board):
    land_runs(lake, run("r1"), run("r2", region="us-east", pipeline="longlive+rife"))
    lake.land("orchestrators", [OrchestratorSnapshot(snapshot_at=NOW, address=ORCH_B, region="ap-southeast",
                                                     source="static")], file_stem="snap")
    pipelines = board.pipelines(StatsQuery(since=NOW - DAY, until=NOW + DAY))
    assert pipelines == [{"id": "live-video-to-video", "models": ["longlive", "longlive+rife"],
                          "regions": ["FRA", "US-EAST"]}]
    ids = {(r["id"], r["type"]) for r in board.regions()}
    assert {("FRA", "ai"), ("SIN", "transcoding"), ("US-EAST", "ai"), ("AP-SOUTHEAST", "ai")} <= ids
    assert board.region_known("us-east") and board.region_known("sin") and not board.region_known("XYZ")


def test_score_table_has_every_model_and_window(lake, board):
    land_runs(lake, run("r1"), run("r2", pipeline="ltx2", ended=NOW - dt.timedelta(days=3)),
              run("r3", outcome="unavailable"))
    table = board.score_table(now=NOW + dt.timedelta(minutes=1),
                              windows={"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)})
    keys = sorted(zip(table["window"], table["model"], table["orchestrator"], table["region"]))
    assert keys == [("24h", "longlive", ORCH_A, "FRA"), ("7d", "longlive", ORCH_A, "FRA"),
                    ("7d", "ltx2", ORCH_A, "FRA")]
    row = table.filter((pl.col("window") == "24h")).to_dicts()[0]
    assert (row["jobs"], row["unavailable"], row["ranked"]) == (1, 1, False)
    assert row["live_video_score"] == pytest.approx(0.7 + 0.3 * (1 - 2.0 / 8))  # unranked, still measured


def test_an_orchestrator_without_capacity_is_not_scored(lake, board):
    land_runs(lake, run("u1", outcome="unavailable", media_path=None), run("p1", orchestrator=ORCH_B))
    assert list(board.aggregated_stats(ai_query())) == [ORCH_B]
