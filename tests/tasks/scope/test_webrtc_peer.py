"""ScopePeer over real loopback WebRTC against a minimal aiortc answering peer started in the test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from errors import Category, PhaseFailed, ScopeHTTPError
from tasks.scope.arrivals import FrameArrivals
from tasks.scope.models import WebRTCAnswer
from tasks.scope.webrtc import OfferPlan, ScopePeer, encoded_clip, luma_plane
from tasks.session.inputs import VIDEO, ensure_local_input

pytestmark = pytest.mark.timeout(60)

OUTPUT_FPS = 15
OUTPUT_SIZE = 64
DEADLINE_S = 10.0


async def wait_for(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Return once `condition()` holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


def prompt_level(prompt: str) -> int:
    """The grey level the answering peer paints for a prompt."""
    return 40 + hashlib.sha256(prompt.encode()).digest()[0] % 180


class PromptTrack(MediaStreamTrack):
    """Output frames at OUTPUT_FPS whose grey level follows the latest prompt."""

    kind = "video"

    def __init__(self, answerer: Answerer) -> None:
        super().__init__()
        self.answerer = answerer
        self.sent = 0
        self.started = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live" or self.answerer.killed:
            raise MediaStreamError
        await asyncio.sleep(max(0.0, self.started + self.sent / OUTPUT_FPS - time.monotonic()))
        plane = np.full((OUTPUT_SIZE, OUTPUT_SIZE, 3), prompt_level(self.answerer.prompt), np.uint8)
        frame = av.VideoFrame.from_ndarray(plane, format="rgb24")
        frame.pts, frame.time_base = self.sent, Fraction(1, OUTPUT_FPS)
        self.sent += 1
        return frame


class Answerer:
    """The Scope side: answers offers like /webrtc/offer, paints the prompt, counts input frames."""

    def __init__(self, *, status: int = 200, detail: str = "") -> None:
        self.status, self.detail = status, detail
        self.bodies: list[dict] = []
        self.pcs: list[RTCPeerConnection] = []
        self.sessions: dict[str, RTCPeerConnection] = {}  # live sessions by id, in offer order
        self.prompt = "first"
        self.frames_in = 0
        self.killed = False
        self.tasks: list[asyncio.Task] = []

    async def webrtc_offer(self, body: dict) -> WebRTCAnswer:
        self.bodies.append(body)
        if self.status != 200:
            raise ScopeHTTPError(self.detail, route="POST /api/v1/webrtc/offer", status=self.status,
                                 category=Category.RUNNER)
        prompts = body["initialParameters"].get("prompts") or [{"text": "first"}]
        self.prompt = prompts[0]["text"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        pc.on("datachannel", lambda channel: channel.on("message", self._on_message))
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        pc.addTrack(PromptTrack(self))
        await pc.setLocalDescription(await pc.createAnswer())
        session_id = str(uuid.uuid4())
        self.sessions[session_id] = pc
        return WebRTCAnswer(sdp=pc.localDescription.sdp, type="answer", sessionId=session_id)

    async def end(self, session_id: str) -> bool:
        """What DELETE /webrtc/offer/{id} does: close that session's connection (False: unknown id)."""
        pc = self.sessions.pop(session_id, None)
        if pc is not None:
            await pc.close()
        return pc is not None

    def _on_message(self, message: str) -> None:
        prompts = json.loads(message).get("prompts")
        if prompts:
            self.prompt = prompts[0]["text"]

    def _on_track(self, track: MediaStreamTrack) -> None:
        async def consume() -> None:
            try:
                while True:
                    await track.recv()
                    self.frames_in += 1
            except MediaStreamError:
                pass
        self.tasks.append(asyncio.ensure_future(consume()))

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        for task in self.tasks:  # a track whose connection never started never ends by itself
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="function")
async def answerer():
    scope = Answerer()
    yield scope
    await scope.close()


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    return ensure_local_input(VIDEO, tmp_path_factory.mktemp("inputs"))


def video_plan(clip: Path | None, prompt: str = "first") -> OfferPlan:
    mode = "video" if clip else "text"
    return OfferPlan({"pipeline_ids": ["passthrough"], "input_mode": mode, "produces_video": True,
                      "prompts": [{"text": prompt, "weight": 1.0}]},
                     connection_id="run-1", user_id="tester", clip=clip)


async def test_video_mode_sends_the_clip_and_receives_every_frame(answerer, clip_path):
    peer = ScopePeer(answerer)
    try:
        await peer.open(video_plan(clip_path))
        await wait_for(lambda: peer.frames_received >= 10 and answerer.frames_in >= 10)
    finally:
        await peer.close()
    body = answerer.bodies[0]
    assert body["connection_id"] == "run-1" and body["user_id"] == "tester"
    assert body["initialParameters"]["input_mode"] == "video"
    assert "a=sendrecv" in body["sdp"] and "VP8" in body["sdp"] and "H264" not in body["sdp"]
    assert peer.codec == "VP8" and peer.frames_sent >= answerer.frames_in
    assert luma_plane(peer.latest).shape == (OUTPUT_SIZE, OUTPUT_SIZE)


async def test_text_mode_offers_sendrecv_without_a_track_and_receives(answerer):
    peer = ScopePeer(answerer)
    try:
        await peer.open(video_plan(None))
        await wait_for(lambda: peer.frames_received >= 5)
    finally:
        await peer.close()
    assert "a=sendrecv" in answerer.bodies[0]["sdp"]
    assert answerer.frames_in == 0 and peer.frames_sent == 0


