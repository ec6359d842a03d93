"""How a run's media flows: the small interface every media driver implements.

The lifecycle (tasks/session/lifecycle.py) is one sequence for every run; a driver only
starts the media, hands over what it sees now (a `Tick`), switches prompts and stops:

    webrtc    the harness is the browser: an offer to Scope, the input clip sent as a
              track, every output frame received and decoded (tasks/session/drivers/webrtc.py)
    headless  Scope's REST session: /session/start, /session/frame (tasks/session/drivers/headless.py)

The verdict, the checks and the lake never know which driver ran, except through
`MediaPath` (quality.md, "The media path").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from config.scenarios import Scenario
from tasks.scope.models import GpuStats
from tasks.session.inputs import InputPaths


class MediaPath(StrEnum):
    """Where a run's media went: only `relay` says anything about an orchestrator's streaming."""

    RELAY = "relay"  # WebRTC through the cloud-connected Scope to the orchestrator
    LOCAL = "local"  # WebRTC on the Scope box's own pipelines
    HEADLESS = "headless"  # REST session: always local in Scope 0.2.4


@dataclass(frozen=True)
class StreamCounters:
    """Output counters at one tick: Scope's own (headless) or the receiver's (webrtc)."""

    frames_out: int | None
    fps_out: float | None = None
    frames_in: int | None = None
    fps_in: float | None = None
    pipeline_fps: float | None = None


@dataclass(frozen=True)
class Picture:
    """A received, decoded output frame: its full-resolution luma plane (uint8, H x W).

    `rgb` is kept only so evidence (last good / first bad frame) can be written as JPEG."""

    luma: np.ndarray = field(repr=False)
    rgb: Any = field(default=None, repr=False, compare=False)  # a PIL image or an av.VideoFrame

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.luma.shape[1])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.luma.shape[0])


@dataclass(frozen=True)
class Tick:
    """What the harness saw of the stream at one moment.

    `t_s` is seconds since the session was started (the offer POSTed, or /session/start
    answered): for headless when its requests were sent, for webrtc when the frame arrived.
    Exactly one of `frame` (a JPEG, headless) and `picture` (decoded, webrtc) is set when a
    frame was seen; `frame_seq` identifies the frame (the same number twice means no new frame).
    """

    t_s: float
    captured_at: datetime
    frame: bytes | None = None
    picture: Picture | None = None
    counters: StreamCounters | None = None
    gpu: GpuStats | None = None
    session_alive: bool = True
    frame_fetch_ms: float | None = None
    frame_seq: int | None = None

    @property
    def has_frame(self) -> bool:
        """True when this tick carries an output frame."""
        return self.frame is not None or self.picture is not None


@dataclass(frozen=True)
class SessionPlan:
    """What a driver needs to start a session: the scenario, its uploaded inputs, who runs it."""

    scenario: Scenario
    inputs: InputPaths
    first_prompt: str | None
    connection_id: str  # the run id: tags every Scope lifecycle event of the session
    user_id: str | None = None
    sink_node_id: str | None = None


@dataclass(frozen=True)
class ReceiverFigures:
    """What a receiving driver measured on every frame (quality.md, "Measured at the receiver")."""

    frames_received: int
    fps_received: float | None  # frames / stream seconds after the warm-up
    fps_received_p50: float | None  # over 1 s windows
    fps_received_p05: float | None
    freeze_count: int  # W3C rule: gap > max(3 x mean of last 30 gaps, mean + 150 ms)
    freeze_total_s: float
    frame_interval_p50_ms: float | None
    frame_interval_p95_ms: float | None
    frame_interval_max_ms: float | None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter_ms: float | None = None
    nack_count: int | None = None
    pli_count: int | None = None
    bitrate_kbps: float | None = None
    rtt_ms: float | None = None
    codec: str | None = None


class MediaDriver(Protocol):
    """One run's media: start it, look at it, switch prompts, stop it (always safe to call)."""

    name: str  # "webrtc" or "headless"
    t0: float  # monotonic time the session clock started (Tick.t_s = 0)

    async def remove_leftovers(self) -> int:
        """Before a run: end sessions a killed harness left on the instance; return how many."""

    async def start(self, plan: SessionPlan) -> None:
        """Start the session; on return the session clock (Tick.t_s = 0) has started."""

    async def tick(self, *, with_metrics: bool) -> Tick:
        """The latest state of the stream now; `with_metrics` also reads Scope's counters and GPU."""

    async def switch_prompt(self, text: str) -> None:
        """Switch the session's prompt (data channel or REST)."""

    async def media_path(self) -> MediaPath:
        """Where the media went, from evidence (relay counters), not from what was asked."""

    def receiver_figures(self) -> ReceiverFigures | None:
        """Per-frame receiver figures (None for drivers that only sample)."""

    async def stop(self) -> None:
        """End the session and release everything; idempotent, bounded, safe on every path."""
