"""Behaviour profiles: how a simulated Scope instance (and its orchestrator) behaves.

Each profile is a frozen pydantic model; every field can be overridden by name
(`build_profile("stall", {"fault_after_s": 1.0})`). Latencies are `(median_s, sigma)`
lognormal draws clamped to [0.5x, 3x] the median; a plain number means a fixed value.
"""

from __future__ import annotations

import math
import random
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

DEFAULT_FAULT_AFTER_S = 3.0
LATENCY_CLAMP = (0.5, 3.0)


def _as_latency(value: Any) -> Any:
    # A bare number is a fixed latency: convenient for overrides in tests and on the CLI.
    if isinstance(value, int | float):
        return (float(value), 0.0)
    return value


Latency = Annotated[tuple[float, float], BeforeValidator(_as_latency)]


def _as_size(value: Any) -> Any:
    if isinstance(value, int):
        return (value, value)
    return value


Size = Annotated[tuple[int, int], BeforeValidator(_as_size)]
EventsDefect = Literal["null_ids", "no_heartbeats", "no_session_events", "cloud_connection_id"]


def draw_latency(rng: random.Random, latency: tuple[float, float]) -> float:
    """One lognormal draw around the median, clamped to [0.5x, 3x] the median."""
    median_s, sigma = latency
    if median_s <= 0 or sigma <= 0:
        return max(median_s, 0.0)
    value = rng.lognormvariate(math.log(median_s), sigma)
    return min(max(value, LATENCY_CLAMP[0] * median_s), LATENCY_CLAMP[1] * median_s)


class FaultKind(StrEnum):
    """What goes wrong under a profile (None for the profiles that pass)."""

    CONNECT_FAIL = "connect_fail"
    CONNECT_TIMEOUT = "connect_timeout"
    LOAD_ERROR = "load_error"
    NO_CAPACITY = "no_capacity"
    CRASH = "crash"
    STALL = "stall"
    FROZEN = "frozen"
    BLACK = "black"
    CORRUPT = "corrupt"
    WRONG_SIZE = "wrong_size"
    PROMPT_INSENSITIVE = "prompt_insensitive"
    LOW_FPS = "low_fps"
    VRAM_LEAK = "vram_leak"
    VRAM_CEILING = "vram_ceiling"
    SLOW_HTTP = "slow_http"
    HANG_HTTP = "hang_http"
    CONN_RESET = "conn_reset"
    PACKET_LOSS = "packet_loss"
    ADDED_LATENCY = "added_latency"
    FREEZE_BURSTS = "freeze_bursts"
    RELAY_DROP = "relay_drop"


NETWORK_FAULTS = frozenset({FaultKind.PACKET_LOSS, FaultKind.ADDED_LATENCY, FaultKind.FREEZE_BURSTS, FaultKind.RELAY_DROP})


