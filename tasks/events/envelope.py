"""The envelope Scope publishes each lifecycle event in, parsed into one typed value.

    {"id": uuid, "type": "stream_trace", "timestamp": "<ms>",
     "data": {"type": "<event>", "client_source": "scope", "timestamp": "<ms>", "session_id"?,
              "connection_id"?, "user_id"?, "pipeline_ids"?, "mode"?, "connection_info"?, ...}}

(scope-api.md, "Lifecycle events"; recorded from real 0.2.4 in the fixtures' events.jsonl.)
Identifiers may be null or absent (headless sessions, pipeline events); both read as None.
An envelope that is not this shape raises EnvelopeError naming what is wrong; the sources
count and skip such messages, they never stop a run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from errors import Category, HarnessError

MAX_ENVELOPE_BYTES = 256 * 1024  # an event is a few hundred bytes; a larger message is not Scope's


class EnvelopeError(HarnessError):
    """A message that is not a Scope event envelope."""

    default_category = Category.PROTOCOL


@dataclass(frozen=True)
class ScopeEvent:
    """One lifecycle event: its identity, type, time, identifiers and the whole data object."""

    event_id: str
    type: str
    emitted_at: dt.datetime | None
    session_id: str | None
    connection_id: str | None
    user_id: str | None
    pipeline_ids: tuple[str, ...]
    data: dict[str, Any]

    def figure(self, name: str) -> float | None:
        """A numeric field of the data (ttff_ms, fps_out, ...), None when absent or not a number."""
        value = self.data.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ms_time(value: Any) -> dt.datetime | None:
    """A UTC time from milliseconds since the epoch (a number or a numeric string)."""
    try:
        return dt.datetime.fromtimestamp(float(value) / 1000.0, tz=dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _text(value: Any) -> str | None:
    """An identifier: a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _decode(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The envelope as a dict; EnvelopeError when it is not JSON or too large."""
    if isinstance(raw, dict):
        return raw
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"message of {len(raw)} bytes is larger than an event envelope may be")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"message is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("message is not a JSON object")
    return envelope


def parse_envelope(raw: bytes | str | dict[str, Any]) -> ScopeEvent:
    """The event of one envelope; EnvelopeError naming the missing or wrong part."""
    envelope = _decode(raw)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError("envelope has no data object")
    event_type = data.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise EnvelopeError("envelope data has no type")
    pipeline_ids = data.get("pipeline_ids")
    ids = tuple(str(p) for p in pipeline_ids) if isinstance(pipeline_ids, list) else ()
    return ScopeEvent(
        event_id=str(envelope.get("id") or ""), type=event_type,
        emitted_at=_ms_time(data.get("timestamp", envelope.get("timestamp"))),
        session_id=_text(data.get("session_id")), connection_id=_text(data.get("connection_id")),
        user_id=_text(data.get("user_id")), pipeline_ids=ids, data=data,
    )
