"""The output track of a WebRTC session: frames paced by the session's timeline, shaped by its faults.

`plan_frame` decides, for each frame the timeline makes, whether it is sent, lost on the
way or never made (stall, crash, relay drop); `OutputTrack` sleeps until each frame is due
and hands aiortc a pre-encoded VP8 packet (or a raw frame for other codecs).

Media-path faults (packet loss, added latency, freeze bursts, relay drop) act only on relay
sessions and only here, before the packetizer: frames are dropped or held back whole, so
what the client sees is a missing or late frame, never a damaged one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from simulator import rtc_frames
from simulator.behaviour import ActiveProfile, look_at
from simulator.frames import Look
from simulator.profiles import (
    AddedLatencyProfile,
    FaultKind,
    FreezeBurstsProfile,
    PacketLossProfile,
    WrongSizeProfile,
)
from simulator.rtc_session import RtcSession
from simulator.session import DEFAULT_SINK, HeadlessSession
from simulator.truth import Clock

IDLE_POLL_S = 0.05  # how often an idle track looks again (pause, stall, no input yet)
VIDEO_TIME_BASE = Fraction(1, 90000)


class Action(StrEnum):
    """What happens to one frame of the timeline."""

    SEND = "send"
    LOST = "lost"  # made, but lost on the relay's media path
    WAIT = "wait"  # not made (stall): the track waits
    END = "end"  # the session ends (crash, relay drop)


@dataclass(frozen=True)
class FramePlan:
    """The fate of one frame and, when it is sent, its picture."""

    action: Action
    reason: str | None = None
    look: Look | None = None
    size: tuple[int, int] = (0, 0)
    variant: int = 0
    corrupt: bool = False
    burst: tuple[float, float] | None = None  # the freeze burst (monotonic start, end) that swallowed it


def added_latency_s(active: ActiveProfile, session: RtcSession) -> float:
    """How long the relay's media path holds every frame back."""
    profile = active.profile
    return profile.added_latency_ms / 1000 if session.relay and isinstance(profile, AddedLatencyProfile) else 0.0


