"""The per-run event audit and the join, on literal event lists."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from config.events import EventsSettings
from tasks.events.audit import Finding, RunFacts, audit, audit_run, expected_sequence
from tasks.events.envelope import parse_envelope
from tasks.events.join import join
from tasks.events.sources import ReceivedEvent

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
RUN = "run-1"
MANIFEST = "manifest-9"
SETTINGS = EventsSettings()
LOCAL_TYPES = ["stream_started", "session_created", "playback_ready", "stream_heartbeat", "stream_heartbeat",
               "stream_stopped", "session_closed"]
RELAY_TYPES = ["websocket_connected", "pipeline_load_start", "pipeline_loaded", "stream_started", "session_created",
               "stream_heartbeat", "stream_heartbeat", "stream_stopped", "session_closed", "websocket_disconnected"]


def event(event_type: str, at_s: float, *, session: str | None = "s-1", connection: str | None = RUN,
          pipelines: tuple[str, ...] = ("passthrough",), **data: object) -> ReceivedEvent:
    """One received event emitted `at_s` seconds after T0 (read at the same time)."""
    at = T0 + dt.timedelta(seconds=at_s)
    body = {"type": event_type, "timestamp": str(int(at.timestamp() * 1000)), "session_id": session,
            "connection_id": connection, "pipeline_ids": list(pipelines), **data}
    return ReceivedEvent(event=parse_envelope({"id": f"{event_type}-{at_s}", "data": body}), received_at=at,
                         source="file")


def facts(media_path: str = "local", **changes: object) -> RunFacts:
    """A 25-second video run that received frames, ended at T0 + 30 s."""
    ended = T0 + dt.timedelta(seconds=30)
    base = RunFacts(run_id=RUN, media_path=media_path, video_mode=True, connection_ids=(RUN,),  # type: ignore[arg-type]
                    pipeline_ids=("passthrough",), session_started_at=T0, session_ended_at=ended,
                    stream_s=25.0, first_frame_s=0.4, fps_received=14.7, outcome="passed")
    return dataclasses.replace(base, **changes)


def stream(types: list[str], **kwargs: object) -> list[ReceivedEvent]:
    """The types as events one second apart; heartbeats carry a steady 15 fps."""
    events = []
    for i, event_type in enumerate(types):
        figures: dict[str, object] = {}
        if event_type == "stream_heartbeat":
            beat = sum(1 for t in types[:i] if t == "stream_heartbeat") + 1
            figures = {"frames_out": 150 * beat, "elapsed_ms": 10_000 * beat, "fps_out": 14.6}
        if event_type == "playback_ready":
            figures = {"ttff_ms": 380}
        events.append(event(event_type, i + 1, **kwargs, **figures))  # type: ignore[arg-type]
    return events


def kinds(result) -> list[str]:
    return [f.kind for f in result.findings]


# expected sequences per media path

def test_relay_expects_the_full_parity_list_with_two_heartbeats():
    assert list(expected_sequence(facts("relay"), SETTINGS)) == RELAY_TYPES


def test_local_expects_what_0_2_4_emits():
    assert list(expected_sequence(facts(), SETTINGS)) == LOCAL_TYPES


def test_headless_expects_start_and_stop_only():
    assert expected_sequence(facts("headless"), SETTINGS) == ("stream_started", "stream_stopped")


def test_text_mode_expects_no_heartbeat():
    assert "stream_heartbeat" not in expected_sequence(facts(video_mode=False), SETTINGS)
    assert "stream_heartbeat" not in expected_sequence(facts("relay", video_mode=False), SETTINGS)


@pytest.mark.parametrize(("stream_s", "beats"), [(None, 0), (9.9, 0), (10.0, 1), (19.0, 1), (20.0, 2), (300.0, 2)])
def test_heartbeats_expected_per_interval_at_most_two(stream_s, beats):
    assert expected_sequence(facts(stream_s=stream_s), SETTINGS).count("stream_heartbeat") == beats


def test_a_failed_offer_expects_an_error_and_a_closed_session():
    assert expected_sequence(facts(offer_failed=True), SETTINGS) == ("error", "session_closed")


def test_a_run_failed_without_a_frame_owes_no_playback_ready():
    no_frame = facts(outcome="failed", first_frame_s=None, stream_s=None)
    assert expected_sequence(no_frame, SETTINGS) == ("stream_started", "session_created", "stream_stopped",
                                                     "session_closed")


# audits: complete stories

def test_a_complete_local_video_session():
    result = audit(stream(LOCAL_TYPES), facts(), SETTINGS)
    assert result.complete and result.findings == ()
    assert list(result.seen_types) == LOCAL_TYPES


def test_a_complete_relay_session_with_either_run_id():
    events = stream(RELAY_TYPES, connection=MANIFEST)
    assert audit(events, facts("relay", connection_ids=(RUN, MANIFEST)), SETTINGS).complete


def test_a_text_session_without_heartbeats_is_complete():
    types = [t for t in LOCAL_TYPES if t != "stream_heartbeat"]
    assert audit(stream(types), facts(video_mode=False), SETTINGS).complete


def test_a_failed_offer_with_its_error_is_complete():
    events = [event("error", 1, error={"error_type": "webrtc_offer_failed"}), event("session_closed", 2)]
    assert audit(events, facts(offer_failed=True), SETTINGS).complete


# one test per finding kind

def test_missing_names_the_type_and_the_heartbeat_count():
    types = [t for t in LOCAL_TYPES if t != "playback_ready"][:-3] + ["stream_stopped"]
    result = audit(stream(types), facts(), SETTINGS)
    assert [str(f) for f in result.findings] == ["missing: playback_ready", "missing: session_closed",
                                                 "missing: stream_heartbeat (saw 1 of 2)"]
    assert not result.complete


def test_missing_error_of_a_failed_offer():
    result = audit([event("session_closed", 1)], facts(offer_failed=True), SETTINGS)
    assert [str(f) for f in result.findings] == ["missing: error (webrtc_offer_failed or stream_startup_failed)"]


def test_duplicated_once_only_types_but_not_heartbeats_or_errors():
    types = LOCAL_TYPES[:2] + ["session_created"] + LOCAL_TYPES[2:] + ["stream_heartbeat"]
    result = audit(stream(types), facts(), SETTINGS)
    assert Finding("duplicated", "session_created x2") in result.findings
    assert kinds(result).count("duplicated") == 1


def test_out_of_order_stop_before_start():
    types = ["stream_stopped"] + [t for t in LOCAL_TYPES if t != "stream_stopped"]
    result = audit(stream(types), facts(), SETTINGS)
    assert [str(f) for f in result.findings] == [
        "out_of_order: stream_stopped before stream_started, session_created, playback_ready, stream_heartbeat"]


def test_out_of_order_is_judged_by_emission_time_not_arrival():
    events = stream(LOCAL_TYPES)
    assert audit(list(reversed(events)), facts(), SETTINGS).complete


def test_null_ids_on_a_tagged_run():
    events = stream(LOCAL_TYPES)
    events[-1] = event("session_closed", 8, connection=None)
    assert [str(f) for f in audit(events, facts(), SETTINGS).findings] == [
        "null_ids: session_closed carry no connection_id"]


def test_null_ids_on_headless_always():
    events = stream(["stream_started", "stream_stopped"], connection=None)
    result = audit(events, facts("headless", connection_ids=()), SETTINGS)
    assert kinds(result) == ["null_ids"] and "headless" in result.findings[0].detail


def test_mismatched_ids_names_the_foreign_id():
    events = stream(RELAY_TYPES)
    events[4] = event("session_created", 5, connection="cloud-side-id")
    result = audit(events, facts("relay"), SETTINGS)
    assert [str(f) for f in result.findings] == [
        "mismatched_ids: session_created carry connection_id 'cloud-side-id', not the run's (run-1)"]


def test_late_after_end_plus_grace():
    events = stream(LOCAL_TYPES)
    events[-1] = event("session_closed", 36)  # ended at 30 s, grace 5 s
    assert [str(f) for f in audit(events, facts(), SETTINGS).findings] == [
        "late: session_closed emitted 6.0 s after the session ended (grace 5 s)"]
    assert audit(events[:-1] + [event("session_closed", 35)], facts(), SETTINGS).complete


def test_late_when_received_after_the_grace_even_if_emitted_in_time():
    events = stream(LOCAL_TYPES)
    events[-1] = dataclasses.replace(events[-1], received_at=T0 + dt.timedelta(seconds=40))
    assert [str(f) for f in audit(events, facts(), SETTINGS).findings] == [
        "late: session_closed received 10.0 s after the session ended (grace 5 s)"]


def test_ttff_disagrees_beyond_the_tolerance():
    result = audit(stream(LOCAL_TYPES), facts(first_frame_s=2.0), SETTINGS)
    assert [str(f) for f in result.findings] == [
        "ttff_disagrees: playback_ready says 0.38 s, the harness measured 2.00 s (tolerance 1 s)"]
    assert audit(stream(LOCAL_TYPES), facts(first_frame_s=1.3), SETTINGS).complete


def test_fps_disagrees_uses_the_rate_between_the_last_two_heartbeats():
    result = audit(stream(LOCAL_TYPES), facts(fps_received=10.0), SETTINGS)
    assert [str(f) for f in result.findings] == [
        "fps_disagrees: Scope 15.0 fps (between the last two heartbeats), received 10.0 fps "
        "(50% apart, tolerance 25%)"]


def test_fps_of_a_single_heartbeat_is_its_average_since_start():
    types = [t for t in LOCAL_TYPES if t != "stream_heartbeat"][:3] + ["stream_heartbeat"] + LOCAL_TYPES[-2:]
    result = audit(stream(types), facts(stream_s=15.0, fps_received=5.0), SETTINGS)
    assert kinds(result) == ["fps_disagrees"] and "average since start" in result.findings[0].detail


def test_figures_not_measured_are_not_compared():
    unmeasured = facts(first_frame_s=None, fps_received=None, session_ended_at=None)
    events = stream(LOCAL_TYPES)
    events[-1] = event("session_closed", 99)
    assert audit(events, unmeasured, SETTINGS).complete


def test_findings_are_sorted_and_str_is_kind_colon_detail():
    events = stream(["stream_stopped", "stream_started"], connection=None)
    result = audit(events, facts(), SETTINGS)
    assert list(result.findings) == sorted(result.findings)
    assert all(str(f) == f"{f.kind}: {f.detail}" for f in result.findings)
    assert result == audit(list(reversed(events)), facts(), SETTINGS)


# the join out of a topic every instance shares

def test_join_by_connection_id_and_by_shared_session_id():
    ours = stream(LOCAL_TYPES[:3])
    cloud_side = event("stream_heartbeat", 4, connection="cloud-side-id")  # same session s-1
    other_run = event("stream_started", 2, session="s-2", connection="run-2")
    assert join([*ours, cloud_side, other_run], facts()) == [*ours, cloud_side]


def test_join_claims_untagged_events_by_window_and_pipeline():
    started = event("stream_started", 1, session="h-1", connection=None)
    stopped = event("stream_stopped", 20, session="h-1", connection=None)
    closed_no_pipeline = event("session_closed", 21, session="h-1", connection=None, pipelines=())
    other_pipeline = event("stream_started", 2, session="h-2", connection=None, pipelines=("gray",))
    after_grace = event("stream_started", 36, session="h-3", connection=None)
    before_start = event("stream_started", -1, session="h-4", connection=None)
    load = event("pipeline_loaded", 1, session=None, connection=None)
    received = [started, stopped, closed_no_pipeline, other_pipeline, after_grace, before_start, load]
    assert join(received, facts("headless", connection_ids=())) == [started, stopped, closed_no_pipeline]


def test_join_refuses_untagged_events_when_runs_compete_and_the_audit_says_so():
    received = stream(["stream_started", "stream_stopped"], connection=None)
    headless = facts("headless", connection_ids=())
    assert join(received, headless, competing=1) == []
    joined, result = audit_run(received, headless, SETTINGS, competing=1)
    assert joined == []
    assert "missing: stream_started" in [str(f) for f in result.findings]
    assert any(f.kind == "null_ids" and "ambiguous join: 2 event(s)" in f.detail for f in result.findings)


def test_audit_run_joins_then_audits():
    received = [*stream(LOCAL_TYPES), event("stream_started", 3, session="s-2", connection="run-2")]
    joined, result = audit_run(received, facts(), SETTINGS)
    assert len(joined) == len(LOCAL_TYPES) and result.complete


def test_a_relay_session_split_between_the_run_id_and_the_manifest_id_is_mismatched():
    relay = facts("relay", connection_ids=(RUN, MANIFEST))
    local_side = {"session_created", "stream_started", "stream_heartbeat", "stream_stopped", "session_closed"}
    split = [dataclasses.replace(e, event=dataclasses.replace(e.event, connection_id=RUN if e.event.type in local_side
                                                              else MANIFEST)) for e in stream(RELAY_TYPES)]
    result = audit(split, relay, SETTINGS)
    assert kinds(result) == ["mismatched_ids"] and "2 connection ids" in result.findings[0].detail
    assert audit(stream(RELAY_TYPES, connection=MANIFEST), relay, SETTINGS).complete
