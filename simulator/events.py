"""The lifecycle events a simulated Scope publishes to Kafka, as real 0.2.4 (with the parity fix) does.

- Pipeline loads: pipeline_unloaded (the set a load replaces), pipeline_load_start,
  pipeline_loaded (`load_duration_ms`) or `error` pipeline_load_failed; no ids at all.
- A WebRTC session: stream_started, session_created (both paths: Scope starts the stream first),
  playback_ready (`ttff_ms`: its real time to first frame), stream_heartbeat every
  `$SCOPE_SIM_HEARTBEAT_S` (default 10 s; video mode, only while input arrives; fps as averages
  since start), stream_stopped, session_closed; all with the offer's connection_id, user_id and
  connection_info. A session the server ends (crash, relay drop) first emits `error` stream_failed.
- A headless session: stream_started and stream_stopped only, without connection ids.
- While cloud-connected (relay), the cloud side adds websocket_connected and
  websocket_disconnected, and the loads are the cloud's. With the parity fix all of them carry
  the relay session's connection_id: the cloud side's events that happen before the offer
  (connect, loads) are held until the offer names it, and go out then with their own
  timestamps; a connection that never carried a session flushes them with its manifest id.

Mode as Scope's code spells it: `local`; a relay session's stream_started says `relay`, its
other events `cloud`. The profile's `events_defect` brings back what the parity fix removed:
`null_ids`, `no_heartbeats`, `no_session_events`, `cloud_connection_id` (the cloud side keeps
its manifest id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.event_publisher import KafkaPublisher, envelope

HEARTBEAT_ENV = "SCOPE_SIM_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10.0
ID_KEYS = ("connection_id", "user_id")


@dataclass
class CloudSide:
    """The cloud connection as its events see it."""

    manifest_id: str
    user_id: str | None
    connected_wall: float
    shared_id: str | None = None  # the relay session's connection_id, once an offer named it
    held: list[tuple[str, dict, float]] = field(default_factory=list)  # (type, data, wall) until then


class ScopeEvents:
    """What a simulated Scope emits at each lifecycle moment, shaped by the profile's events defect."""

    def __init__(self, env: Mapping[str, str], defect: Callable[[], str | None]) -> None:
        self.publisher = KafkaPublisher(env)
        self.heartbeat_s = _positive(env.get(HEARTBEAT_ENV), DEFAULT_HEARTBEAT_S)
        self._defect = defect
        self._cloud: CloudSide | None = None
        self._last_ms = 0

    @property
    def enabled(self) -> bool:
        """True when events go anywhere."""
        return self.publisher.enabled

    def truth(self) -> dict:
        """The `events` entry of `/_sim/truth`."""
        return {**self.publisher.truth(), "defect": self._defect(), "heartbeat_s": self.heartbeat_s}

    def reset(self) -> None:
        """Forget the cloud connection and the counts (a simulator reset)."""
        self._cloud = None
        self.publisher.reset_counts()

    def _emit(self, event_type: str, data: dict, at_wall: float | None = None) -> None:
        if not self.enabled:
            return
        if at_wall is None:
            # Events emitted together get distinct milliseconds, as Scope's (a few ms apart) do: keyed
            # by their own ids they spread over partitions, and a reader can only order them by time.
            self._last_ms = timestamp_ms = max(int(time.time() * 1000), self._last_ms + 1)
        else:
            timestamp_ms = int(at_wall * 1000)  # an event due in the past (a load noticed late)
        self.publisher.publish(envelope(event_type, _without_none(data), timestamp_ms=timestamp_ms))

    def _ids(self, tags: Any, session_id: str | None) -> dict:
        """The identifiers of a session's events (the defect nulls the offer's)."""
        if self._defect() == "null_ids":
            return {"session_id": session_id, "connection_id": _Null, "user_id": _Null}
        return {"session_id": session_id, "connection_id": tags.connection_id, "user_id": tags.user_id,
                "connection_info": tags.connection_info}

    # -- the cloud side -------------------------------------------------------------------------

    def cloud_connected(self, manifest_id: str, user_id: str | None, wall: float) -> None:
        """The relay's websocket to the cloud is up."""
        self._cloud = CloudSide(manifest_id, user_id, wall)
        self._cloud_event("websocket_connected", {}, wall)

    def cloud_disconnected(self, wall: float) -> None:
        """The relay's websocket closed."""
        cloud = self._cloud
        if cloud is None:
            return
        if cloud.shared_id is None:
            self._release(cloud, cloud.manifest_id)
        duration_ms = int((wall - cloud.connected_wall) * 1000)
        self._cloud_event("websocket_disconnected", {"duration_ms": duration_ms, "session_start_time_ms": int(
            cloud.connected_wall * 1000), "session_end_time_ms": int(wall * 1000)}, wall)
        self._cloud = None

    def _cloud_event(self, event_type: str, data: dict, wall: float) -> None:
        cloud = self._cloud
        assert cloud is not None
        if self._defect() == "cloud_connection_id":
            self._emit(event_type, {**data, **self._cloud_ids(cloud, cloud.manifest_id)}, wall)
        elif cloud.shared_id is None:
            cloud.held.append((event_type, data, wall))
        else:
            self._emit(event_type, {**data, **self._cloud_ids(cloud, cloud.shared_id)}, wall)

    def _cloud_ids(self, cloud: CloudSide, connection_id: str) -> dict:
        if self._defect() == "null_ids":
            return {"connection_id": _Null, "user_id": _Null}
        return {"connection_id": connection_id, "user_id": cloud.user_id}

    def _release(self, cloud: CloudSide, connection_id: str) -> None:
        cloud.shared_id = connection_id
        held, cloud.held = cloud.held, []
        for event_type, data, wall in held:
            self._emit(event_type, {**data, **self._cloud_ids(cloud, connection_id)}, wall)

    # -- pipelines ------------------------------------------------------------------------------

    def pipeline(self, event_type: str, pipeline_ids: list[str], wall: float, **data: Any) -> None:
        """pipeline_load_start / pipeline_loaded / pipeline_unloaded / error (the cloud's while connected)."""
        body = {"pipeline_ids": list(pipeline_ids), **data}
        if self._cloud is not None:
            self._cloud_event(event_type, body, wall)
        else:
            self._emit(event_type, body, wall)

    # -- WebRTC sessions ------------------------------------------------------------------------

    def session_started(self, session: Any) -> None:
        """stream_started and session_created of a new WebRTC session (after the cloud's held events)."""
        cloud = self._cloud
        if session.relay and cloud is not None and cloud.shared_id is None and self._defect() != "cloud_connection_id":
            self._release(cloud, session.tags.connection_id or cloud.manifest_id)
        base = {**self._ids(session.tags, session.session_id), "pipeline_ids": list(session.pipeline_ids)}
        started = ("stream_started", {**base, "mode": "relay" if session.relay else "local"})
        created = ("session_created", {**base, "mode": _mode(session)})
        # The order Scope's code publishes on both paths (and the 0.2.4 recording shows locally).
        for event_type, data in (started, created):
            if event_type == "stream_started" or self._defect() != "no_session_events":
                self._emit(event_type, data)

    def playback_ready(self, session: Any, ttff_s: float) -> None:
        """The session's first output frame."""
        self._emit("playback_ready", {**self._session_base(session), "ttff_ms": int(round(ttff_s * 1000))})

    def session_ended(self, session: Any, reason: str) -> None:
        """stream_stopped and session_closed (a server-side end first emits `error` stream_failed)."""
        base = self._session_base(session)
        counts = {"frames_in": session.frames_in, "frames_out": session.frames_out}
        if reason in ("crash", "relay_drop"):
            self._emit("error", {**base, **counts, "error": _error("stream_failed", reason, "StreamError")})
        self._emit("stream_stopped", {**base, **counts})
        if self._defect() != "no_session_events":
            self._emit("session_closed", self._ids(session.tags, session.session_id))

    def offer_failed(self, message: str, exception_type: str) -> None:
        """`error` webrtc_offer_failed (the offer was answered 500)."""
        self._emit("error", {"error": _error("webrtc_offer_failed", message, exception_type), "mode": "local",
                             "phase": "offer_handling"})

    def _session_base(self, session: Any) -> dict:
        return {**self._ids(session.tags, session.session_id), "pipeline_ids": list(session.pipeline_ids),
                "mode": _mode(session)}

    async def heartbeats(self, session: Any, clock: Any) -> None:
        """stream_heartbeat every heartbeat_s while the session lives and (video mode) input arrives."""
        last_mono, last_frames_in = session.created_mono, 0
        while session.live:
            await asyncio.sleep(self.heartbeat_s)
            now = clock.now()
            arriving = session.frames_in > last_frames_in
            if session.live and arriving and session.mode == "video" and self._defect() != "no_heartbeats":
                self._emit("stream_heartbeat", {**self._session_base(session), **_rates(session, now, last_mono)})
            last_mono, last_frames_in = now, session.frames_in

    # -- headless sessions ----------------------------------------------------------------------

    def headless(self, event_type: str, session_id: str, pipeline_ids: list[str], **data: Any) -> None:
        """stream_started / stream_stopped / error of a headless session: no connection ids (as 0.2.4)."""
        self._emit(event_type, {"session_id": session_id, "pipeline_ids": list(pipeline_ids), "mode": "local",
                                **data})

    def startup_failed(self, message: str, pipeline_ids: list[str]) -> None:
        """`error` stream_startup_failed of a headless start."""
        self._emit("error", {"pipeline_ids": pipeline_ids, "mode": "local",
                             "error": _error("stream_startup_failed", message, "RuntimeError")})


