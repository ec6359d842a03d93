"""The offline audit of real Scope 0.2.4's recorded events (tests/fixtures/scope-0.2.4/events.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.events.file_audit import SessionAudit, audit_file, group_sessions
from tasks.events.file_source import read_jsonl

RECORDING = Path(__file__).resolve().parents[2] / "fixtures" / "scope-0.2.4" / "events.jsonl"
VIDEO = "3c234d9d-0d07-44fd-92b1-bdca1050a9dc"  # q8_webrtc: offer tagged probe-conn-1
HEADLESS = "d44653be-6edb-47ad-9115-382bfc8314e5"  # controller-viz via /session/start
TEXT = "b49e13ee-8b27-49d3-a0b3-46c8ccd5fca6"  # q8_text: controller-viz over WebRTC, no input track
NOT_LOADED = "f931d7ed-8a9d-4e2c-be27-532f755bc639"  # q8_notloaded: gray offered, not loaded
GARBAGE_OFFER = "7340e567-314c-4786-82a9-b2d636e11001"  # bad SDP without pipeline ids
STALLED_INPUT = "b733c263-4cc9-4feb-86d0-53e5ff177dd5"  # 80 input frames, then ~30 s until ICE consent
SHORT_VIDEO = "90d2d016-06b7-4622-833b-bdc2b00794f0"  # q1_patch: 8 s, shorter than a heartbeat


@pytest.fixture(scope="module")
def sessions() -> dict[str, SessionAudit]:
    events, skipped = read_jsonl(RECORDING)
    assert skipped == []
    return {audit.session_id: audit for audit in audit_file(events)}


def test_every_session_is_found_in_the_order_they_began(sessions):
    assert list(sessions) == [VIDEO, HEADLESS, TEXT, NOT_LOADED, GARBAGE_OFFER, STALLED_INPUT, SHORT_VIDEO]


def test_pipeline_events_belong_to_no_session():
    groups = group_sessions(read_jsonl(RECORDING)[0])
    assert {r.event.type for r in groups.unattached} == {"pipeline_load_start", "pipeline_loaded",
                                                          "pipeline_unloaded"}


def test_the_tagged_video_session_is_complete_for_local_mode(sessions):
    video = sessions[VIDEO]
    assert (video.kind, video.connection_ids, video.events) == ("local webrtc video", ("probe-conn-1",), 7)
    assert video.result.complete and video.result.seen_types.count("stream_heartbeat") == 2


def test_the_text_session_owes_no_heartbeat(sessions):
    text = sessions[TEXT]
    assert text.kind == "local webrtc text" and not text.video_mode
    assert text.result.complete and "stream_heartbeat" not in text.result.expected


def test_the_headless_session_is_flagged_null_ids(sessions):
    headless = sessions[HEADLESS]
    assert headless.kind == "headless text"
    assert [f.kind for f in headless.result.findings] == ["null_ids"]


def test_failed_offers_are_matched_to_their_errors(sessions):
    assert sessions[NOT_LOADED].kind == "local failed offer"
    assert sessions[NOT_LOADED].error_types == ("stream_startup_failed",)
    assert sessions[GARBAGE_OFFER].error_types == ("stream_startup_failed", "webrtc_offer_failed")
    assert sessions[NOT_LOADED].result.complete and sessions[GARBAGE_OFFER].result.complete


def test_a_video_session_whose_input_stopped_misses_its_heartbeats(sessions):
    assert [str(f) for f in sessions[STALLED_INPUT].result.findings] == ["missing: stream_heartbeat (saw 0 of 2)"]


def test_a_video_session_shorter_than_a_heartbeat_is_complete(sessions):
    assert sessions[SHORT_VIDEO].video_mode and sessions[SHORT_VIDEO].result.complete
