"""The simulator's WebRTC endpoint against a plain aiortc client over real loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import av
import httpx
import numpy as np
import pytest_asyncio
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from sim_helpers import FAST

from simulator.testing import SimHandle

CLIP_FPS = 15
CLIP_PX = 128
OFFER_KEYS = {"sdp", "type", "sessionId"}
METRICS_KEYS = {
    "frames_in", "frames_out", "elapsed_seconds", "fps_in", "fps_out", "pipeline_fps", "output_sinks",
    "input_source_enabled", "input_source_type", "relay_mode",
}


class Clip(MediaStreamTrack):
    """A synthetic orange input clip at 15 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._index, self._t0 = 0, time.monotonic()
        rgb = np.zeros((CLIP_PX, CLIP_PX, 3), np.uint8)
        rgb[:] = (240, 120, 20)
        self._rgb = rgb

    async def recv(self) -> av.VideoFrame:
        """The next input frame, paced."""
        self._index += 1
        await asyncio.sleep(max(0.0, self._t0 + self._index / CLIP_FPS - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self._rgb, format="rgb24")
        frame.pts, frame.time_base = self._index, Fraction(1, CLIP_FPS)
        return frame


class RtcClient:
    """A minimal browser: offers, receives and decodes frames, talks on a data channel."""

    def __init__(self, *, send_clip: bool = True, direction: str = "sendrecv", channel: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: list[tuple[float, int, int, np.ndarray]] = []  # (monotonic, width, height, 1/8-scale luma)
        self.messages: list[dict] = []
        self.session_id: str | None = None
        self.offered_at = 0.0
        self._tasks: list[asyncio.Task] = []
        if send_clip:
            self.pc.addTrack(Clip())
        else:
            self.pc.addTransceiver("video", direction=direction)
        self.channel = self.pc.createDataChannel("parameters") if channel else None
        if self.channel is not None:
            self.channel.on("message", lambda message: self.messages.append(json.loads(message)))
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._receive(track))))

    async def _receive(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            luma = frame.to_ndarray(format="gray")[::8, ::8].astype(np.float32)
            self.frames.append((time.monotonic(), frame.width, frame.height, luma))

    async def offer(self, http: httpx.AsyncClient, initial: dict | None, **extra) -> httpx.Response:
        """POST the offer; on 200 apply the answer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", **extra}
        if initial is not None:
            body["initialParameters"] = initial
        self.offered_at = time.monotonic()
        response = await http.post("/api/v1/webrtc/offer", json=body)
        if response.status_code == 200:
            answer = response.json()
            self.session_id = answer["sessionId"]
            await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        return response

    async def send(self, message: dict) -> None:
        """Send JSON on the data channel once it is open."""
        assert self.channel is not None
        await until(lambda: self.channel.readyState == "open", what="data channel open")
        self.channel.send(json.dumps(message))

    async def close(self) -> None:
        """Close the peer connection and stop receiving."""
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def until(probe: Callable[[], object], *, timeout_s: float = 8.0, what: str = "condition") -> object:
    """Poll `probe` until truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.03)
    return value


async def until_async(probe, *, timeout_s: float = 8.0, what: str = "condition"):
    """Poll the coroutine function `probe` until its result is truthy."""
    deadline = time.monotonic() + timeout_s
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