class _NullMarker:
    """An identifier published as JSON null (the `null_ids` defect), unlike None which is left out."""


_Null = _NullMarker()


def _without_none(data: dict) -> dict:
    # Scope leaves out what it does not have; the defect's explicit nulls stay, as null.
    return {key: (None if value is _Null else value) for key, value in data.items()
            if value is not None and value != []}


def _mode(session: Any) -> str:
    return "cloud" if session.relay else "local"


def _rates(session: Any, now: float, last_mono: float) -> dict:
    elapsed_s = max(now - session.created_mono, 1e-6)
    rates = {"frames_in": session.frames_in, "frames_out": session.frames_out,
             "fps_in": round(session.frames_in / elapsed_s, 1), "fps_out": round(session.frames_out / elapsed_s, 1),
             "elapsed_ms": int(elapsed_s * 1000), "since_last_heartbeat_ms": int((now - last_mono) * 1000)}
    if session.relay:
        return rates | {"frames_to_cloud": session.frames_in, "frames_from_cloud": session.frames_out}
    return rates | {"pipeline_fps": session.timeline.fps_per_sink if session.timeline is not None else None}


def _error(error_type: str, message: str, exception_type: str) -> dict:
    return {"error_type": error_type, "message": message, "exception_type": exception_type, "recoverable": False}


def _positive(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default
