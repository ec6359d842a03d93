"""The leaderboard outbox: which of our runs each target still needs, when to try again, one round of posts.

The outbox is not a table that is updated: it is derived from the lake each round, so a restart
or a crash loses nothing (the lake is the only state).

    job       an eligible run (a relay run that is a verdict on its orchestrator: analytics.attribution)
              x a configured target
    settled   the job has a terminal attempt row: posted, duplicate, rejected or expired
    pending   not settled; its failed rows number its attempts (next = highest + 1)
    due       pending and either never failed or past its last failed row's next_attempt_at,
              which is attempted_at + backoff_s x 2^(failures-1), capped at backoff_max_s
    expired   pending and ended more than max_age_hours ago: one `expired` row, never posted

Delivery is at least once: a post whose answer is lost (crash, reset) is posted again and the
receiver answers 409 for the identical body (`stats_body` is canonical), recorded as duplicate.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from analytics.attribution import RELAY_VERDICT_SQL
from analytics.lake import Lake
from analytics.leaderboard.scores import live_video_score
from analytics.leaderboard.stats import body_sha256, stats_body, stats_of_run
from analytics.records import OutboxAttemptRecord, as_utc
from config.leaderboard import LeaderboardTarget, OutboxSettings
from config.settings import Settings
from tasks.publish.leaderboard_post import PostAnswer, new_client, one_line, post_stats

TABLE = "leaderboard_outbox"
TERMINAL_STATUSES = ("posted", "duplicate", "rejected", "expired")
STOP_AFTER_TRANSPORT_FAILURES = 3  # a target that does not answer three times running is down: stop its round

PENDING_SQL = f"""
WITH attempts AS (SELECT * FROM leaderboard_outbox WHERE target = ?),
summary AS (
    SELECT run_id, max(attempt) AS last_attempt, count(*) FILTER (WHERE status = 'failed') AS failures,
           bool_or(status <> 'failed') AS settled,
           max(next_attempt_at) FILTER (WHERE status = 'failed') AS next_attempt_at
    FROM attempts GROUP BY run_id),
latest AS (
    SELECT run_id, error AS last_error, http_status AS last_http_status FROM attempts
    QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY attempted_at DESC, attempt DESC) = 1)
SELECT r.*, coalesce(r.ended_at, r.started_at) AS job_ended_at, coalesce(s.last_attempt, 0) AS last_attempt,
       coalesce(s.failures, 0) AS failures, s.next_attempt_at, l.last_error, l.last_http_status
FROM runs AS r LEFT JOIN summary AS s USING (run_id) LEFT JOIN latest AS l USING (run_id)
WHERE {RELAY_VERDICT_SQL} AND NOT coalesce(s.settled, false)
ORDER BY job_ended_at, r.run_id
"""


@dataclass(frozen=True)
class OutboxJob:
    """One pending run for one target, with what its earlier attempts left."""

    run: dict[str, Any]
    target: str
    attempt: int  # the number the next attempt row gets
    failures: int
    ended_at: dt.datetime
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    last_http_status: int | None = None

    @property
    def run_id(self) -> str:
        """The run this job posts."""
        return str(self.run["run_id"])

    def due(self, now: dt.datetime) -> bool:
        """Never failed, or its back-off is over."""
        return self.next_attempt_at is None or as_utc(now) >= as_utc(self.next_attempt_at)

    def expired(self, now: dt.datetime, outbox: OutboxSettings) -> bool:
        """Ended longer ago than the outbox posts."""
        return as_utc(now) - as_utc(self.ended_at) > dt.timedelta(hours=outbox.max_age_hours)


@dataclass
class TargetRound:
    """What one round did for one target."""

    target: str
    counts: dict[str, int] = field(default_factory=dict)  # status -> attempt rows landed
    waiting: int = 0  # pending, backing off
    not_tried: int = 0  # due but left for the next round (batch full, or the target stopped answering)
    note: str | None = None  # why nothing was posted (secret unset), or why the round stopped early
    records: list[OutboxAttemptRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts, and every attempt that did not post with its status and why."""
        misses = [{"run_id": r.run_id, "attempt": r.attempt, "status": r.status, "http_status": r.http_status,
                   "error": r.error, "next_attempt_at": r.next_attempt_at and r.next_attempt_at.isoformat()}
                  for r in self.records if r.status != "posted"]
        return {"target": self.target, "counts": dict(self.counts), "waiting": self.waiting,
                "not_tried": self.not_tried, "note": self.note, "not_posted": misses}