async def test_prompt_switch_on_the_data_channel_changes_the_output(answerer):
    peer = ScopePeer(answerer)
    try:
        await peer.open(video_plan(None, prompt="a"))
        await wait_for(lambda: peer.latest is not None and peer.channel_open)
        assert abs(int(np.median(luma_plane(peer.latest))) - prompt_level("a")) <= 3
        assert peer.send_parameters({"prompts": [{"text": "b", "weight": 1.0}]})
        await wait_for(lambda: abs(int(np.median(luma_plane(peer.latest))) - prompt_level("b")) <= 3)
    finally:
        await peer.close()


async def test_arrivals_count_fps_close_to_what_was_sent(answerer):
    peer = ScopePeer(answerer)
    try:
        await peer.open(video_plan(None))
        await wait_for(lambda: peer.frames_received >= 1)
        await asyncio.sleep(2.2)  # a stream of known length, measured, not waited on for a condition
        figures = peer.arrivals.figures(warmup_s=0.0, until=time.monotonic())
        stats = await peer.network_stats()
    finally:
        await peer.close()
    assert figures.fps_received == pytest.approx(OUTPUT_FPS, rel=0.15)
    assert figures.freeze_count == 0
    assert stats.packets_received and stats.packets_lost == 0 and stats.codec == "VP8"


async def test_the_answering_side_ending_is_seen_as_the_session_ending(answerer):
    peer = ScopePeer(answerer)
    try:
        await peer.open(video_plan(None))
        await wait_for(lambda: peer.frames_received >= 1)
        await answerer.pcs[0].close()
        await wait_for(lambda: peer.ended_reason is not None)
    finally:
        await peer.close()
    assert "closed" in peer.ended_reason or "ended" in peer.ended_reason or "failed" in peer.ended_reason


async def test_our_own_close_is_not_an_ending_under_us(answerer):
    peer = ScopePeer(answerer)
    await peer.open(video_plan(None))
    await wait_for(lambda: peer.frames_received >= 1)
    await peer.close()
    await peer.close()
    assert peer.ended_reason is None


async def test_a_refused_offer_keeps_the_scope_error_and_the_peer_closes():
    scope = Answerer(status=400, detail="Pipeline not loaded. Please load pipeline first.")
    peer = ScopePeer(scope)
    with pytest.raises(ScopeHTTPError):
        await peer.open(video_plan(None))
    await peer.close()
    assert peer.session_id is None


async def test_a_garbage_answer_is_a_protocol_failure(answerer):
    async def garbage(body: dict) -> WebRTCAnswer:
        return WebRTCAnswer(sdp="v=0\r\ngarbage\r\n", type="answer", sessionId="s-1")

    answerer.webrtc_offer = garbage
    peer = ScopePeer(answerer)
    with pytest.raises(PhaseFailed) as caught:
        await peer.open(video_plan(None))
    await peer.close()
    assert caught.value.category == Category.PROTOCOL and peer.session_id == "s-1"


def test_an_unreadable_clip_is_a_harness_failure(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(PhaseFailed) as caught:
        encoded_clip(bad)
    assert caught.value.category == Category.HARNESS


def test_the_clip_is_encoded_once_with_a_keyframe_each_second(clip_path):
    clip = encoded_clip(clip_path)
    assert encoded_clip(clip_path) is clip
    assert clip.fps == 12 and len(clip.packets) == 48 and (clip.width, clip.height) == (512, 512)
    decoder = av.CodecContext.create("vp8", "r")
    keyframes = [index for index, data in enumerate(clip.packets) if data[0] & 1 == 0]
    assert keyframes == [0, 12, 24, 36]
    frames = [frame for data in clip.packets for frame in decoder.decode(av.Packet(data))]
    assert len(frames) == 48


def arrivals_at(times: list[float]) -> FrameArrivals:
    arrivals = FrameArrivals()
    for at in times:
        arrivals.add(at)
    return arrivals


def test_a_gap_is_a_freeze_only_past_the_w3c_bound():
    steady = [i / 15 for i in range(40)]  # 66.7 ms apart: the bound is mean + 150 ms = 216.7 ms
    just_under = arrivals_at(steady + [steady[-1] + 0.210, steady[-1] + 0.210 + 1 / 15])
    over = arrivals_at(steady + [steady[-1] + 0.230, steady[-1] + 0.230 + 1 / 15])
    assert just_under.freeze_count == 0
    assert over.freeze_count == 1 and over.freeze_total_s == pytest.approx(0.230)


def test_slow_streams_use_three_times_the_mean():
    slow = [i * 0.5 for i in range(31)]  # 2 fps: 3 x 500 ms beats 500 + 150 ms
    assert arrivals_at(slow + [15.0 + 1.4]).freeze_count == 0
    assert arrivals_at(slow + [15.0 + 1.6]).freeze_count == 1


def test_fps_after_the_warm_up_with_window_percentiles_and_gaps():
    times = [i / 10 for i in range(50)] + [5.0 + i / 20 for i in range(100)]  # 10 fps, then 20 fps
    figures = arrivals_at(times).figures(warmup_s=5.0, until=10.0)
    assert figures.fps_received == pytest.approx(20.0, rel=0.01)
    assert figures.fps_received_p50 == 20 and figures.fps_received_p05 == pytest.approx(20, abs=1)
    assert figures.frame_interval_max_ms == pytest.approx(100.0)
    assert arrivals_at(times).figures(warmup_s=9.5, until=10.0).fps_received is None
    assert arrivals_at([]).figures(warmup_s=0, until=1.0).frames_received == 0
