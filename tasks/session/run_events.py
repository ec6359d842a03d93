"""The Scope events of one run: read from before its first Scope call, joined and audited at its end.

    prepare  `start()`: the source (Kafka, config `events`) begins reading the shared topic from now;
             no source configured, or none answering within its timeout, leaves the run without
             one ("no events source") and the run goes on
    finish   `settle(facts)`: wait for the session's last events: until the expected closing events
             arrived, at most `grace_s`; when something is still missing after that, once more
             `grace_s`, so an event that comes late is told apart from one that never comes. Then
             stop the source, join the run's events out of the topic and audit them.

The audit never changes the verdict unless config makes `events` a required check. Runs read the
same topic concurrently; how many are in flight in this process is what the join's ambiguity rule
counts as competing for events that carry no ids.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from analytics.records import EventRecord
from config.events import EventsSettings
from tasks.events.audit import AuditResult, RunFacts, audit_run, expected_sequence
from tasks.events.envelope import ScopeEvent
from tasks.events.kafka_source import EventSourceUnavailable, KafkaEventSource
from tasks.events.sources import EventSource, ReceivedEvent
from tasks.session.checks import CheckResult
from tasks.session.inputs import pipelines_to_load
from tasks.session.phases import PhaseResults

if TYPE_CHECKING:
    from tasks.session.lifecycle import Session

SETTLE_POLL_S = 0.1
CHECK_NAME = "events"
NO_SOURCE = "none"
CLOSING_EVENTS = ("session_closed", "websocket_disconnected", "stream_stopped")


@dataclass(frozen=True)
class EventsOutcome:
    """What the events of one run said: where they came from, the run's own, the audit."""

    source: str  # kafka, file, or none
    joined: tuple[ReceivedEvent, ...] = ()
    result: AuditResult | None = None
    note: str | None = None  # why there was no source

    def run_fields(self) -> dict[str, object]:
        """The run row's events columns."""
        if self.result is None:
            return {"events_source": NO_SOURCE, "events_seen": None, "events_findings": (), "events_complete": None}
        return {"events_source": self.source, "events_seen": len(self.joined),
                "events_findings": tuple(str(f) for f in self.result.findings),
                "events_complete": self.result.complete}

    def check(self, settings: EventsSettings) -> CheckResult | None:
        """The `events` check when config requires it (no source fails it too), else None."""
        if not settings.required:
            return None
        if self.result is None:
            return CheckResult(CHECK_NAME, False, f"events are required but there is no events source "
                               f"({self.note})", None)
        reason = ("the events told the whole story" if self.result.complete else
                  "; ".join(str(f) for f in self.result.findings[:3])
                  + (f" (+{len(self.result.findings) - 3} more)" if len(self.result.findings) > 3 else ""))
        return CheckResult(CHECK_NAME, self.result.complete, reason, float(len(self.result.findings)))

    def rows(self, run_id: str) -> list[EventRecord]:
        """The joined events as lake rows."""
        return [event_row(run_id, received) for received in self.joined]


def event_row(run_id: str, received: ReceivedEvent) -> EventRecord:
    """One joined event as an `events` row."""
    import json

    event: ScopeEvent = received.event
    return EventRecord(
        run_id=run_id, received_at=received.received_at, event_id=event.event_id or "-", type=event.type,
        emitted_at=event.emitted_at, session_id=event.session_id, connection_id=event.connection_id,
        user_id=event.user_id, pipeline_ids=event.pipeline_ids,
        payload=json.dumps(event.data, sort_keys=True, default=str), source=received.source,  # type: ignore[arg-type]
        topic=received.topic, partition=received.partition, offset=received.offset,
    )


def kafka_source(settings: EventsSettings, environ: Mapping[str, str]) -> EventSource | None:
    """The configured Kafka source, or None when no bootstrap servers are configured."""
    if not (settings.bootstrap_servers or environ.get(settings.bootstrap_env)):
        return None
    return KafkaEventSource(settings, environ=environ)


