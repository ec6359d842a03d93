"""The harness as the browser: an aiortc peer for Scope's WebRTC session (scope-api.md, WebRTC).

One ``ScopePeer`` is one session: it offers a ``sendrecv`` VP8 video transceiver (carrying
the input clip in video mode, no track in text mode, as Scope's web UI does) and a data
channel labelled ``parameters``, POSTs the offer with ``initialParameters``, receives and
decodes every output frame and keeps only what the checks need:

- every frame's arrival time (``FrameArrivals``: fps, gaps, W3C freezes);
- the latest decoded frame, turned into a luma plane only when someone looks (``picture``);
- why the session ended under us (peer connection failed or closed, ``stream_stopped``).

The input clip is decoded with PyAV and encoded to VP8 once per process (``encoded_clip``);
each session then sends those packets looped at the clip's own fps with continuous
timestamps, paced in real time, so a session costs packetisation, not an encoder. The
clip has a keyframe every second, so a receiver that lost packets recovers within 1 s
(Scope's keyframe requests cannot be answered sooner by pre-encoded input).

aiortc and PyAV exceptions are translated in one place (``_media_errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from aiortc import (
    MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from errors import Category, HarnessError, Phase, PhaseFailed
from tasks.scope.arrivals import FrameArrivals
from tasks.scope.loop_stalls import LoopStalls, loop_stalls
from tasks.scope.models import WebRTCAnswer

_log = logging.getLogger(__name__)

PARAMETERS_CHANNEL = "parameters"  # the web UI's label; Scope ignores it
SENT_CODECS = ("video/VP8", "video/rtx")  # what the pre-encoded clip can be sent as
CLIP_BITRATE_BPS = 1_500_000
VIDEO_CLOCK_HZ = 90_000
MAX_CHANNEL_MESSAGE_BYTES = 65_536
KEPT_CHANNEL_MESSAGES = 32
# BT.601 limited range (16-235) to full range (0-255): the frame checks' thresholds are full range.
_LIMITED_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)
_CLIPS: dict[tuple[str, int, int], EncodedClip] = {}
_CLIPS_LOCK = threading.Lock()


class OfferClient(Protocol):
    """The ScopeClient method the peer needs."""

    async def webrtc_offer(self, body: dict[str, Any]) -> WebRTCAnswer:
        """POST /api/v1/webrtc/offer."""


@dataclass(frozen=True)
class OfferPlan:
    """What to offer: Scope's `initialParameters`, who runs it, and the clip to send (video mode)."""

    initial_parameters: dict[str, Any]
    connection_id: str | None = None
    user_id: str | None = None
    clip: Path | None = None  # None: text mode, a sendrecv transceiver without a track


@dataclass(frozen=True)
class EncodedClip:
    """An input clip encoded to VP8 once: one packet per frame, a keyframe every second."""

    packets: tuple[bytes, ...]
    fps: Fraction
    width: int
    height: int


@dataclass(frozen=True)
class NetworkStats:
    """The peer connection's view of the received stream (None where aiortc does not report it)."""

    packets_received: int | None = None
    packets_lost: int | None = None
    jitter_ms: float | None = None
    bitrate_kbps: float | None = None
    rtt_ms: float | None = None
    codec: str | None = None


@contextlib.contextmanager
def _media_errors(what: str, category: Category, phase: Phase = Phase.START) -> Iterator[None]:
    """Re-raise any aiortc/PyAV failure as PhaseFailed(category, phase) naming what failed."""
    try:
        yield
    except HarnessError:
        raise
    # aiortc and PyAV raise many types (ValueError on SDP, InvalidStateError, FFmpegError, ...)
    except Exception as exc:  # noqa: BLE001
        detail = " ".join(str(exc).split())[:200]
        raise PhaseFailed(f"{what}: {type(exc).__name__}: {detail}", category=category,
                          phase=phase) from exc


