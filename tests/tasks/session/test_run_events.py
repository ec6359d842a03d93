"""A run's event source and audit: no source, an unreachable one, a recorded session."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from pathlib import Path

from config.events import EventsSettings
from tasks.events.audit import RunFacts
from tasks.events.file_source import FileEventSource
from tasks.session.run_events import RunEvents

RECORDING = Path(__file__).resolve().parents[2] / "fixtures" / "scope-0.2.4" / "events.jsonl"
# The recording's local WebRTC video session (connection_id probe-conn-1): 2 heartbeats, about 32 s.
PROBE = RunFacts(run_id="probe-conn-1", media_path="local", video_mode=True, connection_ids=("probe-conn-1",),
                 pipeline_ids=("passthrough",), stream_s=30.0, first_frame_s=0.36, fps_received=14.7,
                 session_started_at=dt.datetime(2026, 12, 5, 23, 29, 0, tzinfo=dt.timezone.utc),
                 session_ended_at=dt.datetime(2026, 12, 5, 23, 29, 25, tzinfo=dt.timezone.utc))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_without_a_source_the_run_says_so_and_only_a_required_check_fails():
    events = RunEvents(EventsSettings(), environ={})
    asyncio.run(events.start())
    outcome = asyncio.run(events.settle(PROBE))
    assert outcome.run_fields() == {"events_source": "none", "events_seen": None, "events_findings": (),
                                    "events_complete": None}
    assert outcome.check(EventsSettings()) is None
    required = outcome.check(EventsSettings(required=True))
    assert required is not None and not required.passed and "no events source (not configured)" in required.reason


def test_a_broker_that_does_not_answer_leaves_the_run_without_a_source():
    settings = EventsSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}", connect_timeout_s=1.0)

    async def run() -> tuple[object, float]:
        events = RunEvents(settings, environ={})
        began = time.monotonic()
        await events.start()
        outcome = await events.settle(PROBE)
        return outcome, time.monotonic() - began

    outcome, _ = asyncio.run(run())
    assert outcome.run_fields()["events_source"] == "none"
    assert "127.0.0.1" in (outcome.note or "")
    assert RunEvents.in_flight == 0


def test_a_recorded_session_is_joined_audited_and_lands_as_rows():
    events = RunEvents(EventsSettings(grace_s=0.2), make_source=lambda s, e: FileEventSource(RECORDING))

    async def run():
        await events.start()
        return await events.settle(PROBE)

    outcome = asyncio.run(run())
    fields = outcome.run_fields()
    assert fields["events_source"] == "file" and fields["events_complete"] is True
    assert fields["events_seen"] == 7  # stream_started .. session_closed of probe-conn-1 (2 heartbeats), no pipeline events
    rows = outcome.rows("run-x")
    assert {r.type for r in rows} >= {"stream_started", "playback_ready", "stream_heartbeat", "session_closed"}
    assert all(r.run_id == "run-x" and r.connection_id == "probe-conn-1" for r in rows)
    required = outcome.check(EventsSettings(required=True))
    assert required is not None and required.passed


def test_findings_fail_a_required_check_naming_them():
    late_facts = RunFacts(**{**PROBE.__dict__, "first_frame_s": 5.0})  # Scope said 354 ms
    events = RunEvents(EventsSettings(grace_s=0.2, required=True),
                       make_source=lambda s, e: FileEventSource(RECORDING))

    async def run():
        await events.start()
        return await events.settle(late_facts)

    outcome = asyncio.run(run())
    check = outcome.check(EventsSettings(required=True))
    assert check is not None and not check.passed and "ttff_disagrees" in check.reason
    assert outcome.run_fields()["events_complete"] is False
