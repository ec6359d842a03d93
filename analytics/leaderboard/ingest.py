"""Landing a posted Stats object in the lake: one file per accepted body, named by its SHA-256.

The file name makes acceptance idempotent and race-free: the landing is exclusive (a hard link
refuses an existing name), so the same signed body lands once however often, or however
concurrently, it is posted; a second post raises AlreadyLanded.
"""

from __future__ import annotations

import datetime as dt

from analytics.lake import Lake
from analytics.leaderboard.stats import Stats, body_sha256, canonical_json
from analytics.records import LeaderboardStatRecord, as_utc

TABLE = "leaderboard_stats"


def stat_record(stats: Stats, *, body: bytes, poster: str, received_at: dt.datetime) -> LeaderboardStatRecord:
    """The lake row of an accepted stat."""
    errors = [e.model_dump(mode="json", exclude_none=True) for e in stats.errors or ()]
    return LeaderboardStatRecord(
        body_sha256=body_sha256(body), received_at=as_utc(received_at), poster=poster[:512],
        stat_at=stats.stat_at, timestamp=stats.timestamp, job_type=stats.job_type,
        region=stats.region.upper(), orchestrator=stats.orchestrator.lower(),
        success_rate=stats.success_rate, round_trip_time=stats.round_trip_time,
        errors_json=canonical_json(errors).decode(), model=stats.model, pipeline=stats.pipeline,
        model_is_warm=stats.model_is_warm, input_parameters=stats.input_parameters,
        response_payload=stats.response_payload, seg_duration=stats.seg_duration,
        segments_sent=stats.segments_sent, segments_received=stats.segments_received,
        upload_time=stats.upload_time, download_time=stats.download_time, transcode_time=stats.transcode_time,
        run_id=stats.run_id(),
    )


def land_stat(lake: Lake, record: LeaderboardStatRecord) -> None:
    """Land one accepted stat exclusively; AlreadyLanded when this body landed before."""
    lake.land(TABLE, [record], file_stem=record.body_sha256, exclusive=True)