@pytest_asyncio.fixture(loop_scope="function")
async def http(sim: SimHandle) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on the reset simulator."""
    async with httpx.AsyncClient(base_url=sim.url, timeout=10.0) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")
async def clients() -> AsyncIterator[list[RtcClient]]:
    """Peers made by a test, all closed afterwards."""
    made: list[RtcClient] = []
    yield made
    for client in made:
        await client.close()


async def load(http: httpx.AsyncClient, *pipeline_ids: str) -> None:
    """Load and wait until loaded."""
    assert (await http.post("/api/v1/pipeline/load", json={"pipeline_ids": list(pipeline_ids)})).status_code == 200

    async def loaded() -> bool:
        return (await http.get("/api/v1/pipeline/status")).json()["status"] == "loaded"

    await until_async(loaded, what="loaded")


async def session_truth(http: httpx.AsyncClient, session_id: str) -> dict:
    """The truth record of one WebRTC session."""
    sessions = (await http.get("/_sim/truth")).json()["webrtc_sessions"]
    return next(s for s in sessions if s["session_id"] == session_id)


async def test_offer_errors_match_scope(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v1/webrtc/offer", json={"type": "offer"})).status_code == 422
    bare = {"sdp": "v=0", "type": "offer", "initialParameters": {"pipeline_ids": ["passthrough"]}}
    refused = await http.post("/api/v1/webrtc/offer", json=bare)
    assert refused.status_code == 400 and refused.json() == {"detail": "Pipeline not loaded. Please load pipeline first."}
    await load(http, "passthrough")
    garbage = await http.post("/api/v1/webrtc/offer", json={**bare, "sdp": "garbage"})
    assert garbage.status_code == 500 and garbage.json() == {"detail": "None is not in list"}
    assert (await http.get("/_sim/truth")).json()["live_webrtc_sessions"] == 0


async def test_video_session_streams_and_delete_stops_it(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "passthrough")
    client = RtcClient()
    clients.append(client)
    answer = await client.offer(http, {"pipeline_ids": ["passthrough"], "input_mode": "video"}, connection_id="run-1")
    assert answer.status_code == 200 and set(answer.json()) == OFFER_KEYS and answer.json()["type"] == "answer"
    await until(lambda: len(client.frames) >= 10, what="10 output frames")
    assert {(w, h) for _, w, h, _ in client.frames} == {(512, 512)}
    metrics = (await http.get("/api/v1/session/metrics")).json()
    entry = metrics["sessions"][client.session_id]
    assert METRICS_KEYS <= entry.keys() and entry["relay_mode"] is False and "frames_to_cloud" not in entry
    assert entry["frames_in"] > 0 and entry["frames_out"] >= 10 and entry["output_sinks"] == {}
    frame = await http.get("/api/v1/session/frame")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert (await http.delete(f"/api/v1/webrtc/offer/{client.session_id}")).status_code == 204
    await until(lambda: {"type": "stream_stopped"} in client.messages, what="stream_stopped")
    await until(lambda: client.pc.connectionState == "closed", what="connection closed by the server")
    assert (await http.delete(f"/api/v1/webrtc/offer/{client.session_id}")).status_code == 204
    truth = await session_truth(http, client.session_id)
    assert truth["state"] == "ended" and truth["end_reason"] == "deleted" and truth["media_path"] == "local"
    assert truth["connection_id"] == "run-1" and truth["frames_sent"] >= len(client.frames)
    assert 0 < truth["first_frame_s"] < 3 and truth["frames_in"] > 0
    assert (await http.get("/api/v1/session/metrics")).json()["sessions"] == {}


async def test_text_sendrecv_gets_frames_recvonly_never(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "longlive")
    text = RtcClient(send_clip=False)
    recvonly = RtcClient(send_clip=False, direction="recvonly")
    clients += [text, recvonly]
    initial = {"pipeline_ids": ["longlive"], "input_mode": "text", "prompts": [{"text": "a fox", "weight": 1.0}]}
    assert (await recvonly.offer(http, initial)).status_code == 200
    assert (await text.offer(http, initial)).status_code == 200
    await until(lambda: len(text.frames) >= 10, what="text-mode frames")
    assert recvonly.frames == [] and recvonly.pc.connectionState == "connected"
    truth = await session_truth(http, recvonly.session_id)
    assert truth["frames_sent"] == 0 and "recvonly" in truth["idle_reason"] and truth["state"] == "live"
    metrics = (await http.get("/api/v1/session/metrics")).json()["sessions"]
    assert list(metrics) == [recvonly.session_id]  # only the first session is listed
    assert (await session_truth(http, text.session_id))["prompt_texts"] == ["a fox"]


async def test_prompt_switches_over_channel_and_rest(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "longlive")
    client = RtcClient(send_clip=False)
    clients.append(client)
    await client.offer(http, {"pipeline_ids": ["longlive"], "input_mode": "text", "prompts": [{"text": "a fox"}]})
    await until(lambda: len(client.frames) >= 3, what="frames")
    before = client.frames[-1][3]
    await client.send({"prompts": [{"text": "a lighthouse at night", "weight": 1.0}]})
    await until(lambda: _differs(client.frames[-1][3], before), what="the new prompt's look")
    switch = (await session_truth(http, client.session_id))["prompt_switches"][0]
    assert switch["text"] == "a lighthouse at night" and 0.2 <= switch["effective_at"] - switch["at"] <= 0.6
    rest = await http.post("/api/v1/session/parameters", json={"prompts": [{"text": "a desert", "weight": 1.0}]})
    assert rest.status_code == 200
    echo = await until(lambda: [m for m in client.messages if m.get("type") == "parameters_updated"], what="echo")
    assert echo[0]["parameters"]["prompts"][0]["text"] == "a desert"
    assert (await session_truth(http, client.session_id))["prompt_texts"][-1] == "a desert"
    assert (await http.get("/api/v1/session/parameters")).json()["parameters"]["input_mode"] == "text"


async def test_pause_in_video_mode_breaks_the_sender_for_good(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "passthrough")
    client = RtcClient()
    clients.append(client)
    await client.offer(http, {"pipeline_ids": ["passthrough"], "input_mode": "video"})
    await until(lambda: len(client.frames) >= 5, what="frames")
    await client.send({"paused": True})
    await until_async(lambda: _sender_broken(http, client.session_id), what="sender broken")
    await client.send({"paused": False})
    sent = (await session_truth(http, client.session_id))["frames_sent"]
    received = len(client.frames)
    await asyncio.sleep(1.0)  # an absence: watch one second (15 frames' worth) for any new frame
    assert (await session_truth(http, client.session_id))["frames_sent"] == sent
    assert len(client.frames) <= received + 1  # at most one frame was already on the wire


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    # Frames of one look differ by ~6 luma levels (noise), two prompts' looks by ~50.
    return a.shape != b.shape or float(np.abs(a - b).mean()) > 25


async def _sender_broken(http: httpx.AsyncClient, session_id: str) -> bool:
    return (await session_truth(http, session_id))["sender_broken"]


async def test_pipeline_not_loaded_answers_200_and_sends_nothing(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "passthrough")
    client, control = RtcClient(), RtcClient()
    clients += [client, control]
    assert (await client.offer(http, {"pipeline_ids": ["gray"], "input_mode": "video"})).status_code == 200
    await control.offer(http, {"pipeline_ids": ["passthrough"], "input_mode": "video"})
    await until(lambda: len(control.frames) >= 10, what="the control session's frames")
    assert client.frames == []
    truth = await session_truth(http, client.session_id)
    assert truth["idle_reason"] == "Pipeline gray not loaded" and truth["frames_in"] > 0
    lines = (await http.get("/api/v1/logs/tail", params={"lines": 1000})).json()["lines"]
    assert any("Pipeline gray not loaded" in line for line in lines)


async def test_patch_candidates(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await load(http, "passthrough")
    client = RtcClient()
    clients.append(client)
    await client.offer(http, {"pipeline_ids": ["passthrough"], "input_mode": "video"})
    good = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    path = f"/api/v1/webrtc/offer/{client.session_id}"
    assert (await http.patch(path, json={"candidates": [good]})).status_code == 204
    assert (await http.patch(path, json={"candidates": [{"candidate": "nonsense"}]})).status_code == 404
    assert (await http.patch("/api/v1/webrtc/offer/nope", json={"candidates": [good]})).status_code == 404


async def test_relay_session_on_a_cloud_connected_instance(http: httpx.AsyncClient, clients: list[RtcClient]) -> None:
    await http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})

    async def connected() -> bool:
        return (await http.get("/api/v1/cloud/status")).json()["connected"]

    await until_async(connected, what="connected")
    await load(http, "passthrough")
    client = RtcClient()
    clients.append(client)
    await client.offer(http, {"pipeline_ids": ["passthrough"], "input_mode": "video", "produces_video": True})
    await until(lambda: len(client.frames) >= 5, what="relayed frames")
    entry = (await http.get("/api/v1/session/metrics")).json()["sessions"][client.session_id]
    assert entry["relay_mode"] is True and entry["frames_to_cloud"] > 0 and entry["frames_from_cloud"] >= 5
    assert (await http.get("/api/v1/session/frame")).status_code == 404  # Scope cannot show relayed frames
    truth = await session_truth(http, client.session_id)
    assert truth["relay"] is True and truth["media_path"] == "relay"


async def test_headless_on_a_cloud_connected_instance_runs_locally(http: httpx.AsyncClient, sim: SimHandle) -> None:
    sim.set_profile("stall", {**FAST, "fault_after_s": 0.3})
    await http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})
    await until_async(lambda: _connected(http), what="connected")
    await load(http, "passthrough")
    simple = await http.post("/api/v1/session/start", json={"pipeline_id": "passthrough"})
    assert simple.status_code == 500 and simple.json()["detail"].startswith("FrameProcessor failed to start")
    graph = {"nodes": [{"id": "p", "type": "pipeline", "pipeline_id": "longlive"}, {"id": "output", "type": "sink"}],
             "edges": [{"from": "p", "from_port": "video", "to_node": "output", "to_port": "video", "kind": "stream"}]}
    started = await http.post("/api/v1/session/start", json={"graph": graph, "prompts": [{"text": "a fox"}]})
    assert started.status_code == 200 and started.json()["cloud_mode"] is False
    first = await until_async(lambda: _frames_out(http), what="local frames")
    await until_async(lambda: _frames_out_above(http, first + 20), timeout_s=10, what="frames past the stall point")
    truth = (await http.get("/_sim/truth")).json()
    assert truth["sessions"][-1]["cloud_bypassed"] is True
    assert not [f for f in truth["faults"] if f["kind"] == "stall"]  # the orchestrator's stall never acted


async def _connected(http: httpx.AsyncClient) -> bool:
    return (await http.get("/api/v1/cloud/status")).json()["connected"]


async def _frames_out(http: httpx.AsyncClient) -> int:
    sessions = (await http.get("/api/v1/session/metrics")).json()["sessions"]
    return sessions.get("headless", {}).get("frames_out", 0)


async def _frames_out_above(http: httpx.AsyncClient, count: int) -> bool:
    return await _frames_out(http) > count


KILLED_CLIENT = """
import asyncio, sys, httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer",
            "initialParameters": {"pipeline_ids": ["longlive"], "input_mode": "text"}}
    answer = httpx.post(sys.argv[1] + "/api/v1/webrtc/offer", json=body, timeout=10).json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    print(answer["sessionId"], flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_killed_client_session_is_kept_then_removed(http: httpx.AsyncClient, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "webrtc_orphan_s": 2.0})
    await load(http, "longlive")
    process = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, sim.url], stdout=subprocess.PIPE, text=True)
    try:
        session_id = (await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)).strip()
        await until_async(lambda: _sent_some(http, session_id), what="frames to the client")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    killed_at = time.monotonic()
    assert (await session_truth(http, session_id))["state"] == "live"  # kept: it still burns the instance
    truth = await until_async(lambda: _gone(http, session_id), timeout_s=15, what="orphan removed")
    assert truth["state"] == "orphan" and time.monotonic() - killed_at >= 1.5
    assert (await http.get("/_sim/truth")).json()["live_webrtc_sessions"] == 0


async def _sent_some(http: httpx.AsyncClient, session_id: str) -> bool:
    return (await session_truth(http, session_id))["frames_sent"] > 3


async def _gone(http: httpx.AsyncClient, session_id: str) -> dict | None:
    truth = await session_truth(http, session_id)
    return truth if truth["state"] != "live" else None