def _encode_clip(path: Path) -> EncodedClip:
    """Decode a clip with PyAV and encode every frame to VP8 (realtime, keyframe each second)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or stream.guessed_rate or 12)
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        encoder.time_base, encoder.framerate = 1 / fps, fps
        encoder.bit_rate, encoder.gop_size = CLIP_BITRATE_BPS, max(1, round(fps))
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        packets: list[bytes] = []
        for index, frame in enumerate(container.decode(stream)):
            frame = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
            frame.pts, frame.time_base = index, 1 / fps
            packets.extend(bytes(packet) for packet in encoder.encode(frame))
        packets.extend(bytes(packet) for packet in encoder.encode(None))
    if not packets:
        raise ValueError(f"{path.name} holds no video frames")
    return EncodedClip(tuple(packets), fps, stream.width, stream.height)


def encoded_clip(path: Path) -> EncodedClip:
    """The clip at `path` encoded to VP8, once per process per file content (blocking: run in a thread)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _CLIPS_LOCK:  # sessions starting together wait for one encode instead of each doing it
        if key not in _CLIPS:
            with _media_errors(f"input clip {path.name} unusable", Category.HARNESS):
                _CLIPS[key] = _encode_clip(path)
        return _CLIPS[key]


class ClipTrack(MediaStreamTrack):
    """The input clip as a video track: its VP8 packets looped at its fps, paced in real time."""

    kind = "video"

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.clip = clip
        self.frames_sent = 0
        self._time_base = 1 / clip.fps
        self._started_at: float | None = None

    async def recv(self) -> av.Packet:
        """The next packet, when its time has come; pts count frames since the track started."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._started_at is None:
            self._started_at = time.monotonic()
        due = self._started_at + float(self.frames_sent / self.clip.fps)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.clip.packets[self.frames_sent % len(self.clip.packets)])
        packet.pts, packet.time_base = self.frames_sent, self._time_base
        self.frames_sent += 1
        return packet


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The frame's Y plane as full-range uint8 (H x W), without any RGB conversion."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(frame.height, plane.line_size)
    luma = rows[:, : frame.width]
    full_range = frame.format.name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2
    return luma.copy() if full_range else _LIMITED_TO_FULL[luma]


def _answer_codec(sdp: str) -> str | None:
    """The video codec the answer chose: the first payload type of its video m-line."""
    lines = sdp.splitlines()
    video = next((line.split() for line in lines if line.startswith("m=video")), None)
    if not video or len(video) < 4:
        return None
    prefix = f"a=rtpmap:{video[3]} "
    rtpmap = next((line for line in lines if line.startswith(prefix)), None)
    return rtpmap[len(prefix):].split("/")[0] if rtpmap else None


class ScopePeer:
    """One WebRTC session with a Scope instance, from the offer to the closed connection."""

    def __init__(self, client: OfferClient, *, ice_servers: tuple[str, ...] = ()) -> None:
        self._client = client
        # An explicit list: aiortc's default asks a public STUN server, unreachable offline.
        config = RTCConfiguration(iceServers=[RTCIceServer(url) for url in ice_servers])
        self._pc = RTCPeerConnection(config)
        self._channel = self._pc.createDataChannel(PARAMETERS_CHANNEL, ordered=True)
        self._channel.on("message", self._on_message)
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._pc.on("track", self._on_track)
        self._receivers: list[asyncio.Task[None]] = []
        self._clip_track: ClipTrack | None = None
        self._closing = False
        self._connected_at: float | None = None
        self.arrivals = FrameArrivals()
        self._stalls: LoopStalls | None = None  # this loop's own stalls, measured while receiving
        self.messages: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self.started_at: float | None = None  # monotonic, just before the offer was POSTed
        self.ended_reason: str | None = None
        self.codec: str | None = None
        self.latest: av.VideoFrame | None = None
        self.latest_at: float | None = None

    @property
    def frames_received(self) -> int:
        """Output frames received and decoded so far."""
        return len(self.arrivals)

    @property
    def frames_sent(self) -> int:
        """Input frames sent so far (0 in text mode)."""
        return self._clip_track.frames_sent if self._clip_track else 0

    @property
    def channel_open(self) -> bool:
        """True while the parameters data channel can carry a message."""
        return self._channel.readyState == "open"

    async def open(self, plan: OfferPlan) -> WebRTCAnswer:
        """Offer the session and apply Scope's answer; `session_id` is set as soon as Scope answers."""
        with _media_errors("WebRTC offer could not be built", Category.HARNESS):
            if plan.clip is not None:
                clip = await asyncio.to_thread(encoded_clip, plan.clip)
                self._clip_track = ClipTrack(clip)
                transceiver = self._pc.addTransceiver(self._clip_track, direction="sendrecv")
            else:
                transceiver = self._pc.addTransceiver("video", direction="sendrecv")
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType in SENT_CODECS])
            await self._pc.setLocalDescription(await self._pc.createOffer())
        self.started_at = time.monotonic()
        answer = await self._client.webrtc_offer(self._offer_body(plan))
        self.session_id = answer.session_id
        with _media_errors("Scope's WebRTC answer could not be applied", Category.PROTOCOL):
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        self.codec = _answer_codec(answer.sdp)
        return answer

    def _offer_body(self, plan: OfferPlan) -> dict[str, Any]:
        """The offer request: SDP with its candidates, initialParameters, the run's ids."""
        local = self._pc.localDescription
        body: dict[str, Any] = {"sdp": local.sdp, "type": local.type,
                                "initialParameters": plan.initial_parameters}
        if plan.connection_id is not None:
            body["connection_id"] = plan.connection_id
        if plan.user_id is not None:
            body["user_id"] = plan.user_id
        return body

    def send_parameters(self, parameters: dict[str, Any]) -> bool:
        """Send a parameter update on the data channel; False when the channel is not open."""
        if not self.channel_open:
            return False
        with _media_errors("data channel send failed", Category.NETWORK, Phase.STREAM):
            self._channel.send(json.dumps(parameters))
        return True

    async def network_stats(self) -> NetworkStats:
        """Receive-side counters from the peer connection's stats."""
        with _media_errors("peer connection stats unreadable", Category.HARNESS, Phase.STREAM):
            report = await self._pc.getStats()
        fields: dict[str, Any] = {"codec": self.codec}
        for stats in report.values():
            if stats.type == "inbound-rtp" and getattr(stats, "kind", "") == "video":
                fields["packets_received"] = stats.packetsReceived
                fields["packets_lost"] = stats.packetsLost
                fields["jitter_ms"] = stats.jitter * 1000.0 / VIDEO_CLOCK_HZ
            elif stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
                fields["rtt_ms"] = stats.roundTripTime * 1000.0
            elif stats.type == "transport" and self._connected_at is not None:
                elapsed_s = time.monotonic() - self._connected_at
                if elapsed_s > 0:
                    fields["bitrate_kbps"] = stats.bytesReceived * 8 / 1000.0 / elapsed_s
        return NetworkStats(**fields)

    async def close(self) -> None:
        """Close the peer connection and stop receiving; safe to call more than once."""
        self._closing = True
        if self._clip_track is not None:
            self._clip_track.stop()
        with contextlib.suppress(Exception):  # closing a half-built connection may fail: nothing to keep
            await self._pc.close()
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
        if self._stalls is not None:
            self._stalls.release()
            self._stalls = None

    def mark_closing(self) -> None:
        """From now on an ending session is our doing, not Scope's."""
        self._closing = True

    def _end(self, reason: str) -> None:
        """Record why the session ended under us (the first reason wins)."""
        if not self._closing and self.ended_reason is None:
            self.ended_reason = reason
            _log.info("WebRTC session %s ended: %s", self.session_id, reason)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and self._connected_at is None:
            self._connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self._end(f"peer connection {state}")

    def _on_message(self, message: str | bytes) -> None:
        if len(message) > MAX_CHANNEL_MESSAGE_BYTES:
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        self.messages = (self.messages + [data])[-KEPT_CHANNEL_MESSAGES:]
        if data.get("type") == "stream_stopped":
            detail = data.get("error_message")
            self._end("Scope sent stream_stopped" + (f": {detail}" if detail else ""))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            if self._stalls is None:
                self._stalls = loop_stalls()
                self._stalls.acquire()
            self._receivers.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        """Take every decoded frame: note its arrival, keep it as the latest."""
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                last, stalls = self.arrivals.last, self._stalls
                stalled_s = stalls.overlap(last, now) if last is not None and stalls is not None else 0.0
                self.arrivals.add(now, harness_stalled_s=stalled_s)
                self.latest, self.latest_at = frame, now
        except MediaStreamError:
            self._end("the output track ended")