def backoff_s(failures: int, outbox: OutboxSettings) -> float:
    """Wait after the `failures`-th failure: backoff_s x 2^(failures-1), at most backoff_max_s."""
    exponent = min(max(failures - 1, 0), 60)  # 2^60 s is past any cap; keeps the float finite
    return min(outbox.backoff_s * 2.0**exponent, outbox.backoff_max_s)


def pending_jobs(lake: Lake, target: str) -> list[OutboxJob]:
    """Every eligible run not yet settled for `target`, oldest first."""
    rows = lake.query_frame(PENDING_SQL, [target]).to_dicts()
    jobs_fields = ("job_ended_at", "last_attempt", "failures", "next_attempt_at", "last_error", "last_http_status")
    return [OutboxJob(run={k: v for k, v in row.items() if k not in jobs_fields}, target=target,
                      attempt=int(row["last_attempt"]) + 1, failures=int(row["failures"]),
                      ended_at=row["job_ended_at"], next_attempt_at=row["next_attempt_at"],
                      last_error=row["last_error"], last_http_status=row["last_http_status"]) for row in rows]


def target_fps(run: Mapping[str, Any], settings: Settings) -> float:
    """The run's expected fps, else its pipeline's in config, else the live-video default."""
    if run.get("expected_fps"):
        return float(run["expected_fps"])
    pipeline = settings.pipelines.get(str(run.get("pipeline")))
    return pipeline.expected_fps if pipeline else settings.leaderboard.live_video.default_target_fps


def run_body(run: Mapping[str, Any], settings: Settings) -> bytes:
    """The exact bytes posted for a run (the same run always gives the same bytes)."""
    fps = run.get("fps_received") if run.get("fps_received") is not None else run.get("fps_steady")
    score = live_video_score(fps, target_fps(run, settings), run.get("first_frame_s"),
                             max_initial_latency_s=settings.leaderboard.live_video.max_initial_latency_s)
    return stats_body(stats_of_run(run, live_video_score=score, capability=settings.discovery.capability))


def attempt_record(job: OutboxJob, answer: PostAnswer, *, attempted_at: dt.datetime, body_sha: str | None,
                   outbox: OutboxSettings) -> OutboxAttemptRecord:
    """The attempt row of one post (a failed one says when to try again)."""
    next_at = None
    if answer.status == "failed":
        next_at = attempted_at + dt.timedelta(seconds=backoff_s(job.failures + 1, outbox))
    return OutboxAttemptRecord(run_id=job.run_id, target=job.target, attempt=job.attempt, attempted_at=attempted_at,
                               status=answer.status, http_status=answer.http_status, error=answer.error,
                               latency_ms=answer.latency_ms, body_sha256=body_sha, next_attempt_at=next_at)


def expired_record(job: OutboxJob, now: dt.datetime, outbox: OutboxSettings) -> OutboxAttemptRecord:
    """The one `expired` row of a run too old to post."""
    tried = f" after {job.failures} failed attempt(s), last: {job.last_error}" if job.failures else ""
    error = one_line(f"ended {as_utc(job.ended_at):%Y-%m-%d %H:%M} UTC, more than {outbox.max_age_hours:g} h "
                     f"ago: not posted{tried}")
    return OutboxAttemptRecord(run_id=job.run_id, target=job.target, attempt=job.attempt, attempted_at=as_utc(now),
                               status="expired", error=error)


