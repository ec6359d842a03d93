"""The offline audit of a recorded event stream, without the harness's knowledge of any run.

Events are grouped by session_id; an event without one joins the sessions that share its
connection_id (relay: websocket_* and pipeline_* events tagged with the manifest id); untagged
pipeline_* events belong to no session. Each session's kind is read from its own events:
- a failed offer: an `error` of type webrtc_offer_failed or stream_startup_failed (in the recording
  both come from the offer handler, even without a session_created, so such a session is WebRTC);
- relay: a websocket_* event, or a `data.mode` other than "local" (0.2.4 tags local sessions
  "local"; the cloud path is the one that says otherwise);
- WebRTC (local or relay) when there is a session_created or playback_ready, else headless;
- video mode when a heartbeat came or any event counted input frames (`frames_in` > 0), else text.
The session's own ids become the facts: its most frequent connection_id names it (others are
`mismatched_ids`); an offer that carried no id at all is the client's choice, not a finding, but
a headless session is always `null_ids` (0.2.4 cannot tag one). stream_s is stream_started →
stream_stopped; nothing measured by a harness is compared (no ttff, fps or late findings).

On the 0.2.4 recording (tests/fixtures/scope-0.2.4/events.jsonl; the probes of webrtc/q*.json):
- 3c234d9d (q8_webrtc, connection_id probe-conn-1): local WebRTC video, 22 s, 2 heartbeats: complete.
- d44653be (controller-viz, stream_started/stream_stopped only): headless text: `null_ids`.
- b49e13ee (q8_text, controller-viz, frames_in 0, no heartbeat, untagged offer): local WebRTC
  text mode: complete.
- f931d7ed (q8_notloaded, gray not loaded): failed offer, error stream_startup_failed: complete.
- 7340e567 (garbage SDP without pipeline ids): failed offer, errors stream_startup_failed and
  webrtc_offer_failed: complete.
- b733c263 (passthrough, 35 s, frames_in 80, no heartbeat): a video client that stopped sending
  after ~5 s, its session ended ~30 s later (ICE consent); the audit says `missing:
  stream_heartbeat`: from the events alone a stalled input and lost heartbeats look the same.
- 90d2d016 (q1_patch, passthrough, 8 s): local WebRTC video, shorter than a heartbeat: complete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from config.events import EventsSettings
from tasks.events.audit import OFFER_ERROR_TYPES, AuditResult, MediaPath, RunFacts, audit
from tasks.events.join import event_time
from tasks.events.sources import ReceivedEvent


@dataclass(frozen=True)
class SessionGroups:
    """A recording's events by session, and those that belong to none."""

    sessions: dict[str, list[ReceivedEvent]]
    unattached: list[ReceivedEvent]


@dataclass(frozen=True)
class SessionAudit:
    """One session of a recording: its inferred kind, its ids and its audit."""

    session_id: str
    media_path: MediaPath
    webrtc: bool
    video_mode: bool
    offer_failed: bool
    error_types: tuple[str, ...]
    connection_ids: tuple[str, ...]
    pipeline_ids: tuple[str, ...]
    events: int
    result: AuditResult

    @property
    def kind(self) -> str:
        """What the session was, in words: e.g. "local webrtc video", "local failed offer"."""
        if self.offer_failed:
            return f"{self.media_path} failed offer"
        transport = "webrtc " if self.webrtc and self.media_path != "headless" else ""
        return f"{self.media_path} {transport}{'video' if self.video_mode else 'text'}"


def group_sessions(events: Sequence[ReceivedEvent]) -> SessionGroups:
    """The events by session_id; session-less events join the sessions sharing their connection_id."""
    sessions: dict[str, list[ReceivedEvent]] = {}
    for received in events:
        if received.event.session_id is not None:
            sessions.setdefault(received.event.session_id, []).append(received)
    by_connection: dict[str, list[str]] = {}
    for session_id, members in sessions.items():
        for cid in dict.fromkeys(r.event.connection_id for r in members if r.event.connection_id):
            by_connection.setdefault(cid, []).append(session_id)
    unattached = []
    for received in events:
        event = received.event
        if event.session_id is not None:
            continue
        owners = by_connection.get(event.connection_id or "", [])
        for session_id in owners:
            sessions[session_id].append(received)
        if not owners:
            unattached.append(received)
    return SessionGroups(sessions=sessions, unattached=unattached)


