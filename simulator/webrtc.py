"""WebRTC sessions of a simulated Scope server (aiortc, server side), as Scope 0.2.4 runs them.

- A cloud-connected instance relays: its sessions are relay sessions and the pinned
  orchestrator's profile (with the media-path faults) acts on them. Otherwise a session is
  local and needs a loaded pipeline (else 400).
- Video mode waits for the client's input track and starts its output with the first input
  frame; text mode starts at once on a sendrecv transceiver; a recvonly offer never gets a frame.
- Parameters arrive as JSON on any data channel or through `/session/parameters`;
  `{"paused": true}` in video mode breaks the session's sender for good, as on Scope 0.2.4.
- DELETE sends `{"type": "stream_stopped"}` on the data channel, then closes the connection.
  A client that vanishes is noticed by a watchdog (no packet for `webrtc_orphan_s`) or by
  aiortc's own ICE consent check, whichever comes first, and its session is removed.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp

from simulator import catalog, rtc_frames
from simulator.behaviour import ActiveProfile
from simulator.frames import frame_jpeg
from simulator.instance import ScopeInstance
from simulator.media import MediaError, media_reference
from simulator.profiles import draw_latency
from simulator.rtc_session import RtcSession, RtcTags, initial_parameters
from simulator.rtc_track import FramePlan, OutputTrack
from simulator.session import DEFAULT_SINK, HeadlessSession, SessionPlan

LOGGER = "scope.server.webrtc"
NOT_LOADED = "Pipeline not loaded. Please load pipeline first."
WEBRTC_PARAMETER_DELAY_S = 0.2  # the WebRTC path's queues add this to a prompt switch's latency
WATCHDOG_POLL_S = 0.1
LIVENESS_EVERY_S = 1.0
STOP_MESSAGE_FLUSH_S = 0.25
INPUTS_FOLDER = ".webrtc-inputs"  # hidden: /api/v1/assets lists only the files at the top


class WebRtcError(Exception):
    """An offer or ICE request answered with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