def attempt_job(client: httpx.Client, target: LeaderboardTarget, job: OutboxJob, *, secret: str,
                settings: Settings, attempted_at: dt.datetime) -> OutboxAttemptRecord:
    """Build the run's body and post it; a run that cannot make a valid body is rejected here, never posted."""
    try:
        body = run_body(job.run, settings)
    except (ValidationError, ValueError) as exc:
        reason = one_line(f"not a valid Stats body: {str(exc).splitlines()[0]}")
        answer = PostAnswer("rejected", None, reason, None)
        return attempt_record(job, answer, attempted_at=attempted_at, body_sha=None, outbox=settings.leaderboard.outbox)
    answer = post_stats(client, target, body, secret)
    return attempt_record(job, answer, attempted_at=attempted_at, body_sha=body_sha256(body),
                          outbox=settings.leaderboard.outbox)


def deliver(client: httpx.Client, target: LeaderboardTarget, due: list[OutboxJob], *, secret: str,
            settings: Settings, now: dt.datetime, result: TargetRound) -> None:
    """Post due jobs in order, up to the batch size; stop when the target stops answering."""
    started, transport_failures = time.monotonic(), 0
    batch = due[: settings.leaderboard.outbox.batch_size]
    result.not_tried += len(due) - len(batch)
    for index, job in enumerate(batch):
        attempted_at = as_utc(now) + dt.timedelta(seconds=time.monotonic() - started)
        record = attempt_job(client, target, job, secret=secret, settings=settings, attempted_at=attempted_at)
        result.records.append(record)
        transport_failures = transport_failures + 1 if record.status == "failed" and record.http_status is None else 0
        if transport_failures >= STOP_AFTER_TRANSPORT_FAILURES:
            result.not_tried += len(batch) - index - 1
            result.note = f"stopped after {transport_failures} posts without an answer: {record.error}"
            return


def publish_target(lake: Lake, target: LeaderboardTarget, *, settings: Settings, now: dt.datetime,
                   environ: Mapping[str, str], client: httpx.Client) -> TargetRound:
    """One round for one target: expire what is too old, post what is due, land the attempt rows."""
    outbox, result = settings.leaderboard.outbox, TargetRound(target.name)
    jobs = pending_jobs(lake, target.name)
    result.records.extend(expired_record(j, now, outbox) for j in jobs if j.expired(now, outbox))
    live = [j for j in jobs if not j.expired(now, outbox)]
    due = [j for j in live if j.due(now)]
    result.waiting = len(live) - len(due)
    secret = environ.get(target.secret_env) or ""
    if not secret:
        result.note = f"secret ${target.secret_env} not set"
        result.not_tried += len(due)
    else:
        deliver(client, target, due, secret=secret, settings=settings, now=now, result=result)
    land_attempts(lake, result.records, now)
    for record in result.records:
        result.counts[record.status] = result.counts.get(record.status, 0) + 1
    return result


def land_attempts(lake: Lake, records: list[OutboxAttemptRecord], now: dt.datetime) -> None:
    """Land one round's attempt rows of one target as one file."""
    stamp = as_utc(now).strftime("%Y%m%dT%H%M%S%fZ")
    lake.land(TABLE, records, file_stem=f"round-{stamp}-{uuid.uuid4().hex[:8]}")


def publish_target_now(lake: Lake, settings: Settings, target_name: str,
                       now: dt.datetime | None = None) -> dict[str, Any]:
    """One round for one configured target, secrets from the environment; its summary."""
    target = settings.leaderboard.target(target_name)
    if target is None:
        raise ValueError(f"no leaderboard target called {target_name!r} in the config")
    with new_client() as client:
        return publish_target(lake, target, settings=settings, now=as_utc(now or dt.datetime.now(dt.timezone.utc)),
                              environ=os.environ, client=client).summary()


def publish_round(lake: Lake, settings: Settings, *, now: dt.datetime | None = None,
                  environ: Mapping[str, str], client: httpx.Client | None = None) -> list[TargetRound]:
    """One publish round over every configured target."""
    now = as_utc(now or dt.datetime.now(dt.timezone.utc))
    own_client = client is None
    client = client or new_client()
    try:
        return [publish_target(lake, target, settings=settings, now=now, environ=environ, client=client)
                for target in settings.leaderboard.targets]
    finally:
        if own_client:
            client.close()