class RunEvents:
    """One run's event source and audit."""

    in_flight: ClassVar[int] = 0  # runs of this process between start and settle: they compete for null-id events

    def __init__(self, settings: EventsSettings, *, environ: Mapping[str, str] | None = None,
                 make_source: Callable[[EventsSettings, Mapping[str, str]], EventSource | None] = kafka_source) -> None:
        self.settings = settings
        self._source = make_source(settings, os.environ if environ is None else environ)
        self.note: str | None = None if self._source is not None else "not configured"
        self._counted = False

    async def start(self) -> None:
        """Begin reading (never raises: an unreachable source leaves the run without one)."""
        if self._source is None:
            return
        try:
            await self._source.start()
        except EventSourceUnavailable as error:
            self.note, self._source = str(error), None
            return
        RunEvents.in_flight += 1
        self._counted = True

    async def settle(self, facts: RunFacts) -> EventsOutcome:
        """Wait for the session's last events, stop the source, join and audit (never raises)."""
        source = self._source
        if source is None:
            return EventsOutcome(NO_SOURCE, note=self.note)
        competing = max(0, RunEvents.in_flight - 1)
        try:
            await self._wait_for_closing(source, facts)
        finally:
            await source.stop()
            if self._counted:
                RunEvents.in_flight -= 1
                self._counted = False
        joined, result = audit_run(source.received(), facts, self.settings, competing)
        return EventsOutcome(source.name, tuple(joined), result)

    async def _wait_for_closing(self, source: EventSource, facts: RunFacts) -> None:
        """Until the expected closing events are in, at most grace_s; if the story is still short, grace_s more."""
        expected = expected_sequence(facts, self.settings)
        closing = [t for t in CLOSING_EVENTS if t in expected]
        loop = asyncio.get_running_loop()
        for _ in range(2):
            deadline = loop.time() + self.settings.grace_s
            while loop.time() < deadline:
                if _complete_enough(source, facts, expected, closing, self.settings):
                    return
                await asyncio.sleep(SETTLE_POLL_S)

    async def close(self) -> None:
        """Stop the source if the run never settled (bounded, never raises)."""
        if self._source is not None:
            await self._source.stop()
        if self._counted:
            RunEvents.in_flight -= 1
            self._counted = False


def _complete_enough(source: EventSource, facts: RunFacts, expected: tuple[str, ...], closing: list[str],
                     settings: EventsSettings) -> bool:
    """Every expected type of the run has arrived (closing ones included)."""
    joined, _ = audit_run(source.received(), facts, settings)
    seen = {r.event.type for r in joined}
    return all(t in seen for t in closing) and all(t in seen for t in expected)


def run_facts(session: Session, results: PhaseResults, steady_fps: float | None) -> RunFacts:
    """What the harness measured of the run, for its events' audit (`steady_fps`: the monitor's)."""
    path = results.media_path.value if results.media_path is not None else (
        "headless" if session.driver.name == "headless" else "local")
    connection_ids = (session.identity.run_id,)
    if path == "relay" and results.connected is not None and results.connected.connection_id:
        connection_ids += (results.connected.connection_id,)  # the cloud's manifest id
    figures = session.driver.receiver_figures()
    fps = figures.fps_received if figures is not None and figures.fps_received is not None else steady_fps
    failure = results.failure
    return RunFacts(
        run_id=session.identity.run_id, media_path=path, video_mode=session.scenario.mode == "v2v",  # type: ignore[arg-type]
        connection_ids=connection_ids, pipeline_ids=tuple(pipelines_to_load(session.scenario)),
        session_started_at=session.identity.started_at, session_ended_at=session.clock(),
        stream_s=results.streamed.stream_s if results.streamed else None,
        first_frame_s=results.started.first_frame_s if results.started else None, fps_received=fps,
        outcome="failed" if failure is not None else None,
        failure_phase=failure.phase.value if failure is not None and failure.phase is not None else None,
        failure_reason=failure.message if failure is not None else None,
        offer_failed=(session.driver.name == "webrtc" and failure is not None and failure.phase is not None
                      and failure.phase.value == "start" and not session.offer_answered),
    )
