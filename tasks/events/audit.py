"""The per-run audit: did Scope's lifecycle events tell the story the harness measured?

What each media path should publish (scope-api.md, "Lifecycle events"; the 0.2.4 recording):

    relay     websocket_connected, pipeline_load_start, pipeline_loaded, session_created,
              stream_started, stream_heartbeat x n, stream_stopped, session_closed,
              websocket_disconnected                      (one connection_id: the cloud parity fix)
    local     stream_started, session_created, playback_ready, stream_heartbeat x n,
              stream_stopped, session_closed              (the offer's connection_id)
    headless  stream_started, stream_stopped              (null ids: itself a finding)
    failed offer (any path): error (webrtc_offer_failed or stream_startup_failed), session_closed

Findings, each `kind: detail`: missing, duplicated, out_of_order, null_ids, mismatched_ids, late,
ttff_disagrees, fps_disagrees. A figure the harness did not measure is not compared. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from config.events import EventsSettings
from tasks.events.join import ambiguous_null_ids, event_time, join
from tasks.events.sources import ReceivedEvent

MediaPath = Literal["relay", "local", "headless"]
HEARTBEAT = "stream_heartbeat"
MAX_EXPECTED_HEARTBEATS = 2  # the parity contract asks for >= 2; a longer stream may show more
# Scope's code starts the stream before it publishes session_created, on both paths (the 0.2.4
# recording shows it locally); scope-api.md lists the parity set, not its order.
RELAY_BEFORE_STREAM = ("websocket_connected", "pipeline_load_start", "pipeline_loaded", "stream_started",
                       "session_created")
RELAY_AFTER_STREAM = ("stream_stopped", "session_closed", "websocket_disconnected")
LOCAL_BEFORE_STREAM = ("stream_started", "session_created", "playback_ready")
LOCAL_AFTER_STREAM = ("stream_stopped", "session_closed")
HEADLESS_SEQUENCE = ("stream_started", "stream_stopped")
FAILED_OFFER_SEQUENCE = ("error", "session_closed")
OFFER_ERROR_TYPES = ("webrtc_offer_failed", "stream_startup_failed")
REPEATABLE_TYPES = frozenset({HEARTBEAT, "error"})  # every other type must happen at most once


@dataclass(frozen=True)
class RunFacts:
    """What the harness knows about one run, against which its events are audited."""

    run_id: str
    media_path: MediaPath
    video_mode: bool  # v2v sends input video; t2v/i2v are text mode in Scope
    connection_ids: tuple[str, ...] = ()  # the offer's run id; for relay also the cloud's manifest id
    pipeline_ids: tuple[str, ...] = ()  # what the run loaded: claims events that carry no ids
    session_started_at: dt.datetime | None = None  # UTC, before the offer / session start
    session_ended_at: dt.datetime | None = None  # UTC, after the session's cleanup
    stream_s: float | None = None
    first_frame_s: float | None = None
    fps_received: float | None = None
    outcome: str | None = None
    failure_phase: str | None = None
    failure_reason: str | None = None
    offer_failed: bool = False  # the WebRTC offer itself was refused


@dataclass(frozen=True, order=True)
class Finding:
    """One deviation of the events from the expected story."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class AuditResult:
    """The findings of one audit, what was expected and what was seen (in emission order)."""

    findings: tuple[Finding, ...]
    expected: tuple[str, ...]
    seen_types: tuple[str, ...]
    complete: bool


def expected_heartbeats(facts: RunFacts, settings: EventsSettings) -> int:
    """Heartbeats the stream must show: none in text mode, else one per interval, at most two.

    Scope emits stream_heartbeat from its input loop, only while input frames arrive (observed on
    0.2.4: the text session of the recording has none). Text mode (t2v, i2v) sends no input track,
    so it never beats; expecting heartbeats there would flag every text run.
    """
    if not facts.video_mode or facts.stream_s is None:
        return 0
    return min(MAX_EXPECTED_HEARTBEATS, math.floor(facts.stream_s / settings.heartbeat_interval_s))


def expected_sequence(facts: RunFacts, settings: EventsSettings) -> tuple[str, ...]:
    """The event types the run's media path should publish, in order (heartbeats repeated)."""
    if facts.offer_failed:
        return FAILED_OFFER_SEQUENCE
    heartbeats = (HEARTBEAT,) * expected_heartbeats(facts, settings)
    if facts.media_path == "relay":
        return RELAY_BEFORE_STREAM + heartbeats + RELAY_AFTER_STREAM
    if facts.media_path == "headless":
        return HEADLESS_SEQUENCE
    # A run that failed without a first frame: Scope need not have played anything back either.
    no_frame = facts.outcome == "failed" and facts.first_frame_s is None
    before = LOCAL_BEFORE_STREAM[:2] if no_frame else LOCAL_BEFORE_STREAM
    return before + heartbeats + LOCAL_AFTER_STREAM