class WebRtcHub:
    """Every WebRTC session of one simulated server."""

    def __init__(self, instance: ScopeInstance) -> None:
        self.instance = instance
        self._watchdog: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._noted: set[tuple[str, str]] = set()
        instance.reset_hooks.append(self.close_all)

    # -- offer ---------------------------------------------------------------------------------

    async def offer(self, sdp: str, sdp_type: str, initial: dict | None, tags: RtcTags) -> dict:
        """Answer an offer: `{"sdp", "type", "sessionId"}`; WebRtcError 400/500 as Scope answers."""
        instance = self.instance
        now = instance.advance()
        relay = instance.cloud_connected()
        if not relay and not instance.pipelines.loaded_ids:
            raise WebRtcError(400, NOT_LOADED)
        session = self._new_session(initial, tags, relay, now)
        pc = session.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            session.track = OutputTrack(session, lambda: self.behaviour(session), self)
            pc.addTrack(session.track)
            self._wire(session)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises many types for a bad offer; Scope wraps them all in a 500
            await pc.close()
            instance.logs.write(LOGGER, "ERROR", f"Error handling WebRTC offer: {exc}")
            instance.events.offer_failed(str(exc), type(exc).__name__)
            raise WebRtcError(500, str(exc)) from None
        self._start(session, sdp, pc.localDescription.sdp, now)
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "sessionId": session.session_id}

    def _new_session(self, initial: dict | None, tags: RtcTags, relay: bool, now: float) -> RtcSession:
        initial = dict(initial) if initial is not None else None
        pipeline_ids = tuple((initial or {}).get("pipeline_ids") or ())
        return RtcSession(
            str(uuid.uuid4()), tags, (initial or {}).get("input_mode") or "video", relay, pipeline_ids,
            initial_parameters(initial), now, self.instance.clock.wall(now), last_client_mono=now,
        )

    def _start(self, session: RtcSession, offer_sdp: str, answer_sdp: str, now: float) -> None:
        instance = self.instance
        session.idle_reason = self._idle_reason(session, offer_sdp)
        session.track.send_packets = _video_codec(answer_sdp) == "VP8"
        if session.idle_reason is not None:
            instance.logs.write(LOGGER, "WARNING", f"Session {session.session_id} will produce no frames: {session.idle_reason}")
        if session.mode == "text" and session.idle_reason is None:
            session.timeline = self._timeline(session, now, None, self._image_tint(session))
        instance.webrtc_sessions[session.session_id] = session
        instance.webrtc_history.append(session)
        path = "relay (cloud)" if session.relay else "local"
        instance.logs.write(LOGGER, "INFO", f"Created new session: {session.session_id} ({path}, {session.mode} mode)")
        instance.events.session_started(session)
        if instance.events.enabled and session.mode == "video":
            session.tasks.append(asyncio.create_task(instance.events.heartbeats(session, instance.clock)))
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch())

    def _idle_reason(self, session: RtcSession, offer_sdp: str) -> str | None:
        direction = _video_direction(offer_sdp)
        loaded = self.instance.pipelines.loaded_ids
        if direction is None:
            return "the offer has no video transceiver"
        if direction == "recvonly":
            return "a recvonly video transceiver never gets frames"
        if not session.pipeline_ids:
            return "no pipeline_ids in initialParameters"
        missing = [pid for pid in session.pipeline_ids if pid not in loaded]
        if missing:
            return f"Pipeline {missing[0]} not loaded"
        if session.relay and session.parameters.get("produces_video") is False:
            return "produces_video is false: no video track"
        return None

    def _timeline(self, session: RtcSession, now: float, input_path: str | None, tint) -> HeadlessSession:
        profile = self.behaviour(session).profile
        plan = SessionPlan(session.pipeline_ids, session.mode, input_path, (DEFAULT_SINK,), False,
                           session.pipeline_ids[0], tint)
        return HeadlessSession(
            session.session_id, plan, started_mono=now, started_wall=self.instance.clock.wall(now),
            first_frame_s=draw_latency(self.instance.rng, profile.first_frame_s),
            fps_per_sink=profile.fps_out or catalog.chain_fps(session.pipeline_ids),
            prompt=_main_prompt(session.parameters.get("prompts")), parameters=session.parameters,
        )

    def _image_tint(self, session: RtcSession) -> tuple[int, int] | None:
        image = session.parameters.get("first_frame_image")
        if not isinstance(image, str):
            return None
        try:
            reference = media_reference(image)
        except MediaError as exc:
            self.instance.logs.write(LOGGER, "WARNING", f"Ignoring first_frame_image: {exc}")
            return None
        return reference.cb, reference.cr

    def behaviour(self, session: RtcSession) -> ActiveProfile:
        """The behaviour acting on a WebRTC session: the instance's profile (in relay mode, the orchestrator's)."""
        return self.instance.active

    # -- aiortc events -------------------------------------------------------------------------

    def _wire(self, session: RtcSession) -> None:
        pc = session.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                session.tasks.append(asyncio.create_task(self._consume_input(session, track)))

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            session.channel = channel
            channel.on("message", lambda message: self._on_message(session, message))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("closed", "failed"):
                failed = pc.connectionState == "failed"
                await self._end(session, "connection_failed" if failed else "client_closed", orphan=failed)

    async def _consume_input(self, session: RtcSession, track: MediaStreamTrack) -> None:
        # Every input frame must be read (aiortc queues them without bound); the first shapes the output.
        while session.live:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = self.instance.clock.now()
            session.frames_in += 1
            session.last_client_mono = now
            if session.frames_in == 1 and session.idle_reason is None and session.mode == "video":
                self._first_input(session, frame, now)

    def _first_input(self, session: RtcSession, frame, now: float) -> None:
        folder = self.instance.assets.root / INPUTS_FOLDER
        path = rtc_frames.save_input_reference(frame, folder)
        reference = media_reference(path)
        session.timeline = self._timeline(session, now, path, (reference.cb, reference.cr))

    def _on_message(self, session: RtcSession, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.instance.logs.write(LOGGER, "ERROR", f"Failed to parse parameter update message: {exc}")
            return
        if isinstance(data, dict):
            self.apply_parameters(session, data)

    # -- parameters ----------------------------------------------------------------------------

    def apply_parameters(self, session: RtcSession, data: dict) -> None:
        """Apply one parameter update to a session, as its frame processor would."""
        now = self.instance.clock.now()
        if "paused" in data:
            if session.mode == "video" and data["paused"]:
                session.sender_broken = True  # Scope 0.2.4's VP8 sender never sends again after a pause
                self.instance.logs.write(LOGGER, "WARNING", f"Session {session.session_id} paused: video sender stopped")
            elif session.mode != "video":
                session.paused = bool(data["paused"])
        text = _main_prompt(data.get("prompts"))
        if text is not None and session.timeline is not None:
            latency_s = self.behaviour(session).profile.prompt_latency_s + WEBRTC_PARAMETER_DELAY_S
            session.timeline.switch_prompt(text, now, latency_s, self.instance.clock.wall(now))
            self.instance.logs.write(LOGGER, "INFO", f"Prompt updated: {text!r}")
        session.parameters.update(data)

    def broadcast_parameters(self, data: dict) -> int:
        """Apply an update to every live session and echo it on each data channel; how many got it."""
        sessions = list(self.instance.webrtc_sessions.values())
        for session in sessions:
            self.apply_parameters(session, dict(data))
            _send(session, {"type": "parameters_updated", "parameters": data})
        return len(sessions)

    def first_parameters(self) -> dict | None:
        """The parameters of the first live session (None: no session)."""
        session = next(iter(self.instance.webrtc_sessions.values()), None)
        return None if session is None else dict(session.parameters)

    # -- metrics and frames --------------------------------------------------------------------

    def metrics_entry(self) -> tuple[str, dict] | None:
        """(sessionId, metrics) of the first live session: Scope lists only that one."""
        session = next(iter(self.instance.webrtc_sessions.values()), None)
        return None if session is None else (session.session_id, session.metrics(self.instance.clock.now()))

    def latest_frame(self, quality: int) -> bytes | None:
        """JPEG of the newest frame a local session sent (relay sessions have none: Scope answers 404)."""
        for session in self.instance.webrtc_sessions.values():
            plan: FramePlan | None = getattr(session.track, "last_sent", None)
            if session.relay or plan is None or plan.look is None:
                continue
            width, height = plan.size
            return frame_jpeg(plan.look, width, height, quality, plan.variant)
        return None

    # -- hooks the output track calls ----------------------------------------------------------

    def frame_sent(self, session: RtcSession, plan: FramePlan, mono: float) -> None:
        """Count a sent frame."""
        session.frames_out += 1
        if session.first_frame_mono is None:
            session.first_frame_mono = mono
            self.instance.logs.write(LOGGER, "INFO", f"First frame produced for session {session.session_id}")
            self.instance.events.playback_ready(session, mono - session.created_mono)

    def frame_lost(self, session: RtcSession, plan: FramePlan, mono: float) -> None:
        """Count a frame lost on the relay path; record each freeze burst once."""
        session.frames_lost += 1
        if plan.burst is not None:
            window = [round(self.instance.clock.wall(t), 3) for t in plan.burst]
            if window not in session.freeze_bursts:
                session.freeze_bursts.append(window)

    def fault_seen(self, session: RtcSession, kind: str, mono: float) -> None:
        """Open the truth record of a fault the first time it acts on a session."""
        if (session.session_id, kind) in self._noted:
            return
        self._noted.add((session.session_id, kind))
        wall = self.instance.clock.wall(mono)
        if kind in ("crash", "relay_drop"):
            self.instance.truth_log.instant_fault(kind, wall)
        else:
            self.instance.truth_log.open_fault(kind, wall, session.session_id)

    def end_session(self, session: RtcSession, reason: str) -> None:
        """End a session from inside its output track (the close runs as its own task)."""
        message = {"crash": "Error in pipeline processing loop: frame processor died",
                   "relay_drop": "Cloud relay connection lost: closing the session"}.get(reason, reason)
        self.instance.logs.write(LOGGER, "ERROR", f"Session {session.session_id}: {message}")
        self._spawn(self._end(session, reason))

    # -- ending --------------------------------------------------------------------------------

    async def delete(self, session_id: str) -> None:
        """DELETE /webrtc/offer/{id}: stream_stopped on the data channel, then close (no-op when unknown)."""
        session = self.instance.webrtc_sessions.get(session_id)
        if session is None:
            self.instance.logs.write(LOGGER, "WARNING", f"Attempted to remove non-existent session: {session_id}")
            return
        await self._end(session, "deleted", notify=True)

    async def add_candidates(self, session_id: str, candidates: list[dict]) -> None:
        """PATCH /webrtc/offer/{id}: add trickled ICE candidates; WebRtcError 404 on any problem."""
        session = self.instance.webrtc_sessions.get(session_id)
        if session is None:
            raise WebRtcError(404, f"Session {session_id} not found")
        for item in candidates:
            try:
                candidate = candidate_from_sdp(str(item.get("candidate", "")).removeprefix("candidate:"))
                candidate.sdpMid, candidate.sdpMLineIndex = item.get("sdpMid"), item.get("sdpMLineIndex")
                await session.pc.addIceCandidate(candidate)
            except Exception as exc:  # a malformed candidate fails in many ways inside aiortc
                raise WebRtcError(404, f"Invalid ICE candidate: {exc}") from None

    async def _end(self, session: RtcSession, reason: str, *, notify: bool = False, orphan: bool = False) -> None:
        instance = self.instance
        if not session.live:
            return
        now = instance.clock.now()
        session.end(now, instance.clock.wall(now), reason, orphan=orphan)
        instance.events.session_ended(session, reason)
        instance.webrtc_sessions.pop(session.session_id, None)
        instance.close_session_faults(session.session_id, now)
        if notify:
            await _flush(session, {"type": "stream_stopped"})
        session.track.stop()
        for task in session.tasks:
            task.cancel()
        await session.pc.close()
        instance.logs.write(LOGGER, "INFO", f"Session {session.session_id} closed ({reason})")

    def close_all(self) -> None:
        """Close every session now (a reset or the server stopping)."""
        for session in list(self.instance.webrtc_sessions.values()):
            self._spawn(self._end(session, "server_reset"))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _watch(self) -> None:
        # Removes sessions whose client went silent, and closes everything when the server stops.
        next_check = 0.0
        try:
            while self.instance.webrtc_sessions or self._closing:
                if self.instance.stopping:
                    break
                now = self.instance.clock.now()
                if now >= next_check:
                    next_check = now + LIVENESS_EVERY_S
                    await self._check_clients(now)
                await asyncio.sleep(WATCHDOG_POLL_S)
        finally:
            if self.instance.stopping or self.instance.webrtc_sessions:
                await self._shutdown()

    async def _shutdown(self) -> None:
        sessions = list(self.instance.webrtc_sessions.values())
        await asyncio.gather(*(self._end(s, "server_stopped") for s in sessions), *self._closing, return_exceptions=True)

    async def _check_clients(self, now: float) -> None:
        orphan_after_s = self.instance.profile.webrtc_orphan_s
        for session in list(self.instance.webrtc_sessions.values()):
            received = _packets_received(await session.pc.getStats())
            if received != session.packets_from_client:
                session.packets_from_client = received
                session.last_client_mono = now
            elif now - session.last_client_mono > orphan_after_s:
                self.instance.logs.write(LOGGER, "INFO", f"Session {session.session_id}: client silent, consent expired")
                await self._end(session, "client_gone", orphan=True)


def _packets_received(stats) -> int:
    return sum(getattr(entry, "packetsReceived", 0) or 0 for entry in stats.values() if entry.type == "transport")


def _send(session: RtcSession, message: dict) -> None:
    channel = session.channel
    if channel is not None and channel.readyState == "open":
        channel.send(json.dumps(message))


async def _flush(session: RtcSession, message: dict) -> None:
    # The message must leave before the close tears the SCTP association down.
    _send(session, message)
    deadline = asyncio.get_running_loop().time() + STOP_MESSAGE_FLUSH_S
    channel = session.channel
    while channel is not None and channel.bufferedAmount > 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)  # bufferedAmount reaches 0 when SCTP takes the data, a moment before it is sent


def _video_direction(sdp: str) -> str | None:
    media = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
    return media[0].direction if media else None


def _video_codec(sdp: str) -> str | None:
    media = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
    if not media or not media[0].rtp.codecs:
        return None
    return media[0].rtp.codecs[0].mimeType.split("/")[-1].upper()


def _main_prompt(prompts) -> str | None:
    items = [p for p in prompts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    if not items:
        return None
    return max(items, key=lambda item: item.get("weight", 1.0) if isinstance(item.get("weight"), int | float) else 1.0)["text"]
