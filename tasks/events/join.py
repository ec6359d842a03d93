"""Which events of a topic every Scope instance shares belong to one run.

An event is the run's when
- its connection_id is one of the run's (the run id in the offer; for relay also the manifest id),
- or it shares a session_id with an event already joined (e.g. the cloud side's differently
  tagged events of the same session: the audit then flags them `mismatched_ids`),
- or it carries no connection_id at all (0.2.4 headless sessions, untagged offers), falls inside
  the run's session window plus the grace period and names one of the run's pipelines; only
  when no concurrent run could claim it as well (`competing == 0`).
pipeline_load_start / pipeline_loaded / pipeline_unloaded without ids belong to no session (a
load serves every session of an instance), so they are never claimed by time; relay pipeline
events carrying the connection_id join by it. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tasks.events.sources import ReceivedEvent

if TYPE_CHECKING:
    from tasks.events.audit import RunFacts

PIPELINE_EVENT_TYPES = frozenset({"pipeline_load_start", "pipeline_loaded", "pipeline_unloaded"})
DEFAULT_GRACE_S = 5.0  # config/events.py's default; callers pass settings.events.grace_s


def event_time(received: ReceivedEvent) -> dt.datetime:
    """When Scope emitted the event; when it did not say, when the source read it."""
    return received.event.emitted_at or received.received_at


def _claimable_by_time(received: ReceivedEvent, facts: RunFacts, grace_s: float) -> bool:
    """An untagged, sessionful event inside the run's window that names one of its pipelines."""
    event = received.event
    if event.connection_id is not None or event.type in PIPELINE_EVENT_TYPES:
        return False
    if facts.session_started_at is None or not set(event.pipeline_ids) & set(facts.pipeline_ids):
        return False
    ended = facts.session_ended_at or facts.session_started_at
    return facts.session_started_at <= event_time(received) <= ended + dt.timedelta(seconds=grace_s)


def ambiguous_null_ids(received: Sequence[ReceivedEvent], facts: RunFacts, competing: int, *,
                       grace_s: float = DEFAULT_GRACE_S) -> int:
    """Untagged events the window rule would claim but does not, because `competing` runs overlap."""
    if competing <= 0:
        return 0
    return sum(_claimable_by_time(r, facts, grace_s) for r in received)


def join(received: Sequence[ReceivedEvent], facts: RunFacts, competing: int = 0, *,
         grace_s: float = DEFAULT_GRACE_S) -> list[ReceivedEvent]:
    """The run's events out of everything read, in the order read."""
    run_ids = set(facts.connection_ids)
    seeds = {i for i, r in enumerate(received) if r.event.connection_id in run_ids}
    if competing <= 0:
        seeds |= {i for i, r in enumerate(received) if _claimable_by_time(r, facts, grace_s)}
    sessions = {received[i].event.session_id for i in seeds} - {None}
    return [r for i, r in enumerate(received) if i in seeds or r.event.session_id in sessions]