def _in_emission_order(events: Sequence[ReceivedEvent]) -> list[ReceivedEvent]:
    """The events by emission time (received time when absent); ties keep the order read."""
    return sorted(events, key=event_time)


def _missing(types: Sequence[str], expected: tuple[str, ...]) -> list[Finding]:
    """An expected type seen fewer times than expected (a failed offer's error must be of its kinds)."""
    seen = Counter(types)
    findings = []
    for event_type, needed in Counter(expected).items():
        if seen[event_type] >= needed:
            continue
        detail = event_type if needed == 1 else f"{event_type} (saw {seen[event_type]} of {needed})"
        if event_type == "error" and expected == FAILED_OFFER_SEQUENCE:
            detail = f"error ({' or '.join(OFFER_ERROR_TYPES)})"
        findings.append(Finding("missing", detail))
    return findings


def _duplicated(types: Sequence[str]) -> list[Finding]:
    """A type that must happen once, seen more often."""
    return [Finding("duplicated", f"{event_type} x{count}") for event_type, count in Counter(types).items()
            if count > 1 and event_type not in REPEATABLE_TYPES]


def _out_of_order(events: Sequence[ReceivedEvent], expected: tuple[str, ...]) -> list[Finding]:
    """Each expected type emitted strictly before types the expectation puts ahead of it.

    Emission times, not read order: Scope keys events by a random id, so one session's events
    spread over partitions, and two emitted in the same millisecond come back in either order.
    """
    order = list(dict.fromkeys(expected))
    first: dict[str, dt.datetime] = {}
    last: dict[str, dt.datetime] = {}
    for received in events:
        at = event_time(received)
        first.setdefault(received.event.type, at)
        last[received.event.type] = max(at, last.get(received.event.type, at))
    findings = []
    for rank, event_type in enumerate(order):
        if event_type not in first:
            continue
        overtaken = [t for t in order[:rank] if t in last and last[t] > first[event_type]]
        if overtaken:
            findings.append(Finding("out_of_order", f"{event_type} before {', '.join(overtaken)}"))
    return findings


def _id_findings(events: Sequence[ReceivedEvent], facts: RunFacts) -> list[Finding]:
    """Events without a connection_id, and events of the run's session carrying another one."""
    untagged = list(dict.fromkeys(r.event.type for r in events if r.event.connection_id is None))
    findings = []
    if untagged and (facts.connection_ids or facts.media_path == "headless"):
        why = " (headless sessions are not tagged in 0.2.4)" if facts.media_path == "headless" else ""
        findings.append(Finding("null_ids", f"{', '.join(untagged)} carry no connection_id{why}"))
    foreign: dict[str, list[str]] = {}
    for received in events:
        cid = received.event.connection_id
        if cid is not None and facts.connection_ids and cid not in facts.connection_ids:
            foreign.setdefault(cid, []).append(received.event.type)
    for cid, types in foreign.items():
        findings.append(Finding("mismatched_ids", f"{', '.join(types)} carry connection_id {cid!r}, "
                                f"not the run's ({', '.join(facts.connection_ids)})"))
    return findings + _shared_id(events, facts)


def _shared_id(events: Sequence[ReceivedEvent], facts: RunFacts) -> list[Finding]:
    """On the relay path every event carries one connection_id (the parity fix): the run's or the manifest's."""
    by_id: dict[str, list[str]] = {}
    for received in events:
        if received.event.connection_id in facts.connection_ids:  # a foreign id is reported as such already
            by_id.setdefault(received.event.connection_id, []).append(received.event.type)
    if facts.media_path != "relay" or len(by_id) < 2:
        return []
    parts = "; ".join(f"{cid!r} on {', '.join(dict.fromkeys(types))}" for cid, types in sorted(by_id.items()))
    return [Finding("mismatched_ids", f"the session's events carry {len(by_id)} connection ids ({parts}); "
                    "a relay session shares one")]


def _late(events: Sequence[ReceivedEvent], facts: RunFacts, grace_s: float) -> list[Finding]:
    """Events emitted or received after the session's end plus the grace period."""
    if facts.session_ended_at is None:
        return []
    limit = facts.session_ended_at + dt.timedelta(seconds=grace_s)
    findings = []
    for received in events:
        for verb, at in (("emitted", received.event.emitted_at), ("received", received.received_at)):
            if at is not None and at > limit:
                after_s = (at - facts.session_ended_at).total_seconds()
                findings.append(Finding("late", f"{received.event.type} {verb} {after_s:.1f} s after the "
                                        f"session ended (grace {grace_s:g} s)"))
                break
    return findings


