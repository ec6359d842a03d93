"""How the active profile shapes a session's output: frame counts, frame bytes, metrics, VRAM.

Delayed faults begin `fault_after_s` after the later of session start and the moment the
profile was set, so a running session can be switched into a fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator import catalog
from simulator.frames import Look, LookKind, corrupt_jpeg, frame_jpeg
from simulator.profiles import (
    BlackProfile,
    DelayedFaultProfile,
    FaultKind,
    MediaPathProfile,
    Profile,
    VramCeilingProfile,
    VramLeakProfile,
    WrongSizeProfile,
)
from simulator.session import HeadlessSession

FPS_WINDOW_S = 2.0
SESSION_VRAM_MB = 600.0  # activations and buffers of a running session
VRAM_JITTER_MB = 4.0
RESERVED_FACTOR = 1.08
RESERVED_EXTRA_MB = 256.0
STARTS_WITH_SESSION = frozenset({
    FaultKind.PROMPT_INSENSITIVE, FaultKind.LOW_FPS, FaultKind.VRAM_LEAK, FaultKind.PACKET_LOSS, FaultKind.ADDED_LATENCY,
})


@dataclass(frozen=True)
class ActiveProfile:
    """The profile in force and the monotonic time it was set."""

    profile: Profile
    since: float

    @property
    def fault(self) -> FaultKind | None:
        """The profile's fault kind."""
        return self.profile.fault

    def fault_start(self, session: HeadlessSession) -> float | None:
        """Monotonic time this profile's fault begins for `session` (None: no session fault)."""
        anchor = max(session.started_mono, self.since)
        if isinstance(self.profile, DelayedFaultProfile | MediaPathProfile):
            return anchor + self.profile.fault_after_s
        if self.fault is FaultKind.WRONG_SIZE:
            return max(session.first_frame_mono, self.since)
        if self.fault in STARTS_WITH_SESSION:
            return anchor
        return None

    def active(self, kind: FaultKind, session: HeadlessSession, mono: float) -> bool:
        """True when fault `kind` is in force for `session` at `mono`."""
        start = self.fault_start(session)
        return self.fault is kind and start is not None and mono >= start

    def stall_at(self, session: HeadlessSession) -> float | None:
        """When the output stalls (None: it does not)."""
        return self.fault_start(session) if self.fault is FaultKind.STALL else None


def local_behaviour(since: float) -> ActiveProfile:
    """The healthy behaviour of the local box: what a session that bypasses the cloud runs on."""
    return ActiveProfile(Profile(), since)


def frames_out(active: ActiveProfile, session: HeadlessSession, now: float) -> int:
    """frames_out as metrics report it: every sink counts."""
    return session.frames_per_sink(now, active.stall_at(session)) * session.sinks


def output_frame(active: ActiveProfile, session: HeadlessSession, now: float, *, quality: int, sink: str) -> bytes | None:
    """The latest frame's bytes as the profile shapes them (None: no frame yet)."""
    per_sink = session.frames_per_sink(now, active.stall_at(session))
    if per_sink == 0:
        return None
    index = per_sink - 1
    start = active.fault_start(session)
    if active.fault is FaultKind.FROZEN and start is not None and now >= start:
        index = min(index, max(session.index_at(start), 0))
    frame_mono = session.frame_time(index)
    if active.fault is FaultKind.CORRUPT and start is not None and frame_mono >= start:
        return corrupt_jpeg(index)
    width, height = session.requested_size()
    if isinstance(active.profile, WrongSizeProfile) and start is not None and frame_mono >= start:
        width, height = active.profile.wrong_size
    look = look_at(active, session, frame_mono, start)
    return frame_jpeg(look, width, height, quality, session.variant_for(sink, index))


def look_at(active: ActiveProfile, session: HeadlessSession, frame_mono: float, start: float | None) -> Look:
    """The picture of the frame made at `frame_mono`, given the fault start `start`."""
    faulted = start is not None and frame_mono >= start
    if isinstance(active.profile, BlackProfile) and faulted:
        return Look(LookKind.BLACK, "", black_luma=active.profile.black_luma)
    prompt_mono = start if active.fault is FaultKind.PROMPT_INSENSITIVE and faulted else frame_mono
    return session.base_look(session.prompt_at(prompt_mono))


def session_metrics(active: ActiveProfile, session: HeadlessSession, now: float) -> dict:
    """The `sessions.headless` entry of `/session/metrics`."""
    produced = frames_out(active, session, now)
    earlier = frames_out(active, session, now - FPS_WINDOW_S) if now - FPS_WINDOW_S > session.first_frame_mono else 0
    span_s = min(FPS_WINDOW_S, now - session.first_frame_mono)
    fps_out = (produced - earlier) / span_s if span_s > 0 and produced else 0.0
    return {
        "frames_in": 0,  # Scope leaves frames_in at 0 for file inputs; text mode has none
        "frames_out": produced,
        "elapsed_seconds": round(now - session.started_mono, 3),
        "fps_in": 0.0,
        "fps_out": round(fps_out, 2),
        "pipeline_fps": round(fps_out / session.sinks, 2),
        "output_sinks": {},  # Scope's generic output sinks (NDI, Spout...), none in headless runs
        "input_source_enabled": session.plan.input_path is not None,
        "input_source_type": "video_file" if session.plan.input_path is not None else None,
        "relay_mode": False,
        "headless": True,
    }


def gpu_stats(
    active: ActiveProfile, loaded_ids: list[str], session: HeadlessSession | None, leaked: int, now: float
) -> dict:
    """The `gpu` entry of `/session/metrics`: {} as on Scope 0.2.4, unless the profile reports figures."""
    profile = active.profile
    if not (profile.has_gpu and profile.reports_gpu_memory):
        return {}
    allocated = catalog.vram_mb(loaded_ids) + leaked * profile.leaked_session_vram_mb
    if session is not None:
        allocated += SESSION_VRAM_MB
        if isinstance(profile, VramLeakProfile) and active.active(FaultKind.VRAM_LEAK, session, now):
            allocated += profile.leak_mb_per_s * (now - active.fault_start(session))
    if isinstance(profile, VramCeilingProfile):
        allocated = max(allocated, profile.vram_ceiling_fraction * profile.vram_total_mb)
    if allocated > 0:
        allocated += VRAM_JITTER_MB * math.sin(now * 1.7)  # allocator noise, far below any tolerance
    allocated = min(max(allocated, 0.0), profile.vram_total_mb)
    reserved = min(allocated * RESERVED_FACTOR + RESERVED_EXTRA_MB, profile.vram_total_mb) if allocated else 0.0
    return {
        "vram_allocated_mb": round(allocated, 1),
        "vram_reserved_mb": round(reserved, 1),
        "vram_total_mb": profile.vram_total_mb,
    }
