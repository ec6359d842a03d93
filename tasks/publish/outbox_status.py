"""`loadtest publish --status`: per target, what is pending, what keeps failing and why, what was given up.

Read-only: derived from the lake the same way a publish round derives its work (outbox.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analytics.lake import Lake
from analytics.records import as_utc
from config.leaderboard import LeaderboardTarget
from config.settings import Settings
from tasks.publish.outbox import OutboxJob, pending_jobs

LISTED = 20  # failing, rejected and expired runs listed per target (the newest); counts cover all

SETTLED_SQL = """
SELECT status, count(DISTINCT run_id) AS runs FROM leaderboard_outbox
WHERE target = ? AND status <> 'failed' GROUP BY status
"""
GIVEN_UP_SQL = """
SELECT run_id, status, attempt, attempted_at, http_status, error FROM leaderboard_outbox
WHERE target = ? AND status IN ('rejected', 'expired') ORDER BY attempted_at DESC, run_id LIMIT ?
"""


@dataclass(frozen=True)
class TargetStatus:
    """The outbox of one target as of `now`."""

    target: str
    url: str
    secret_note: str | None  # "secret $NAME not set" when its pending runs cannot be posted
    pending: int
    due_now: int
    backing_off: int
    expiring: int  # pending but too old: the next round lands their `expired` rows
    oldest_pending_ended_at: dt.datetime | None
    settled: dict[str, int] = field(default_factory=dict)  # posted/duplicate/rejected/expired -> runs
    failing: list[dict[str, Any]] = field(default_factory=list)
    given_up: list[dict[str, Any]] = field(default_factory=list)  # rejected and expired, with why

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601."""
        def iso(value: Any) -> Any:
            return as_utc(value).isoformat() if isinstance(value, dt.datetime) else value

        plain = {k: iso(v) for k, v in self.__dict__.items() if k not in ("failing", "given_up")}
        plain["failing"] = [{k: iso(v) for k, v in row.items()} for row in self.failing]
        plain["given_up"] = [{k: iso(v) for k, v in row.items()} for row in self.given_up]
        return plain


def _failing(jobs: list[OutboxJob]) -> list[dict[str, Any]]:
    """Pending jobs with failed attempts: attempts, last error, next attempt time (most failures first)."""
    failed = sorted((j for j in jobs if j.failures), key=lambda j: (-j.failures, j.run_id))[:LISTED]
    return [{"run_id": j.run_id, "attempts": j.failures, "http_status": j.last_http_status,
             "last_error": j.last_error, "next_attempt_at": j.next_attempt_at} for j in failed]


def target_status(lake: Lake, target: LeaderboardTarget, *, settings: Settings, now: dt.datetime,
                  environ: Mapping[str, str]) -> TargetStatus:
    """The outbox of one target."""
    outbox = settings.leaderboard.outbox
    jobs = pending_jobs(lake, target.name)
    live = [j for j in jobs if not j.expired(now, outbox)]
    settled = {str(s): int(n) for s, n in lake.query(SETTLED_SQL, [target.name]).rows}
    given_up = lake.query(GIVEN_UP_SQL, [target.name, LISTED]).dicts()
    return TargetStatus(
        target=target.name, url=target.url,
        secret_note=None if environ.get(target.secret_env) else f"secret ${target.secret_env} not set",
        pending=len(jobs), due_now=sum(j.due(now) for j in live), backing_off=sum(not j.due(now) for j in live),
        expiring=len(jobs) - len(live), oldest_pending_ended_at=jobs[0].ended_at if jobs else None,
        settled=settled, failing=_failing(jobs), given_up=given_up,
    )


def outbox_status(lake: Lake, settings: Settings, *, now: dt.datetime | None = None,
                  environ: Mapping[str, str]) -> list[TargetStatus]:
    """The outbox of every configured target."""
    now = as_utc(now or dt.datetime.now(dt.timezone.utc))
    return [target_status(lake, t, settings=settings, now=now, environ=environ) for t in settings.leaderboard.targets]