def _ttff(events: Sequence[ReceivedEvent], facts: RunFacts, tolerance_s: float) -> list[Finding]:
    """playback_ready's ttff against the first frame the harness measured."""
    ready = [r.event.figure("ttff_ms") for r in events if r.event.type == "playback_ready"]
    if facts.first_frame_s is None or not ready or ready[0] is None:
        return []
    scope_s = ready[0] / 1000.0
    if abs(scope_s - facts.first_frame_s) <= tolerance_s:
        return []
    return [Finding("ttff_disagrees", f"playback_ready says {scope_s:.2f} s, the harness measured "
                    f"{facts.first_frame_s:.2f} s (tolerance {tolerance_s:g} s)")]


def heartbeat_fps(heartbeats: Sequence[ReceivedEvent]) -> tuple[float, str] | None:
    """Scope's output fps: between the last two heartbeats when possible, else the last one's fps_out.

    A heartbeat's fps_out is the average since the stream started, start-up included; the rate
    between two heartbeats is the steady one, which is what the harness's fps_received measures.
    """
    if len(heartbeats) >= 2:
        older, newer = heartbeats[-2].event, heartbeats[-1].event
        frames = _difference(older.figure("frames_out"), newer.figure("frames_out"))
        elapsed_ms = _difference(older.figure("elapsed_ms"), newer.figure("elapsed_ms"))
        if frames is not None and elapsed_ms is not None and elapsed_ms > 0:
            return frames / (elapsed_ms / 1000.0), "between the last two heartbeats"
    fps_out = heartbeats[-1].event.figure("fps_out") if heartbeats else None
    return None if fps_out is None else (fps_out, "the last heartbeat's average since start")


def _difference(older: float | None, newer: float | None) -> float | None:
    """newer - older when both are known and the counter did not go back, else None."""
    return newer - older if older is not None and newer is not None and newer >= older else None


def _fps(events: Sequence[ReceivedEvent], facts: RunFacts, tolerance: float) -> list[Finding]:
    """Scope's heartbeat fps against the fps the harness received."""
    measured = heartbeat_fps([r for r in events if r.event.type == HEARTBEAT])
    if facts.fps_received is None or measured is None:
        return []
    scope_fps, how = measured
    received = facts.fps_received
    apart = abs(scope_fps - received) / received if received > 0 else (math.inf if scope_fps > 0 else 0.0)
    if apart <= tolerance:
        return []
    share = "all" if math.isinf(apart) else f"{apart:.0%}"
    return [Finding("fps_disagrees", f"Scope {scope_fps:.1f} fps ({how}), received {received:.1f} fps "
                    f"({share} apart, tolerance {tolerance:.0%})")]


def audit(events: Sequence[ReceivedEvent], facts: RunFacts, settings: EventsSettings, *,
          ambiguous: int = 0) -> AuditResult:
    """Audit the events joined to one run; `ambiguous`: null-id events left out because runs competed."""
    ordered = _in_emission_order(events)
    types = [r.event.type for r in ordered]
    expected = expected_sequence(facts, settings)
    findings = [*_missing(types, expected), *_duplicated(types), *_out_of_order(ordered, expected),
                *_id_findings(ordered, facts), *_late(ordered, facts, settings.grace_s),
                *_ttff(ordered, facts, settings.ttff_tolerance_s),
                *_fps(ordered, facts, settings.fps_tolerance_ratio)]
    if ambiguous:
        findings.append(Finding("null_ids", f"ambiguous join: {ambiguous} event(s) without ids fall in the "
                                "session window, but concurrent runs could claim them; none were joined"))
    unique = tuple(sorted(set(findings)))
    return AuditResult(findings=unique, expected=expected, seen_types=tuple(types), complete=not unique)


def audit_run(received: Sequence[ReceivedEvent], facts: RunFacts, settings: EventsSettings,
              competing: int = 0) -> tuple[list[ReceivedEvent], AuditResult]:
    """Join a run's events out of everything read, and audit them; `competing`: concurrent runs."""
    joined = join(received, facts, competing, grace_s=settings.grace_s)
    left_out = ambiguous_null_ids(received, facts, competing, grace_s=settings.grace_s)
    return joined, audit(joined, facts, settings, ambiguous=left_out)
