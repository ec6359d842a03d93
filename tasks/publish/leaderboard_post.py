"""One POST of one Stats body to one leaderboard, and what its answer means for the outbox.

    2xx                      posted     delivered
    409                      duplicate  the identical body landed before (an earlier post whose answer was lost)
    400, 413                 rejected   the receiver refuses this body: never retried
    anything else, no answer failed     401/403 (secret), 5xx, redirects, refused connections, timeouts: retried

This is the one place httpx errors of the outbox are caught. The secret only ever enters the
`Authorization` header as an HMAC of the body; no error text carries it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache

import httpx

from analytics.records import OutboxStatus
from config.leaderboard import LeaderboardTarget
from tasks.publish.signature import sign

POST_PATH = "/api/post_stats"
MAX_ANSWER_BYTES = 64 * 1024  # read at most this much of an answer; the rest is never needed
MAX_ERROR_CHARS = 300
REJECTED_STATUSES = frozenset({400, 413})


@dataclass(frozen=True)
class PostAnswer:
    """What one POST came to: the outbox status, the HTTP status (None without an answer), why, how long."""

    status: OutboxStatus
    http_status: int | None
    error: str | None
    latency_ms: float | None

    @property
    def transport_failed(self) -> bool:
        """No HTTP answer at all (refused, reset, timed out): the target is probably down."""
        return self.status == "failed" and self.http_status is None


@cache
def user_agent() -> str:
    """`scope-loadtest/<harness version>`, the version our runs carry."""
    from tasks.session.run_record import HARNESS_VERSION  # heavy module: only when posting

    return f"scope-loadtest/{HARNESS_VERSION}"


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Whitespace collapsed to single spaces, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def post_url(target: LeaderboardTarget) -> str:
    """Where a target takes stats: <url>/api/post_stats."""
    return target.url.rstrip("/") + POST_PATH


def answer_text(raw: bytes) -> str:
    """The error an answer states: a JSON object's error/detail/message, else its text."""
    text = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(value, dict):
        for key in ("error", "detail", "message"):
            if value.get(key):
                return one_line(str(value[key]))
    return one_line(text)


def classify(http_status: int, raw: bytes) -> tuple[OutboxStatus, str | None]:
    """The outbox status of an HTTP answer and, unless posted, why."""
    if 200 <= http_status < 300:
        return "posted", None
    said = answer_text(raw)
    reason = one_line(f"HTTP {http_status}" + (f": {said}" if said else ""))
    if http_status == 409:
        return "duplicate", reason
    if http_status in REJECTED_STATUSES:
        return "rejected", reason
    return "failed", reason


def _read_capped(response: httpx.Response) -> bytes:
    """At most MAX_ANSWER_BYTES of a streamed answer."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


def post_stats(client: httpx.Client, target: LeaderboardTarget, body: bytes, secret: str) -> PostAnswer:
    """POST the exact body bytes, signed, to the target; never raises for network trouble."""
    headers = {"Content-Type": "application/json", "Authorization": sign(body, secret), "User-Agent": user_agent()}
    started = time.perf_counter()
    try:
        with client.stream("POST", post_url(target), content=body, headers=headers,
                           timeout=httpx.Timeout(target.timeout_s)) as response:
            raw = _read_capped(response)
    except httpx.TimeoutException as exc:
        return PostAnswer("failed", None, one_line(f"timed out after {target.timeout_s:g} s ({type(exc).__name__})"),
                          None)
    except httpx.HTTPError as exc:  # refused, reset, protocol errors: no answer came back
        return PostAnswer("failed", None, one_line(f"{type(exc).__name__}: {exc}"), None)
    latency_ms = (time.perf_counter() - started) * 1000.0
    status, error = classify(response.status_code, raw)
    return PostAnswer(status, response.status_code, error, latency_ms)


def new_client() -> httpx.Client:
    """A client for a publish round; redirects are not followed (a redirected post counts as failed)."""
    return httpx.Client(follow_redirects=False, timeout=httpx.Timeout(10.0))
