"""The leaderboard API's answers, computed from the lake: our relay runs plus the stats others posted.

One SQL statement selects the jobs of a request (every filter a bound parameter), Polars groups
and scores them. The jobs are:
- our runs that are a verdict on their orchestrator's streaming (analytics/attribution.py): the
  relay path, passed, or failed from `connect` on for a reason not the harness's, as AI jobs of
  the `live-video-to-video` capability with the Scope pipeline as the model; their `event_at` is
  when they ended. Unavailable relay runs are not jobs: they are counted beside the score;
- the stats others posted (`leaderboard_stats`), at the time we received them (the reference's
  event_time); a stat that describes one of our own runs (posted to ourselves) is left out.

Like the reference, the median round trip of an AI selection ignores the orchestrator filter
(the handler clears it, computes, and filters the result), so one orchestrator's scores are the
same whether it is asked for alone or with everyone.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from analytics.attribution import RELAY_VERDICT_SQL
from analytics.lake import Lake
from analytics.leaderboard.regions import Region, known_regions
from analytics.leaderboard.scores import (
    INSUFFICIENT_EVIDENCE, ai_score, evidence, live_video_score_expr, round_trip_score, transcoding_latency_score,
    transcoding_score,
)
from analytics.leaderboard.stats import LIVE_VIDEO_PIPELINE, Stats, stats_of_run
from analytics.records import JobType
from analytics.scores import wilson_interval

# Our runs that are jobs (a verdict on the orchestrator's streaming) or unavailable relay attempts.
# An unavailable run never got media flowing, so it has no media path: a WebRTC run (the relay
# driver) that found no capacity is an unavailable relay attempt.
RELAY_JOB_SQL = (f"state = 'final' AND swept_at IS NULL AND ({RELAY_VERDICT_SQL} OR (outcome = 'unavailable' "
                 "AND coalesce(media_path, 'relay') = 'relay' AND media_driver IS DISTINCT FROM 'headless' "
                 "AND NOT coalesce(generated, false) AND orchestrator IS NOT NULL))")
# Straight from the run states (not the `runs` view, which ranks every state of every run): the
# window and the relay filter prune the Parquet scan. A run has at most one final row of its own
# (`<run_id>-final` is replaced, never added to); the sweeper's final rows are `aborted`, never jobs.
_JOBS_SQL = f"""
WITH ours AS (
    SELECT 'run' AS source, run_id, ended_at AS event_at, lower(orchestrator) AS orchestrator,
           upper(coalesce(nullif(trim(region), ''), 'GLOBAL')) AS region, 'ai' AS job_type,
           pipeline AS model, $capability AS pipeline, CAST(NULL AS VARCHAR) AS body_sha256,
           CASE WHEN outcome = 'passed' THEN 1.0 WHEN outcome = 'failed' THEN 0.0 END AS success_rate,
           coalesce(first_frame_s, 0.0) AS round_trip_time, CAST(NULL AS DOUBLE) AS seg_duration,
           outcome, coalesce(fps_received, fps_steady) AS fps, expected_fps, first_frame_s
    FROM run_states
    WHERE ended_at BETWEEN $since AND $until AND {RELAY_JOB_SQL}
), posted AS (
    SELECT 'posted' AS source, run_id, received_at AS event_at, orchestrator, region, job_type, model, pipeline,
           body_sha256, success_rate, round_trip_time, seg_duration, CAST(NULL AS VARCHAR) AS outcome,
           CAST(NULL AS DOUBLE) AS fps, CAST(NULL AS DOUBLE) AS expected_fps, CAST(NULL AS DOUBLE) AS first_frame_s
    FROM leaderboard_stats AS p
    WHERE received_at BETWEEN $since AND $until
      AND (run_id IS NULL OR NOT EXISTS (SELECT 1 FROM run_states AS r WHERE r.run_id = p.run_id))
)
SELECT * FROM (SELECT * FROM ours UNION ALL BY NAME SELECT * FROM posted)
WHERE job_type = $job_type
  AND ($region IS NULL OR region = $region)
  AND ($model IS NULL OR model = $model)
  AND ($pipeline IS NULL OR pipeline = $pipeline)