def freeze_burst_at(profile: FreezeBurstsProfile, start: float, mono: float) -> tuple[float, float] | None:
    """The burst (monotonic start, end) in force at `mono`, if any."""
    if mono < start:
        return None
    number = int((mono - start) // profile.freeze_burst_every_s)
    burst_start = start + number * profile.freeze_burst_every_s
    burst_end = burst_start + profile.freeze_burst_ms / 1000
    return (burst_start, burst_end) if number < profile.freeze_burst_count and mono < burst_end else None


def plan_frame(active: ActiveProfile, session: RtcSession, index: int, rng: random.Random) -> FramePlan:
    """The fate of frame `index` of the session's timeline under the behaviour in force."""
    timeline = session.timeline
    assert timeline is not None
    frame_mono = timeline.frame_time(index)
    start = active.fault_start(timeline)
    kind = active.fault if start is not None and frame_mono >= start else None
    if kind in (FaultKind.CRASH, FaultKind.STALL) or (kind is FaultKind.RELAY_DROP and session.relay):
        return FramePlan(Action.END if kind is not FaultKind.STALL else Action.WAIT, kind.value)
    lost = _network_loss(active, session, frame_mono, start, rng)
    if lost is not None:
        return lost
    shown = index
    if kind is FaultKind.FROZEN:
        shown, frame_mono = max(timeline.index_at(start), 0), start
    size = timeline.requested_size()
    if kind is FaultKind.WRONG_SIZE and isinstance(active.profile, WrongSizeProfile):
        size = active.profile.wrong_size
    look = look_at(active, timeline, frame_mono, start)
    return FramePlan(Action.SEND, look=look, size=size, variant=timeline.variant_for(DEFAULT_SINK, shown),
                     corrupt=kind is FaultKind.CORRUPT)


def _network_loss(
    active: ActiveProfile, session: RtcSession, frame_mono: float, start: float | None, rng: random.Random
) -> FramePlan | None:
    profile = active.profile
    if not session.relay or start is None:
        return None
    if isinstance(profile, FreezeBurstsProfile):
        burst = freeze_burst_at(profile, start, frame_mono)
        return None if burst is None else FramePlan(Action.LOST, FaultKind.FREEZE_BURSTS.value, burst=burst)
    if isinstance(profile, PacketLossProfile) and frame_mono >= start and rng.random() * 100 < profile.packet_loss_pct:
        return FramePlan(Action.LOST, FaultKind.PACKET_LOSS.value)
    return None


class TrackHooks(Protocol):
    """What the track reports to the server's WebRTC manager."""

    def frame_sent(self, session: RtcSession, plan: FramePlan, mono: float) -> None:
        """A frame left for the client."""

    def frame_lost(self, session: RtcSession, plan: FramePlan, mono: float) -> None:
        """A frame was lost on the media path."""

    def fault_seen(self, session: RtcSession, kind: str, mono: float) -> None:
        """A fault began to act on the session's output."""

    def end_session(self, session: RtcSession, reason: str) -> None:
        """The output ended the session (crash, relay drop)."""


class OutputTrack(MediaStreamTrack):
    """The video the simulated Scope sends back: one frame per timeline tick, when the behaviour allows."""

    kind = "video"

    def __init__(self, session: RtcSession, behaviour: Callable[[], ActiveProfile], hooks: TrackHooks) -> None:
        super().__init__()
        self.session, self._behaviour, self._hooks = session, behaviour, hooks
        self.send_packets = True  # pre-encoded VP8; False when the client negotiated another codec
        self.last_sent: FramePlan | None = None
        self._index = 0
        self._rng = random.Random(session.session_id)

    async def recv(self) -> av.Packet | av.VideoFrame:
        """The next frame, when it is due; MediaStreamError once the session is over."""
        while self.readyState == "live" and self.session.live:
            media = await self._step()
            if media is not None:
                return media
        self.stop()
        raise MediaStreamError

    async def _step(self) -> av.Packet | av.VideoFrame | None:
        session, timeline = self.session, self.session.timeline
        if timeline is None or session.idle_reason or session.sender_broken or session.paused:
            await asyncio.sleep(IDLE_POLL_S)
            return None
        active = self._behaviour()
        delay_s = added_latency_s(active, session)
        now = Clock.now()
        due = timeline.frame_time(self._index) + delay_s
        if due > now:
            await asyncio.sleep(due - now)
            return None
        # Late (a busy loop, a stall that ended): send the newest frame, not a backlog.
        index = max(self._index, timeline.index_at(now - delay_s))
        plan = plan_frame(active, session, index, self._rng)
        return await self._carry_out(plan, index, timeline, now)

    async def _carry_out(self, plan: FramePlan, index: int, timeline: HeadlessSession, now: float):
        if plan.reason is not None:
            self._hooks.fault_seen(self.session, plan.reason, now)
        if plan.action is Action.WAIT:
            await asyncio.sleep(IDLE_POLL_S)
            return None
        if plan.action is Action.END:
            self.stop()  # no more frames; the close runs as its own task
            self._hooks.end_session(self.session, plan.reason or "ended")
            return None
        self._index = index + 1
        if plan.action is Action.LOST:
            self._hooks.frame_lost(self.session, plan, now)
            return None
        media = await self._media(plan, index)
        media.pts = round((timeline.frame_time(index) - timeline.started_mono) / VIDEO_TIME_BASE)
        media.time_base = VIDEO_TIME_BASE
        self.last_sent = plan
        self._hooks.frame_sent(self.session, plan, Clock.now())
        return media

    async def _media(self, plan: FramePlan, index: int) -> av.Packet | av.VideoFrame:
        width, height = plan.size
        if self.send_packets:
            if plan.corrupt:
                return av.Packet(rtc_frames.corrupt_vp8(index, width, height))
            data = rtc_frames.cached_vp8(plan.look, width, height, plan.variant)
            if data is None:  # a new picture: encode it once, off the event loop
                data = await asyncio.to_thread(rtc_frames.vp8_keyframe, plan.look, width, height, plan.variant)
            return av.Packet(data)
        if plan.corrupt:
            planes = rtc_frames.noise_yuv(index, width, height)
        else:
            planes = await asyncio.to_thread(rtc_frames.yuv_planes, plan.look, width, height, plan.variant)
        return av.VideoFrame.from_ndarray(planes, format="yuv420p")
