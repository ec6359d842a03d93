"""What an event source gives a run: the events it read, when, and from where.

A source is started before the session's first Scope call and stopped after its cleanup and
the grace period; it reads everything published meanwhile (every instance's events share one
topic), and the audit joins to the run what belongs to it (tasks/events/join.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from tasks.events.envelope import ScopeEvent


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as a source read it."""

    event: ScopeEvent
    received_at: dt.datetime
    source: str  # "kafka" or "file"
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


class EventSource(Protocol):
    """A stream of Scope events read during one run."""

    name: str  # "kafka" or "file"

    async def start(self) -> None:
        """Begin reading from now; raises EventSourceUnavailable when the source cannot be reached."""

    def received(self) -> list[ReceivedEvent]:
        """Every event read so far, in the order read (skipped malformed messages are counted apart)."""

    async def stop(self) -> None:
        """Stop reading and release the connection (idempotent, never raises)."""