"""
GROUP = ("orchestrator", "region")
REGIONS_TTL_S = 30.0  # a POST asks whether its region is known: re-read the lake's regions at most this often
SCORE_TABLE_SCHEMA = {
    "window": pl.String, "model": pl.String, "pipeline": pl.String, "orchestrator": pl.String, "region": pl.String,
    "jobs": pl.Int64, "unavailable": pl.Int64, "success_rate": pl.Float64, "success_rate_low": pl.Float64,
    "success_rate_high": pl.Float64, "round_trip_score": pl.Float64, "score": pl.Float64,
    "live_video_score": pl.Float64, "live_video_jobs": pl.Int64, "ranked": pl.Boolean,
}


@dataclass(frozen=True)
class StatsQuery:
    """The selection of a leaderboard request: window (inclusive, UTC) and optional filters."""

    since: dt.datetime
    until: dt.datetime
    orchestrator: str | None = None  # lower case
    region: str | None = None  # upper case
    model: str | None = None
    pipeline: str | None = None
    job_type: JobType | None = None  # None: ai when model and pipeline are given, else transcoding

    @property
    def kind(self) -> JobType:
        """The job type selected (the reference's setJobTypeIfEmpty)."""
        if self.job_type is not None:
            return self.job_type
        return "ai" if self.model or self.pipeline else "transcoding"


def _round(value: float | None) -> float | None:
    """A float for JSON (None for a missing or non-finite value)."""
    return None if value is None or not math.isfinite(value) else float(value)


class Leaderboard:
    """Answers of the leaderboard endpoints over one lake and one configuration."""

    def __init__(self, lake: Lake, settings: Any) -> None:
        self.lake, self.settings = lake, settings
        self.capability = settings.discovery.capability if settings is not None else LIVE_VIDEO_PIPELINE
        scoring = settings.leaderboard.live_video
        self.max_latency_s, self.min_jobs = scoring.max_initial_latency_s, scoring.min_jobs_to_rank
        self.target_fps = {name: p.expected_fps for name, p in settings.pipelines.items()}
        self.default_fps = scoring.default_target_fps
        self._regions_lock = threading.Lock()
        self._regions_cache: tuple[float, list[Region] | None] = (0.0, None)

    # --- selection -------------------------------------------------------------------------------

    def jobs(self, query: StatsQuery, *, all_orchestrators: bool = False) -> pl.DataFrame:
        """One row per job (and per unavailable relay run) the query selects."""
        params = {"capability": self.capability, "since": query.since, "until": query.until,
                  "job_type": query.kind, "region": query.region, "model": query.model, "pipeline": query.pipeline}
        frame = self.lake.query_frame(_JOBS_SQL, params)
        if query.orchestrator is not None and not all_orchestrators:
            frame = frame.filter(pl.col("orchestrator") == query.orchestrator)
        return frame

    def _with_live_scores(self, jobs: pl.DataFrame) -> pl.DataFrame:
        """Each of our jobs with its target fps and live-video score (posted stats: null)."""
        configured = pl.col("model").replace_strict(self.target_fps, default=None, return_dtype=pl.Float64)
        target = pl.coalesce(pl.col("expected_fps"), configured, pl.lit(self.default_fps))
        score = live_video_score_expr(pl.col("fps"), target, pl.col("first_frame_s"), self.max_latency_s)
        ours = (pl.col("source") == "run") & pl.col("outcome").is_in(("passed", "failed"))
        return jobs.with_columns(pl.when(ours).then(score).alias("live_video_score"))

    # --- aggregated_stats --------------------------------------------------------------------------

    def score_rows(self, query: StatsQuery, *, keep_unranked: bool = False) -> list[dict[str, Any]]:
        """Per orchestrator x region of the selection: the reference's scores and our extra figures.

        `keep_unranked`: also give the live-video mean of a group below the evidence floor (its
        `live_video_evidence` still says so); the API's answer leaves it null.
        """
        selected = self._with_live_scores(self.jobs(query, all_orchestrators=True))
        jobs = selected.filter(pl.col("success_rate").is_not_null())
        median = self._median_rtt(jobs) if query.kind == "ai" else None
        groups = selected.group_by(*GROUP).agg(
            pl.col("success_rate").count().alias("jobs"),
            (pl.col("outcome") == "unavailable").sum().alias("unavailable"),
            pl.col("success_rate").mean().alias("success_rate"),
            pl.col("success_rate").sum().alias("successes"),
            pl.col("round_trip_time").filter(pl.col("success_rate").is_not_null()).mean().alias("round_trip_time"),
            pl.col("seg_duration").fill_null(0.0).filter(pl.col("success_rate").is_not_null()).mean()
            .alias("seg_duration"),
            pl.col("live_video_score").mean().alias("live_video_score"),
            pl.col("live_video_score").count().alias("live_video_jobs"),
        ).sort(*GROUP)
        if query.orchestrator is not None:
            groups = groups.filter(pl.col("orchestrator") == query.orchestrator)
        return [self._scored(row, query.kind, median, keep_unranked) for row in groups.to_dicts()]

    @staticmethod
    def _median_rtt(jobs: pl.DataFrame) -> float | None:
        """Continuous median round trip of the succeeded jobs with a non-zero round trip."""
        rtts = jobs.filter((pl.col("success_rate") == 1.0) & (pl.col("round_trip_time") != 0))["round_trip_time"]
        return None if rtts.is_empty() else float(rtts.quantile(0.5, interpolation="linear"))

    def _scored(self, row: dict[str, Any], kind: JobType, median: float | None,
                keep_unranked: bool = False) -> dict[str, Any]:
        """One group's answer: success_rate, round_trip_score, score, and the extras."""
        success = row["success_rate"] or 0.0
        rtt = row["round_trip_time"] or 0.0
        if kind == "ai":
            rtt_score = round_trip_score(rtt, median)
            total = ai_score(success, rtt_score)
        else:
            rtt_score = transcoding_latency_score(row["seg_duration"] or 0.0, rtt)
            total = transcoding_score(success, rtt_score)
        interval = wilson_interval(round(row["successes"] or 0.0), row["jobs"]) if row["jobs"] else None
        sufficient = evidence(row["live_video_jobs"], self.min_jobs)
        live = row["live_video_score"] if keep_unranked or sufficient != INSUFFICIENT_EVIDENCE else None
        answer = {"success_rate": success, "round_trip_score": rtt_score, "score": total,
                  "jobs": row["jobs"], "unavailable": row["unavailable"],
                  "success_rate_ci95": list(interval) if interval else None,
                  "round_trip_time": _round(rtt), "median_round_trip_time": _round(median),
                  "live_video_score": _round(live), "live_video_jobs": row["live_video_jobs"],
                  "live_video_evidence": sufficient}
        if kind == "transcoding":
            answer |= {"latency_score": rtt_score, "total_score": total}
        return {"orchestrator": row["orchestrator"], "region": row["region"], **answer}

    def aggregated_stats(self, query: StatsQuery) -> dict[str, dict[str, dict[str, Any]]]:
        """{orchestrator: {REGION: {success_rate, round_trip_score, score, + extras}}}."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.score_rows(query):
            orchestrator, region = row.pop("orchestrator"), row.pop("region")
            if row["jobs"] == 0:  # only unavailable runs: no capacity is no verdict, and a 0 would read as one
                continue
            result.setdefault(orchestrator, {})[region] = row
        return result

    def score_table(self, *, now: dt.datetime, windows: Mapping[str, dt.timedelta]) -> pl.DataFrame:
        """Every AI model's aggregated scores per orchestrator x region, for each named window (gauges, CLI).

        Columns: window, model, pipeline, orchestrator, region, jobs, unavailable, success_rate,
        success_rate_low/high (Wilson 95 %), round_trip_score, score, live_video_score (the mean of
        the jobs' scores, also below the evidence floor), live_video_jobs, ranked (live-video evidence).
        """
        rows = []
        for window, length in windows.items():
            span = StatsQuery(since=now - length, until=now, job_type="ai")
            for pipeline in self.pipelines(span):
                for model in pipeline["models"]:
                    query = StatsQuery(since=now - length, until=now, model=model, pipeline=pipeline["id"])
                    rows += [{"window": window, "model": model, "pipeline": pipeline["id"], **row}
                             for row in self.score_rows(query, keep_unranked=True)]
        return pl.DataFrame([_flat(row) for row in rows], schema=SCORE_TABLE_SCHEMA)

    # --- raw_stats, pipelines, regions -------------------------------------------------------------

    def raw_stats(self, query: StatsQuery) -> dict[str, list[dict[str, Any]]]:
        """{REGION: [Stats, newest first]} of query.orchestrator (jobs only)."""
        jobs = self._with_live_scores(self.jobs(query)).filter(pl.col("success_rate").is_not_null())
        jobs = jobs.sort("event_at", "run_id", "body_sha256", descending=True, nulls_last=True)
        runs = self._rows_by("runs", "run_id", jobs.filter(pl.col("source") == "run")["run_id"])
        posted = self._rows_by("leaderboard_stats", "body_sha256",
                               jobs.filter(pl.col("source") == "posted")["body_sha256"])
        by_region: dict[str, list[dict[str, Any]]] = {}
        for job in jobs.to_dicts():
            if job["source"] == "run":
                stat = stats_of_run(runs[job["run_id"]], live_video_score=job["live_video_score"],
                                    capability=self.capability).wire()
                stat |= {"source": "scope-loadtest", "live_video_score": _round(job["live_video_score"])}
            else:
                stat = _posted_stat(posted[job["body_sha256"]]) | {"source": "posted"}
            by_region.setdefault(job["region"], []).append(stat)
        return by_region

    def _rows_by(self, view: str, key: str, keys: pl.Series) -> dict[str, dict[str, Any]]:
        """Rows of a view (runs or leaderboard_stats) whose key is among `keys`, by key."""
        if keys.is_empty():
            return {}
        result = self.lake.query(f"SELECT * FROM {view} WHERE {key} IN (SELECT unnest(?))", [keys.to_list()])
        return {row[key]: row for row in result.dicts()}

    def pipelines(self, query: StatsQuery) -> list[dict[str, Any]]:
        """[{id, models, regions}] of the AI jobs in the window."""
        ai = StatsQuery(since=query.since, until=query.until, region=query.region, job_type="ai")
        jobs = self.jobs(ai).filter(pl.col("success_rate").is_not_null() & pl.col("pipeline").is_not_null())
        grouped = jobs.group_by("pipeline").agg(pl.col("model").unique().sort().alias("models"),
                                                pl.col("region").unique().sort().alias("regions"))
        return [{"id": r["pipeline"], "models": r["models"], "regions": r["regions"]}
                for r in grouped.sort("pipeline").to_dicts()]

    def regions(self) -> list[dict[str, str]]:
        """[{id, name, type}]: the reference's regions, config's extra ones, those our orchestrators are in."""
        return [region.wire() for region in self._regions()]

    def _regions(self) -> list[Region]:
        """Every known region, from the reference's seed, the config and the lake (read at most every 30 s)."""
        with self._regions_lock:
            read_at, regions = self._regions_cache
            if regions is None or time.monotonic() - read_at > REGIONS_TTL_S:
                self._regions_cache = (time.monotonic(), self._read_regions())
            return self._regions_cache[1]

    def _read_regions(self) -> list[Region]:
        """Every known region, read from the lake now."""
        seen = self.lake.query(
            "SELECT DISTINCT upper(trim(region)) FROM orchestrators WHERE nullif(trim(region), '') IS NOT NULL "
            f"UNION SELECT DISTINCT upper(trim(region)) FROM runs WHERE {RELAY_JOB_SQL} "
            "AND nullif(trim(region), '') IS NOT NULL").rows
        extra = dict(self.settings.leaderboard.api.extra_regions)
        return known_regions(extra=extra, discovered=[r[0] for r in seen])

    def region_known(self, region: str) -> bool:
        """Whether a posted stat's region (any case) is one of `regions()`."""
        wanted = region.strip().upper()
        return any(r.id == wanted for r in self._regions())


def _posted_stat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A posted stat as it was posted (its fields read back from its lake row)."""
    fields = {name: row.get(name) for name in Stats.model_fields if name != "errors"}
    fields["errors"] = json.loads(row.get("errors_json") or "[]")
    return {k: v for k, v in fields.items() if v is not None}


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A score_table row from a score_rows answer."""
    interval = row.get("success_rate_ci95") or (None, None)
    flat = {name: row.get(name) for name in SCORE_TABLE_SCHEMA}
    return flat | {"success_rate_low": interval[0], "success_rate_high": interval[1],
                   "ranked": row["live_video_evidence"] != INSUFFICIENT_EVIDENCE}
