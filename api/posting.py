"""POST /api/post_stats: a signed Stats body, checked in a fixed order, landed once.

Order: posting disabled (503), body too large (413, never reading past the limit), signature
(401), body not a valid Stats object (400 naming the field), unknown region (400), timestamp
outside [now - replay window, now + future skew] (400), the same body accepted before (409).
The replay window and the exclusive landing together make a captured request worthless: within
the window its body is a duplicate, after it the timestamp is stale. Nothing here logs the
secret or the Authorization header, and no answer echoes the body.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from analytics.lake import AlreadyLanded, Lake
from analytics.leaderboard.board import Leaderboard
from analytics.leaderboard.ingest import land_stat, stat_record
from analytics.leaderboard.stats import Stats, body_sha256
from api.answers import ApiError
from config.leaderboard import ApiSettings
from tasks.publish.signature import signature_matches

MAX_USER_AGENT_CHARS = 200
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class PostingRules:
    """What a post is checked against: the secret (None: posting disabled), limits and the clock."""

    secret: str | None
    secret_env: str
    body_limit_bytes: int
    replay_window_s: float
    future_skew_s: float
    clock: Callable[[], float]

    @classmethod
    def of(cls, api: ApiSettings, secret: str | None, clock: Callable[[], float]) -> PostingRules:
        """The rules of the API settings, with the secret read at the edge."""
        return cls(secret=secret or None, secret_env=api.secret_env, body_limit_bytes=api.body_limit_bytes,
                   replay_window_s=api.replay_window_s, future_skew_s=api.future_skew_s, clock=clock)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ApiError 413 as soon as it is known to exceed `limit` bytes."""
    too_large = ApiError(413, f"body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_stats(body: bytes) -> Stats:
    """The Stats object of a body, or ApiError 400 naming the first field at fault."""
    try:
        return Stats.model_validate_json(body)
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}") from None


def check_timestamp(stats: Stats, rules: PostingRules) -> None:
    """ApiError 400 unless the stat's timestamp lies within the replay window and the future skew."""
    now = rules.clock()
    if stats.timestamp < now - rules.replay_window_s:
        raise ApiError(400, f"timestamp is older than the replay window of {rules.replay_window_s:g} s")
    if stats.timestamp > now + rules.future_skew_s:
        raise ApiError(400, f"timestamp is more than {rules.future_skew_s:g} s in the future")


def poster_of(request: Request) -> str:
    """Who posted: the peer's host and its User-Agent (printable ASCII, truncated)."""
    host = request.client.host if request.client else "unknown"
    agent = _UNPRINTABLE.sub("?", request.headers.get("user-agent", "")[:MAX_USER_AGENT_CHARS])
    return f"{host} {agent}".strip()


def _land(lake: Lake, stats: Stats, body: bytes, poster: str, rules: PostingRules) -> None:
    """Land the accepted stat; ApiError 409 when this exact body landed before."""
    received_at = dt.datetime.fromtimestamp(rules.clock(), tz=dt.timezone.utc)
    try:
        land_stat(lake, stat_record(stats, body=body, poster=poster, received_at=received_at))
    except AlreadyLanded:
        raise ApiError(409, f"duplicate: this body (sha256 {body_sha256(body)}) was accepted before") from None


async def accept_post(request: Request, lake: Lake, board: Leaderboard, rules: PostingRules) -> None:
    """Check a post in the documented order and land it; ApiError on the first rule it breaks."""
    if rules.secret is None:
        raise ApiError(503, f"posting is disabled: set {rules.secret_env}")
    body = await read_body(request, rules.body_limit_bytes)
    if not signature_matches(body, request.headers.get("authorization"), rules.secret):
        raise ApiError(401, "Authorization is not the HMAC-SHA256 of the body under the shared secret")
    stats = parse_stats(body)
    if not await run_in_threadpool(board.region_known, stats.region):
        raise ApiError(400, f"region {stats.region} is not a known region (see /api/regions)")
    check_timestamp(stats, rules)
    await run_in_threadpool(_land, lake, stats, body, poster_of(request), rules)
