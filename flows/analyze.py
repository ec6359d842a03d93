"""`analyze`: baselines, drift, coverage, scores and leaderboard scores from the lake -> lake, Pushgateway, artifacts.

Run it after each dispatch batch and hourly (`ANALYZE_INTERVAL_S`). Every run recomputes every
figure from the lake, lands the analytics tables (history kept, the catalog's views show the
latest) and replaces the gauges under the harness's grouping key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prometheus_client import CollectorRegistry

from analytics.baselines import baseline_records
from analytics.drift import drift_records
from analytics.lake import Lake
from analytics.leaderboard.board import Leaderboard
from analytics.metrics import WINDOWS, Analysis, analyze_runs, build_registry, known_orchestrators
from analytics.scores import score_records
from config.settings import Settings, load_settings
from tasks.publish.analyzer import sole_analyzer
from tasks.publish.pushgateway import PublishResult, create_analysis_artifacts, publish_metrics_task

ANALYZE_INTERVAL_S = 3600  # the hourly schedule; dispatch also triggers it after each batch
ANALYZE_TIMEOUT_S = 15 * 60
NO_RESULT = {"cache_policy": NO_CACHE, "persist_result": False}


@dataclass(frozen=True)
class LakeSnapshot:
    """What one analysis reads: the config, the lake, its runs and discovered orchestrators, and when."""

    settings: Settings
    lake: Lake
    runs: pl.DataFrame
    discovered: tuple[str, ...]
    read_at: dt.datetime


def read_snapshot(config: str | None, *, lake: Lake | None = None, now: dt.datetime | None = None) -> LakeSnapshot:
    """Load the config and read the lake's runs and orchestrators once."""
    lake = lake or Lake.from_env()
    discovered = tuple(str(row[0]) for row in lake.query("SELECT address FROM orchestrators").rows)
    return LakeSnapshot(settings=load_settings(config), lake=lake, runs=lake.runs_frame(), discovered=discovered,
                        read_at=now or dt.datetime.now(dt.timezone.utc))


def score_leaderboard(snapshot: LakeSnapshot) -> pl.DataFrame:
    """The leaderboard's score table (both windows) as of the moment the lake was read."""
    return Leaderboard(snapshot.lake, snapshot.settings).score_table(now=snapshot.read_at, windows=WINDOWS)


def analyze_snapshot(snapshot: LakeSnapshot, leaderboard: pl.DataFrame | None = None) -> Analysis:
    """Every figure of one analysis, as of the moment the lake was read (leaderboard: score_leaderboard's)."""
    settings = snapshot.settings
    return analyze_runs(
        snapshot.runs, now=snapshot.read_at,
        orchestrators=known_orchestrators(snapshot.runs, snapshot.discovered, now=snapshot.read_at),
        scenarios=[s.name for s in settings.expand_scenarios()], budget=settings.budget,
        cold_start_threshold_s=settings.thresholds.cold_start_threshold_s, leaderboard=leaderboard,
    )


def land_analysis(lake: Lake, analysis: Analysis) -> dict[str, str | None]:
    """Land baselines, drift and scores as files named by the computation's timestamp; their paths."""
    stem = "analysis-" + analysis.computed_at.strftime("%Y%m%dT%H%M%S%fZ")
    landed = {
        "baselines": lake.land("baselines", baseline_records(analysis.baselines), file_stem=stem),
        "drift": lake.land("drift", drift_records(analysis.drift), file_stem=stem),
        "scores": lake.land("scores", score_records(analysis.scores), file_stem=stem),
    }
    return {table: None if path is None else str(path) for table, path in landed.items()}


def analysis_summary(analysis: Analysis, landed: dict[str, str | None], published: PublishResult) -> dict:
    """The flow's result: counts, landed files and where the metrics went."""
    regressed = analysis.drift.filter(pl.col("verdict") == "regressed").height
    return {
        "computed_at": analysis.computed_at.isoformat(), "runs": analysis.runs.height,
        "baselines": analysis.baselines.height, "drift_series": analysis.drift.height, "regressed": regressed,
        "scores": analysis.scores.height, "leaderboard_groups": analysis.leaderboard.height, "landed": landed,
        "published": {"target": published.target, "ok": published.ok, "location": published.location,
                      "attempts": published.attempts, "error": published.error},
    }


read_lake = task(name="read-lake", **NO_RESULT)(read_snapshot)
score_leaderboard_task = task(name="score-leaderboard", **NO_RESULT)(score_leaderboard)
compute_analytics = task(name="compute-analytics", **NO_RESULT)(analyze_snapshot)
land_analytics = task(name="land-analytics", **NO_RESULT)(land_analysis)


@task(name="build-gauges", **NO_RESULT)
def build_gauges(analysis: Analysis) -> CollectorRegistry:
    """The gauge families of metrics.md, stamped with the push time."""
    return build_registry(analysis, pushed_at=dt.datetime.now(dt.timezone.utc))


@flow(name="analyze", timeout_seconds=ANALYZE_TIMEOUT_S)
async def analyze(config: str | None = None) -> dict:
    """One analyzer per lake (tasks/publish/analyzer.py): analyze, or skip while another one runs."""
    async with sole_analyzer(Lake.from_env().url) as alone:
        if not alone:
            return {"skipped": "another analysis of this lake is running; its push covers this one"}
        return await analyze_lake(config)


async def analyze_lake(config: str | None) -> dict:
    """Recompute every figure from the lake, land it, push the gauges and publish the artifacts."""
    snapshot = read_lake(config)
    analysis = compute_analytics(snapshot, score_leaderboard_task(snapshot))
    landed = land_analytics(snapshot.lake, analysis)
    published = publish_metrics_task(build_gauges(analysis), snapshot.lake.root, snapshot.lake.url)
    await create_analysis_artifacts(analysis, published)
    return analysis_summary(analysis, landed, published)