def error_types(events: Sequence[ReceivedEvent]) -> tuple[str, ...]:
    """The error_type of each error event, in order."""
    types = []
    for received in events:
        error = received.event.data.get("error") if received.event.type == "error" else None
        if isinstance(error, dict) and isinstance(error.get("error_type"), str):
            types.append(error["error_type"])
    return tuple(types)


def _is_relay(events: Sequence[ReceivedEvent]) -> bool:
    """A websocket_* event (the cloud wrapper's), or a mode other than local."""
    for received in events:
        mode = received.event.data.get("mode")
        if received.event.type.startswith("websocket_") or (isinstance(mode, str) and mode != "local"):
            return True
    return False


def _is_webrtc(events: Sequence[ReceivedEvent]) -> bool:
    """An offer made the session: session_created (a headless start emits none) or playback_ready."""
    return any(r.event.type in ("session_created", "playback_ready") for r in events)


def _is_video_mode(events: Sequence[ReceivedEvent]) -> bool:
    """Input frames arrived: a heartbeat came, or an event counted frames_in > 0."""
    return any(r.event.type == "stream_heartbeat" or (r.event.figure("frames_in") or 0) > 0 for r in events)


def _stream_s(events: Sequence[ReceivedEvent]) -> float | None:
    """Seconds from stream_started to stream_stopped, when both were emitted with a time."""
    times = {r.event.type: r.event.emitted_at for r in events if r.event.type in ("stream_started", "stream_stopped")}
    started, stopped = times.get("stream_started"), times.get("stream_stopped")
    return (stopped - started).total_seconds() if started and stopped else None


def infer_facts(session_id: str, events: Sequence[ReceivedEvent]) -> RunFacts:
    """The facts a harness would have known, read from the session's own events."""
    offer_failed = any(t in OFFER_ERROR_TYPES for t in error_types(events))
    webrtc = offer_failed or _is_webrtc(events)
    media_path: MediaPath = "relay" if _is_relay(events) else "local" if webrtc else "headless"
    ids = Counter(r.event.connection_id for r in events if r.event.connection_id)
    times = sorted(event_time(r) for r in events)
    pipelines = dict.fromkeys(p for r in events for p in r.event.pipeline_ids)
    return RunFacts(
        run_id=session_id, media_path=media_path, video_mode=_is_video_mode(events),
        connection_ids=tuple(cid for cid, _ in ids.most_common(1)), pipeline_ids=tuple(pipelines),
        session_started_at=times[0], session_ended_at=times[-1], stream_s=_stream_s(events),
        offer_failed=offer_failed,
    )


def audit_session(session_id: str, events: Sequence[ReceivedEvent], settings: EventsSettings) -> SessionAudit:
    """Infer one recorded session's kind and audit it against that kind's expectation."""
    facts = infer_facts(session_id, events)
    return SessionAudit(
        session_id=session_id, media_path=facts.media_path, webrtc=facts.media_path != "headless",
        video_mode=facts.video_mode, offer_failed=facts.offer_failed, error_types=error_types(events),
        connection_ids=facts.connection_ids, pipeline_ids=facts.pipeline_ids, events=len(events),
        result=audit(events, facts, settings),
    )


def audit_file(events: Sequence[ReceivedEvent], settings: EventsSettings | None = None) -> list[SessionAudit]:
    """Audit every session of a recorded stream, in the order the sessions began."""
    settings = settings or EventsSettings()
    groups = group_sessions(events)
    audits = [audit_session(sid, members, settings) for sid, members in groups.sessions.items()]
    first_seen = {sid: min(event_time(r) for r in members) for sid, members in groups.sessions.items()}
    return sorted(audits, key=lambda a: first_seen[a.session_id])
