"""The WebRTC driver: the harness is the browser (architecture.md, "Media drivers").

Only a WebRTC session relays media through a cloud-connected Scope to the orchestrator, so
this is the driver whose figures may be attributed to an orchestrator. It offers the
session (``tasks/scope/webrtc.py``), reads the stream from what it receives itself (every
frame's arrival, the latest frame's luma), switches prompts on the data channel and ends
every session with ``DELETE /api/v1/webrtc/offer/{id}`` and a closed peer connection.

The session clock (``t0``, ``Tick.t_s = 0``) starts just before the offer is POSTed.
A tick that carries a frame that arrived since the previous tick is timed at that
frame's arrival; a tick without a new frame is timed when it was taken, so a stalled
stream's ticks still advance.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from config.settings import Settings
from errors import Category, HarnessError, Phase, PhaseFailed
from tasks.scope.client import ScopeClient
from tasks.scope.models import GpuStats, SessionMetrics
from tasks.scope.webrtc import NetworkStats, OfferPlan, ScopePeer, luma_plane
from tasks.session.driver import MediaPath, Picture, ReceiverFigures, SessionPlan, StreamCounters, Tick
from tasks.session.inputs import IMAGE, VIDEO, InputPaths, default_cache_dir, ensure_local_input

_log = logging.getLogger(__name__)

DELETE_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 5.0
STATS_TIMEOUT_S = 1.0
LEFTOVER_ROUNDS = 32
LEFTOVER_DEADLINE_S = 15.0
LEFTOVER_RECHECK_S = 0.05
FPS_OUT_WINDOW_S = 1.0


def _utc_now() -> datetime:
    """The UTC wall clock (the default `clock`)."""
    return datetime.now(timezone.utc)


def webrtc_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """A copy of a scenario graph whose source nodes read the offer's track (`source_mode: video`)."""
    converted = copy.deepcopy(graph)
    for node in converted.get("nodes", []):
        if node.get("type") == "source":
            node.pop("source_name", None)
            node["source_mode"] = "video"
    return converted


def initial_parameters(plan: SessionPlan) -> dict[str, Any]:
    """The offer's `initialParameters` for a scenario: pipelines or graph, mode, prompt, i2v image."""
    scenario = plan.scenario
    parameters: dict[str, Any] = dict(scenario.parameters)
    parameters.update(
        pipeline_ids=list(scenario.pipeline_ids),
        input_mode="video" if scenario.input_kind == VIDEO else "text",
        produces_video=True,  # relay mode needs it said (scope-api.md)
    )
    if plan.first_prompt is not None:
        parameters["prompts"] = [{"text": plan.first_prompt, "weight": 1.0}]
    if scenario.input_kind == IMAGE:
        if not plan.inputs.image_path:
            raise PhaseFailed(f"scenario {scenario.name} needs an uploaded image input",
                              category=Category.HARNESS, phase=Phase.START)
        parameters["first_frame_image"] = plan.inputs.image_path
    if scenario.graph is not None:
        parameters["graph"] = webrtc_graph(scenario.graph)
    return parameters


def _local_clip(inputs: InputPaths) -> Path:
    """The local clip to send: the one the lifecycle prepared, else the cached default."""
    local = getattr(inputs, "local_clip_path", None)
    return Path(local) if local else ensure_local_input(VIDEO, default_cache_dir())


@dataclass
class _RelayEvidence:
    """What /session/metrics said about this session: listed at all, relay_mode, cloud frames."""

    listed: bool = False
    relay_mode: bool = False
    frames_from_cloud: list[int] = field(default_factory=list)

    def observe(self, stats: Any) -> None:
        """Note one listing of this session."""
        self.listed = True
        self.relay_mode = self.relay_mode or getattr(stats, "relay_mode", None) is True
        from_cloud = getattr(stats, "frames_from_cloud", None)
        if isinstance(from_cloud, int):
            self.frames_from_cloud.append(from_cloud)

    @property
    def relayed(self) -> bool:
        """True when Scope said relay_mode, or frames_from_cloud grew between two readings."""
        counts = self.frames_from_cloud
        return self.relay_mode or (len(counts) >= 2 and counts[-1] > counts[0])


def _webrtc_session_ids(metrics: SessionMetrics) -> list[str]:
    """Ids of listed sessions that are not the headless one."""
    return [sid for sid, stats in metrics.sessions.items()
            if sid != "headless" and getattr(stats, "headless", None) is not True]


