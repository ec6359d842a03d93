"""The headless driver: Scope's REST session (`/session/start`, `/session/frame`).

In Scope 0.2.4 a headless session never uses the cloud (it answers `cloud_mode: false`),
so its media path is always `headless`: its stream figures describe the Scope box, never
an orchestrator. Kept for Scope boxes with their own GPU and for quick local checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from errors import Category, PhaseFailed
from tasks.scope.client import ScopeClient
from tasks.scope.models import SessionMetrics
from tasks.session.driver import MediaPath, ReceiverFigures, SessionPlan, StreamCounters, Tick
from tasks.session.inputs import build_session_request

STOP_TIMEOUT_S = 10.0


class HeadlessDriver:
    """A REST session on one Scope instance; one per run."""

    name = "headless"

    def __init__(self, client: ScopeClient, *, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.clock = clock
        self.sink_node_id: str | None = None
        self.started = False
        self.t0 = 0.0

    async def remove_leftovers(self) -> int:
        """Stop a headless session left running (a second start would silently replace it)."""
        return 1 if await self.client.stop_session() else 0

    async def start(self, plan: SessionPlan) -> None:
        """POST /session/start; the session clock starts when Scope answers."""
        request, self.sink_node_id = build_session_request(plan.scenario, plan.inputs, plan.first_prompt)
        self.started = True  # from here on, stop() must run: the request may have reached Scope
        await self.client.start_session(**request)
        self.t0 = time.monotonic()

    async def tick(self, *, with_metrics: bool) -> Tick:
        """One frame from /session/frame, and /session/metrics when asked, read at once."""
        # The tick's time is when its requests were sent: Scope answers with what it had then.
        t_s = time.monotonic() - self.t0
        if with_metrics:
            metrics, (frame, fetch_ms) = await asyncio.gather(self.client.session_metrics(), self._timed_frame())
        else:
            metrics, (frame, fetch_ms) = None, await self._timed_frame()
        return Tick(
            t_s=t_s,
            captured_at=self.clock(),
            frame=frame,
            counters=_counters(metrics),
            gpu=metrics.gpu if metrics is not None else None,
            session_alive=metrics is None or metrics.headless is not None,
            frame_fetch_ms=fetch_ms,
        )

    async def _timed_frame(self) -> tuple[bytes | None, float]:
        t0 = time.perf_counter()
        frame = await self.client.get_frame(sink_node_id=self.sink_node_id)
        return frame, (time.perf_counter() - t0) * 1000.0

    async def switch_prompt(self, text: str) -> None:
        """POST /session/parameters with the new prompt."""
        await self.client.switch_prompt(text)

    async def media_path(self) -> MediaPath:
        """Always headless: 0.2.4 builds the headless session without the cloud backend."""
        return MediaPath.HEADLESS

    def receiver_figures(self) -> ReceiverFigures | None:
        """None: a headless session is sampled, not received."""
        return None

    async def stop(self) -> None:
        """Stop the session if this run started one (404 tolerated); bounded."""
        if not self.started:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.client.stop_session()
        except TimeoutError as exc:
            raise PhaseFailed("POST /session/stop did not answer in time", category=Category.NETWORK) from exc
        self.started = False


def _counters(metrics: SessionMetrics | None) -> StreamCounters | None:
    headless = metrics.headless if metrics is not None else None
    if headless is None:
        return None
    return StreamCounters(
        frames_out=headless.frames_out,
        fps_out=headless.fps_out,
        frames_in=headless.frames_in,
        fps_in=headless.fps_in,
        pipeline_fps=headless.pipeline_fps,
    )


