"""One WebRTC session of a simulated Scope server: who it belongs to, what it streams, what happened.

Its output timeline (first frame, frame rate, prompt history, look) is a `HeadlessSession`
used as a plain model; in video mode it starts with the client's first input frame,
since Scope's pipelines only run on input. The aiortc objects live beside it (`pc`,
`channel`, `track`) and are driven by `simulator.webrtc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simulator.session import HeadlessSession

DEFAULT_PIPELINE_FPS = 30.0  # what Scope reports before its pipeline produced anything
PARAMETER_DEFAULTS = {"prompt_interpolation_method": "linear", "vace_context_scale": 1.0}


class RtcState(StrEnum):
    """Where a WebRTC session is in its life."""

    LIVE = "live"  # in the server's session table (a silent client's session still counts)
    ENDED = "ended"  # DELETE, the client closed, the server closed it (crash, relay drop) or a reset
    ORPHAN = "orphan"  # removed because the client stopped answering (ICE consent failure)


@dataclass
class RtcTags:
    """The identifiers a client passes with its offer, echoed on every lifecycle event."""

    connection_id: str | None = None
    user_id: str | None = None
    connection_info: dict | None = None


@dataclass
class RtcSession:
    """The state of one WebRTC session (no aiortc logic here)."""

    session_id: str
    tags: RtcTags
    mode: str  # "video" / "text"
    relay: bool
    pipeline_ids: tuple[str, ...]
    parameters: dict
    created_mono: float
    created_wall: float
    idle_reason: str | None = None  # why no frame will ever come (None: frames will flow)
    timeline: HeadlessSession | None = None
    frames_in: int = 0
    frames_out: int = 0
    frames_lost: int = 0  # dropped on the relay's media path by a network fault
    first_frame_mono: float | None = None
    last_client_mono: float = 0.0  # the last time anything arrived from the client
    packets_from_client: int = -1  # the transport's received-packet count at the last liveness check
    sender_broken: bool = False  # {"paused": true} in video mode: Scope's VP8 sender never recovers
    paused: bool = False  # text mode honours pause and resume
    freeze_bursts: list[list[float]] = field(default_factory=list)  # [start, end] unix, as injected
    state: RtcState = RtcState.LIVE
    end_reason: str | None = None
    ended_mono: float | None = None
    ended_wall: float | None = None
    pc: Any = None
    channel: Any = None
    track: Any = None
    tasks: list[Any] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """True while the session is in the server's table."""
        return self.state is RtcState.LIVE

    def end(self, now: float, wall: float, reason: str, *, orphan: bool = False) -> None:
        """Mark the session over (first reason wins)."""
        if not self.live:
            return
        self.state = RtcState.ORPHAN if orphan else RtcState.ENDED
        self.end_reason, self.ended_mono, self.ended_wall = reason, now, wall

    def metrics(self, now: float) -> dict:
        """This session's entry in `/session/metrics`, as Scope 0.2.4 shapes it."""
        elapsed = max(now - self.created_mono, 1e-6)
        producing = self.timeline is not None and self.frames_out > 0
        entry = {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "elapsed_seconds": elapsed,
            "fps_in": self.frames_in / elapsed,
            "fps_out": self.frames_out / elapsed,
            "pipeline_fps": self.timeline.fps_per_sink if producing and self.timeline else DEFAULT_PIPELINE_FPS,
            "output_sinks": {},
            "input_source_enabled": False,
            "input_source_type": "",
            "relay_mode": self.relay,
        }
        if self.relay:
            entry["frames_to_cloud"] = self.frames_in if self.mode == "video" else 0
            entry["frames_from_cloud"] = self.frames_out
        return entry

    def truth(self, now: float) -> dict:
        """What really happened to this session, for `/_sim/truth`."""
        timeline = self.timeline
        first_frame_s = None if self.first_frame_mono is None else round(self.first_frame_mono - self.created_mono, 3)
        return {
            "session_id": self.session_id,
            "connection_id": self.tags.connection_id,
            "user_id": self.tags.user_id,
            "mode": self.mode,
            "relay": self.relay,
            "media_path": "relay" if self.relay else "local",
            "pipeline_ids": list(self.pipeline_ids),
            "state": self.state.value,
            "end_reason": self.end_reason,
            "started_at": self.created_wall,
            "ended_at": self.ended_wall,
            "idle_reason": self.idle_reason,
            "first_frame_s": first_frame_s,
            "fps_true": timeline.fps_per_sink if timeline is not None else 0.0,
            "frames_in": self.frames_in,
            "frames_sent": self.frames_out,
            "frames_lost": self.frames_lost,
            "freeze_bursts": {"count": len(self.freeze_bursts), "times": [list(b) for b in self.freeze_bursts]},
            "prompt_texts": timeline.prompt_texts if timeline is not None else [],
            "prompt_switches": list(timeline.prompt_switches) if timeline is not None else [],
            "sender_broken": self.sender_broken,
            "client_silent_s": round(max(now - self.last_client_mono, 0.0), 3) if self.live else None,
        }


def initial_parameters(initial: dict | None) -> dict:
    """The parameters `GET /session/parameters` shows for a new session (nothing without initialParameters)."""
    if initial is None:
        return {}
    parameters = {"input_mode": initial.get("input_mode", "video"), **PARAMETER_DEFAULTS}
    parameters |= {key: value for key, value in initial.items() if key != "input_mode" and value is not None}
    parameters.setdefault("pipeline_ids", [])
    return parameters