class Profile(BaseModel):
    """The healthy instance: every other profile changes some of these fields or adds its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = "healthy"
    fault: ClassVar[FaultKind | None] = None

    connect_s: Latency = Field((0.3, 0.25), description="cloud connect -> connected")
    load_s: Latency = Field((0.5, 0.25), description="load request -> loaded (warm)")
    cold_start_probability: float = Field(0.0, ge=0.0, le=1.0, description="chance the first load is cold")
    cold_load_s: Latency = Field((65.0, 0.1), description="load time of a cold start")
    first_frame_s: Latency = Field((0.5, 0.25), description="session start answered -> first frame")
    fps_out: float | None = Field(None, gt=0, description="output fps per sink; None: the pipeline's own")
    prompt_latency_s: float = Field(0.3, ge=0, description="prompt switch -> new look in the output")
    load_status_lag_s: float = Field(
        0.0, ge=0, description="status still reads what it read before a load request this long (0.2.4: loading at once)"
    )
    http_delay_s: float = Field(0.0, ge=0, description="delay added before every Scope answer")
    vram_total_mb: float = Field(24564.0, gt=0, description="GPU memory")
    gpu_name: str = "NVIDIA GeForce RTX 4090"
    has_gpu: bool = Field(True, description="False: vram_gb null and only the weight-free pipelines registered")
    reports_gpu_memory: bool = Field(
        False, description="metrics report gpu figures; Scope 0.2.4 answers gpu {} even with a GPU (it reads total_mem)"
    )
    leaked_session_vram_mb: float = Field(1500.0, ge=0, description="VRAM a replaced (leaked) session holds")
    webrtc_orphan_s: float = Field(30.0, gt=0, description="silent WebRTC client -> session removed (ICE consent)")
    events_defect: EventsDefect | None = Field(
        None, description="a Kafka lifecycle-event defect the parity fix removed (simulator/events.py)"
    )


class SlowProfile(Profile):
    """Everything slower, still within the default thresholds."""

    name: ClassVar[str] = "slow"
    connect_s: Latency = (1.5, 0.25)
    load_s: Latency = (2.0, 0.25)
    first_frame_s: Latency = (1.5, 0.25)
    fps_out: float | None = Field(8.0, gt=0)


class ColdStartProfile(Profile):
    """The first load after (re)start pulls weights: ~65 s."""

    name: ClassVar[str] = "cold_start"
    cold_start_probability: float = Field(1.0, ge=0.0, le=1.0)


class ConnectFailProfile(Profile):
    """Cloud connect ends in an error."""

    name: ClassVar[str] = "connect_fail"
    fault: ClassVar[FaultKind | None] = FaultKind.CONNECT_FAIL
    connect_error: str = "All orchestrators failed (3 tried)"


class ConnectTimeoutProfile(Profile):
    """Cloud connect never finishes: status stays connecting."""

    name: ClassVar[str] = "connect_timeout"
    fault: ClassVar[FaultKind | None] = FaultKind.CONNECT_TIMEOUT


class LoadErrorProfile(Profile):
    """The load fails after a short `loading`; the reason is only in the log."""

    name: ClassVar[str] = "load_error"
    fault: ClassVar[FaultKind | None] = FaultKind.LOAD_ERROR
    load_s: Latency = (0.5, 0.1)
    load_error_reason: str = "RuntimeError: CUDA error: out of memory while loading pipeline weights"


class NoCapacityProfile(Profile):
    """The orchestrator is busy: connect fails with OrchestratorBusy and load answers 503."""

    name: ClassVar[str] = "no_capacity"
    fault: ClassVar[FaultKind | None] = FaultKind.NO_CAPACITY
    connect_error: str = "All orchestrators failed (1 tried): OrchestratorBusy"
    load_busy_detail: str = "Cloud request failed: 503 OrchestratorBusy"


class DelayedFaultProfile(Profile):
    """Base of the faults that begin `fault_after_s` after session start."""

    fault_after_s: float = Field(DEFAULT_FAULT_AFTER_S, ge=0, description="session start -> fault")


class CrashProfile(DelayedFaultProfile):
    """The session vanishes with a CUDA error in the log."""

    name: ClassVar[str] = "crash"
    fault: ClassVar[FaultKind | None] = FaultKind.CRASH


class StallProfile(DelayedFaultProfile):
    """frames_out stops growing; the frame stays the last one."""

    name: ClassVar[str] = "stall"
    fault: ClassVar[FaultKind | None] = FaultKind.STALL


class FrozenProfile(DelayedFaultProfile):
    """frames_out keeps growing but the frame bytes stop changing."""

    name: ClassVar[str] = "frozen"
    fault: ClassVar[FaultKind | None] = FaultKind.FROZEN


class BlackProfile(DelayedFaultProfile):
    """Frames turn black (luma ~5) with a little sensor-like noise."""

    name: ClassVar[str] = "black"
    fault: ClassVar[FaultKind | None] = FaultKind.BLACK
    black_luma: float = Field(5.0, ge=0, le=20)


class CorruptProfile(DelayedFaultProfile):
    """Frames become undecodable bytes (JPEG SOI + garbage)."""

    name: ClassVar[str] = "corrupt"
    fault: ClassVar[FaultKind | None] = FaultKind.CORRUPT


class WrongSizeProfile(Profile):
    """Frames come at a fixed size, whatever was requested, from the first frame."""

    name: ClassVar[str] = "wrong_size"
    fault: ClassVar[FaultKind | None] = FaultKind.WRONG_SIZE
    wrong_size: Size = (384, 384)


class PromptInsensitiveProfile(Profile):
    """The output keeps the first prompt's look after every switch, but keeps moving."""

    name: ClassVar[str] = "prompt_insensitive"
    fault: ClassVar[FaultKind | None] = FaultKind.PROMPT_INSENSITIVE