class WebRTCDriver:
    """One run's WebRTC session on one Scope instance: `WebRTCDriver(client, settings=..., clock=...)`."""

    name = "webrtc"

    def __init__(self, client: ScopeClient, *, settings: Settings | None = None,
                 clock: Callable[[], datetime] = _utc_now, ice_servers: tuple[str, ...] = ()) -> None:
        self.client = client
        self.settings = settings or Settings()
        self.clock = clock
        self.ice_servers = ice_servers
        self.t0 = time.monotonic()
        self.peer: ScopePeer | None = None
        self._evidence = _RelayEvidence()
        self._network = NetworkStats()
        self._last_tick_at = 0.0
        self._picture: tuple[int, Picture] | None = None
        self._ended_at: float | None = None
        self._stopping: asyncio.Future[HarnessError | None] | None = None

    async def remove_leftovers(self) -> int:
        """End WebRTC sessions a killed harness left behind; return how many were deleted.

        Real Scope 0.2.4 lists only the first active session in /session/metrics, so one
        read shows at most one leftover: delete it, read again, until none is listed
        (bounded by LEFTOVER_ROUNDS reads and LEFTOVER_DEADLINE_S). One run per instance
        at a time means any session listed before the run starts is a leftover.
        """
        deleted: set[str] = set()
        deadline = time.monotonic() + LEFTOVER_DEADLINE_S
        for _ in range(LEFTOVER_ROUNDS):
            listed = _webrtc_session_ids(await self.client.session_metrics())
            fresh = [sid for sid in listed if sid not in deleted]
            if not listed or time.monotonic() > deadline:
                break
            if not fresh:  # Scope removes a deleted session within ~10 ms: look again shortly
                await asyncio.sleep(LEFTOVER_RECHECK_S)
                continue
            for sid in fresh:
                deleted.add(sid)
                await self.client.webrtc_delete(sid)
        if deleted:
            _log.info("deleted %d leftover WebRTC session(s): %s", len(deleted), sorted(deleted))
        return len(deleted)

    async def start(self, plan: SessionPlan) -> None:
        """Offer the session; on return Scope answered and the session clock runs from the POST."""
        parameters = initial_parameters(plan)
        clip = None
        if plan.scenario.input_kind == VIDEO:
            clip = await asyncio.to_thread(_local_clip, plan.inputs)
        self.peer = ScopePeer(self.client, ice_servers=self.ice_servers)
        offer = OfferPlan(parameters, connection_id=plan.connection_id, user_id=plan.user_id, clip=clip)
        self.t0 = time.monotonic()
        try:
            await self.peer.open(offer)
        finally:
            self.t0 = self.peer.started_at or self.t0

    async def tick(self, *, with_metrics: bool) -> Tick:
        """The latest received frame and the receiver's counters; Scope's metrics when asked."""
        peer = self._require_peer()
        now = time.monotonic()
        seq = peer.frames_received
        fresh_at = peer.latest_at if peer.latest_at is not None and peer.latest_at > self._last_tick_at else None
        taken_at = fresh_at if fresh_at is not None else now
        self._last_tick_at = now
        counters = StreamCounters(frames_out=seq, fps_out=peer.arrivals.count_between(now - FPS_OUT_WINDOW_S, now)
                                  / FPS_OUT_WINDOW_S)
        gpu: GpuStats | None = None
        if with_metrics:
            counters, gpu = await self._read_metrics(counters)
        return Tick(
            t_s=taken_at - self.t0,
            captured_at=self.clock() - timedelta(seconds=now - taken_at),
            picture=self._latest_picture(seq),
            counters=counters,
            gpu=gpu,
            session_alive=peer.ended_reason is None,
            frame_seq=seq if seq else None,
        )

    def _latest_picture(self, seq: int) -> Picture | None:
        """The latest frame as a Picture, its luma extracted once per frame (only when looked at)."""
        peer = self._require_peer()
        if peer.latest is None:
            return None
        if self._picture is None or self._picture[0] != seq:
            self._picture = (seq, Picture(luma=luma_plane(peer.latest), rgb=peer.latest))
        return self._picture[1]

    async def _read_metrics(self, counters: StreamCounters) -> tuple[StreamCounters, GpuStats | None]:
        """Scope's view of this session (input counters, relay evidence), the GPU, the network stats."""
        peer = self._require_peer()
        metrics = await self.client.session_metrics()
        ours = metrics.sessions.get(peer.session_id or "")
        if ours is not None:
            self._evidence.observe(ours)
            counters = StreamCounters(frames_out=counters.frames_out, fps_out=counters.fps_out,
                                      frames_in=ours.frames_in, fps_in=ours.fps_in, pipeline_fps=ours.pipeline_fps)
        await self._refresh_network_stats()
        return counters, metrics.gpu

    async def _refresh_network_stats(self) -> None:
        """Keep the latest peer-connection stats (they are gone once the connection closes)."""
        peer = self._require_peer()
        try:
            async with asyncio.timeout(STATS_TIMEOUT_S):
                self._network = await peer.network_stats()
        except (HarnessError, TimeoutError) as exc:
            _log.debug("peer connection stats not read: %s", exc)

    async def switch_prompt(self, text: str) -> None:
        """Send the prompt on the data channel; POST /session/parameters only when it is not open."""
        message = {"prompts": [{"text": text, "weight": 1.0}]}
        if self.peer is not None and self.peer.send_parameters(message):
            return
        _log.info("data channel not open: switching the prompt over REST (applies to every session)")
        await self.client.switch_prompt(text)

    async def media_path(self) -> MediaPath:
        """`relay` when Scope listed this session with relay_mode or growing frames_from_cloud, else `local`.

        Real Scope lists only the first active session; when ours was never listed, an
        instance without a cloud connection proves `local`, and a connected one cannot tell
        (PhaseFailed: the run records no media path rather than a guess).
        """
        peer = self._require_peer()
        if not self._evidence.listed and peer.ended_reason is None and self._ended_at is None:
            ours = (await self.client.session_metrics()).sessions.get(peer.session_id or "")
            if ours is not None:
                self._evidence.observe(ours)
        if self._evidence.listed:
            return MediaPath.RELAY if self._evidence.relayed else MediaPath.LOCAL
        if not (await self.client.cloud_status()).connected:
            return MediaPath.LOCAL
        raise PhaseFailed("media path unknown: Scope never listed this WebRTC session in /session/metrics",
                          category=Category.PROTOCOL, phase=Phase.STREAM)

    def receiver_figures(self) -> ReceiverFigures | None:
        """fps, gaps and freezes of every received frame, and the peer connection's network stats."""
        if self.peer is None:
            return None
        until = self._ended_at or time.monotonic()
        arrivals = self.peer.arrivals.figures(warmup_s=self.settings.thresholds.fps_warmup_s, until=until)
        net = self._network
        return ReceiverFigures(
            frames_received=arrivals.frames_received,
            fps_received=arrivals.fps_received,
            fps_received_p50=arrivals.fps_received_p50,
            fps_received_p05=arrivals.fps_received_p05,
            freeze_count=arrivals.freeze_count,
            freeze_total_s=arrivals.freeze_total_s,
            frame_interval_p50_ms=arrivals.frame_interval_p50_ms,
            frame_interval_p95_ms=arrivals.frame_interval_p95_ms,
            frame_interval_max_ms=arrivals.frame_interval_max_ms,
            packets_received=net.packets_received,
            packets_lost=net.packets_lost,
            jitter_ms=net.jitter_ms,
            bitrate_kbps=net.bitrate_kbps,
            rtt_ms=net.rtt_ms,
            codec=net.codec,
        )

    async def stop(self) -> None:
        """DELETE the session, then close the peer connection; bounded, once, safe after a cancel.

        The work runs as one shielded task: a caller cancelled again while waiting leaves it
        to finish on its own, and every later call returns at once. Only the first caller
        sees a failure (the DELETE's); the connection is closed either way.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_once())
            error = await asyncio.shield(self._stopping)
            if error is not None:
                raise error
            return
        if not self._stopping.done():
            await asyncio.shield(self._stopping)

    async def _stop_once(self) -> HarnessError | None:
        peer = self.peer
        if peer is None:
            return None
        peer.mark_closing()  # stream_stopped and the closing connection are ours from here on
        self._ended_at = time.monotonic()
        await self._refresh_network_stats()
        error = await self._delete(peer.session_id) if peer.session_id else None
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await peer.close()
        except TimeoutError:
            error = error or PhaseFailed("the peer connection did not close in time",
                                         category=Category.HARNESS, phase=Phase.CLEANUP)
        return error

    async def _delete(self, session_id: str) -> HarnessError | None:
        """DELETE /webrtc/offer/{id} within DELETE_TIMEOUT_S; the error instead of raising it."""
        try:
            async with asyncio.timeout(DELETE_TIMEOUT_S):
                await self.client.webrtc_delete(session_id)
        except HarnessError as exc:
            return exc.with_phase(Phase.CLEANUP)
        except TimeoutError:
            return PhaseFailed(f"DELETE /api/v1/webrtc/offer/{session_id} did not answer in time",
                               category=Category.NETWORK, phase=Phase.CLEANUP)
        return None

    def _require_peer(self) -> ScopePeer:
        if self.peer is None:
            raise PhaseFailed("the WebRTC session was not started", category=Category.HARNESS)
        return self.peer