class LowFpsProfile(Profile):
    """Output at 3 fps."""

    name: ClassVar[str] = "low_fps"
    fault: ClassVar[FaultKind | None] = FaultKind.LOW_FPS
    fps_out: float | None = Field(3.0, gt=0)


class VramLeakProfile(Profile):
    """Allocated VRAM grows steadily from session start.

    Real Scope 0.2.4 answers `gpu: {}`, so no VRAM check can see this there; this profile
    reports `gpu` figures as a Scope with the `total_memory` fix would, to exercise the checks.
    """

    name: ClassVar[str] = "vram_leak"
    fault: ClassVar[FaultKind | None] = FaultKind.VRAM_LEAK
    reports_gpu_memory: bool = True
    leak_mb_per_s: float = Field(60.0, ge=0)


class VramCeilingProfile(Profile):
    """Allocated VRAM sits at 95 % of the total.

    Reports `gpu` figures as a Scope with the `total_memory` fix would (0.2.4 answers `gpu: {}`).
    """

    name: ClassVar[str] = "vram_ceiling"
    fault: ClassVar[FaultKind | None] = FaultKind.VRAM_CEILING
    reports_gpu_memory: bool = True
    vram_ceiling_fraction: float = Field(0.95, gt=0, le=1)


class SlowHttpProfile(Profile):
    """Every answer is delayed; a run still passes."""

    name: ClassVar[str] = "slow_http"
    fault: ClassVar[FaultKind | None] = FaultKind.SLOW_HTTP
    http_delay_s: float = Field(0.25, ge=0)


class HangHttpProfile(DelayedFaultProfile):
    """Metrics and frame requests never answer (until the server shuts down)."""

    name: ClassVar[str] = "hang_http"
    fault: ClassVar[FaultKind | None] = FaultKind.HANG_HTTP


class ConnResetProfile(DelayedFaultProfile):
    """GET /api/v1/session/* connections are closed without an HTTP answer."""

    name: ClassVar[str] = "conn_reset"
    fault: ClassVar[FaultKind | None] = FaultKind.CONN_RESET


class PacketLossProfile(Profile):
    """Relay media path: this share of output frames is lost on the way (never delivered, never corrupt).

    Emulated per frame before the packetizer, as a loss NACK/RTX could not repair; single RTP
    packets are not dropped, so the client's NACK/RTX machinery is not exercised.
    """

    name: ClassVar[str] = "packet_loss"
    fault: ClassVar[FaultKind | None] = FaultKind.PACKET_LOSS
    packet_loss_pct: float = Field(10.0, ge=0, le=100, description="share of output frames lost, %")


class AddedLatencyProfile(Profile):
    """Relay media path: every output frame reaches the client this much later (fps unchanged).

    Emulated by holding each frame back before the packetizer: first frame and prompt
    response move later by the same amount; RTCP round-trip times do not change.
    """

    name: ClassVar[str] = "added_latency"
    fault: ClassVar[FaultKind | None] = FaultKind.ADDED_LATENCY
    added_latency_ms: float = Field(250.0, ge=0, description="one-way delay added to every frame")


class MediaPathProfile(Profile):
    """Base of the relay media-path faults that begin `fault_after_s` after session start."""

    fault_after_s: float = Field(DEFAULT_FAULT_AFTER_S, ge=0, description="session start -> fault (relay only)")


class FreezeBurstsProfile(MediaPathProfile):
    """Relay media path: output pauses `freeze_burst_count` times for `freeze_burst_ms` each.

    The first burst starts `fault_after_s` after the session starts, then one every
    `freeze_burst_every_s`; frames due inside a burst are dropped, not queued.
    """

    name: ClassVar[str] = "freeze_bursts"
    fault: ClassVar[FaultKind | None] = FaultKind.FREEZE_BURSTS
    fault_after_s: float = Field(1.0, ge=0, description="session start -> first burst (relay only)")
    freeze_burst_count: int = Field(3, ge=1, description="how many output pauses")
    freeze_burst_ms: float = Field(800.0, gt=0, description="length of each pause")
    freeze_burst_every_s: float = Field(2.0, gt=0, description="start of one burst -> start of the next")


class RelayDropProfile(MediaPathProfile):
    """Relay media path: frames stop `fault_after_s` after the session starts and the server closes the connection."""

    name: ClassVar[str] = "relay_drop"
    fault: ClassVar[FaultKind | None] = FaultKind.RELAY_DROP


class EventsNullIdsProfile(Profile):
    """Lifecycle events carry null connection_id and user_id (the offer's ids are not passed on)."""

    name: ClassVar[str] = "events_null_ids"
    events_defect: EventsDefect | None = "null_ids"


class EventsNoHeartbeatsProfile(Profile):
    """No stream_heartbeat is published."""

    name: ClassVar[str] = "events_no_heartbeats"
    events_defect: EventsDefect | None = "no_heartbeats"


class EventsNoSessionEventsProfile(Profile):
    """No session_created or session_closed is published."""

    name: ClassVar[str] = "events_no_session_events"
    events_defect: EventsDefect | None = "no_session_events"


class EventsCloudConnectionIdProfile(Profile):
    """The cloud side's events (websocket_*, its loads) carry the manifest id, not the session's connection_id."""

    name: ClassVar[str] = "events_cloud_connection_id"
    events_defect: EventsDefect | None = "cloud_connection_id"


PROFILES: dict[str, type[Profile]] = {
    cls.name: cls
    for cls in (
        Profile, SlowProfile, ColdStartProfile, ConnectFailProfile, ConnectTimeoutProfile,
        LoadErrorProfile, NoCapacityProfile, CrashProfile, StallProfile, FrozenProfile,
        BlackProfile, CorruptProfile, WrongSizeProfile, PromptInsensitiveProfile, LowFpsProfile,
        VramLeakProfile, VramCeilingProfile, SlowHttpProfile, HangHttpProfile, ConnResetProfile,
        PacketLossProfile, AddedLatencyProfile, FreezeBurstsProfile, RelayDropProfile,
        EventsNullIdsProfile, EventsNoHeartbeatsProfile, EventsNoSessionEventsProfile, EventsCloudConnectionIdProfile,
    )
}


class ProfileError(ValueError):
    """An unknown profile name or a bad override."""


def build_profile(name: str, overrides: dict[str, Any] | None = None) -> Profile:
    """The profile `name` with `overrides` applied; ProfileError names what is wrong."""
    cls = PROFILES.get(name)
    if cls is None:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    try:
        return cls.model_validate(overrides or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"profile {name!r}: {problems} (fields: {', '.join(cls.model_fields)})") from None


def profile_fields(name: str) -> dict[str, Any]:
    """The default value of every field of profile `name`."""
    cls = PROFILES[name]
    return {key: info.default for key, info in cls.model_fields.items()}


def own_fields(name: str) -> dict[str, Any]:
    """The fields whose default differs from the healthy profile, or that only this profile has."""
    base = profile_fields("healthy")
    return {k: v for k, v in profile_fields(name).items() if k not in base or base[k] != v}
