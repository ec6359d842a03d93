"""Headless sessions: start (simple or graph mode), stop, frames, metrics and parameters."""

from __future__ import annotations

import asyncio
import dataclasses

from simulator import behaviour, catalog
from simulator.graph import GraphError, parse_graph
from simulator.instance import ScopeInstance
from simulator.media import MediaError, media_reference
from simulator.profiles import Profile, draw_latency
from simulator.schemas import ParametersUpdate, SessionStartRequest, main_prompt
from simulator.session import DEFAULT_SINK, HeadlessSession, SessionPlan
from simulator.webrtc import WebRtcHub

LOGGER = "scope.server.headless"
START_FAILED = "FrameProcessor failed to start (check logs for details)"
NO_SESSION = "No active headless session"
NO_FRAME_WHY = "(no active session or pipeline not running)"
NOT_LOADED_LOCALLY = (
    "Pipeline {pid} is not loaded on this machine: while cloud-connected, loads go to the cloud, "
    "but a headless session runs locally"
)


class HeadlessError(Exception):
    """A request the headless routes answer with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


class Headless:
    """The headless-session half of a simulated Scope server.

    As on Scope 0.2.4 a headless session never uses the cloud (`cloud_mode: false`), even on
    a cloud-connected instance: there, simple mode fails (the pipeline was loaded on the
    cloud, not here) and graph mode loads its pipelines locally and runs on the local box's
    healthy behaviour; the orchestrator's profile never acts on it.
    """

    def __init__(self, instance: ScopeInstance, webrtc: WebRtcHub) -> None:
        self.instance, self.webrtc = instance, webrtc

    async def start(self, request: SessionStartRequest) -> dict:
        """Start a session; a running one is replaced without being stopped (it leaks)."""
        instance = self.instance
        instance.advance()
        local = instance.cloud_connected()
        plan = await self._plan(request, local)
        now = instance.clock.now()
        if instance.session is not None:
            instance.end_session(instance.session, now, replaced=True)
        session = self._create(request, plan, now, Profile() if local else instance.profile)
        if local:
            instance.local_session_ids.add(session.session_id)
        instance.session = session
        instance.sessions.append(session)
        instance.logs.write(LOGGER, "INFO", f"Headless session started: pipelines {list(plan.pipeline_ids)}")
        instance.events.headless("stream_started", session.session_id, list(plan.pipeline_ids))
        answer = {"status": "ok", "input_mode": request.input_mode, "cloud_mode": False, "pipeline_id": plan.pipeline_id}
        return (answer | {"graph": True}) if plan.graph else answer

    def _create(self, request: SessionStartRequest, plan: SessionPlan, now: float, profile: Profile) -> HeadlessSession:
        instance = self.instance
        fps = profile.fps_out or catalog.chain_fps(plan.pipeline_ids)
        return HeadlessSession(
            f"headless-{instance.rng.getrandbits(48):012x}", plan,
            started_mono=now, started_wall=instance.clock.wall(now),
            first_frame_s=draw_latency(instance.rng, profile.first_frame_s), fps_per_sink=fps,
            prompt=main_prompt(request.prompts), parameters=_initial_parameters(request, plan),
            node_parameters=request.node_parameters,
        )

    async def _plan(self, request: SessionStartRequest, local: bool) -> SessionPlan:
        if request.graph is not None:
            return await self._plan_graph(request, Profile() if local else self.instance.profile)
        if local:
            self._fail(NOT_LOADED_LOCALLY.format(pid=request.pipeline_id))
        loaded = self.instance.pipelines.loaded_ids
        if request.pipeline_id not in loaded or not self.instance.pipelines.has_loaded(loaded):
            self._fail(f"Pipeline {request.pipeline_id} is not loaded; load it before starting a session")
        source = request.input_source
        input_path = None
        if request.input_mode == "video" and source is not None and source.enabled:
            input_path = source.source_name
        plan = SessionPlan(tuple(loaded), request.input_mode, input_path, (DEFAULT_SINK,), False, request.pipeline_id)
        return self._with_media(plan, request)

    async def _plan_graph(self, request: SessionStartRequest, profile: Profile) -> SessionPlan:
        try:
            graph = parse_graph(request.graph or {})
        except GraphError as exc:
            raise HeadlessError(400, str(exc)) from None
        chain = list(graph.pipeline_ids)
        if catalog.unknown_ids(chain):
            self._fail(f"Unknown pipeline(s) in graph: {catalog.unknown_ids(chain)}")
        await self._load_for_graph(chain, profile)
        mode = "video" if graph.source_path else request.input_mode
        plan = SessionPlan(tuple(chain), mode, graph.source_path, graph.sink_ids, True, chain[0] if chain else None)
        return self._with_media(plan, request)

    async def _load_for_graph(self, chain: list[str], profile: Profile) -> None:
        # Graph mode loads its own pipelines; the start answers once they are loaded.
        pipelines = self.instance.pipelines
        if not chain or pipelines.has_loaded(chain):
            return
        job = pipelines.request_load(chain, None, profile)
        await asyncio.sleep(max(0.0, job.done_at - self.instance.clock.now()))
        self.instance.advance(max(self.instance.clock.now(), job.done_at))
        if job.failure is not None:
            self._fail(f"Graph pipelines failed to load: {job.failure}")

    def _with_media(self, plan: SessionPlan, request: SessionStartRequest) -> SessionPlan:
        needs_input = catalog.needs_video_input(plan.pipeline_ids) or plan.input_mode == "video"
        if needs_input and not plan.input_path:
            self._fail(f"Pipelines {list(plan.pipeline_ids)} need a video input (input_mode 'video' + input_source)")
        tint = None
        if plan.input_path:
            try:
                reference = media_reference(plan.input_path)
            except MediaError as exc:
                self._fail(str(exc))
            tint = (reference.cb, reference.cr)
        image = (request.parameters or {}).get("first_frame_image")
        if tint is None and isinstance(image, str):
            try:
                reference = media_reference(image)
                tint = (reference.cb, reference.cr)
            except MediaError as exc:
                self.instance.logs.write(LOGGER, "WARNING", f"Ignoring first_frame_image: {exc}")
        return dataclasses.replace(plan, tint=tint)

    def _fail(self, reason: str) -> None:
        self.instance.logs.write(LOGGER, "ERROR", f"Error starting headless session: {reason}")
        self.instance.events.startup_failed(reason, [])
        raise HeadlessError(500, START_FAILED)

    def stop(self) -> None:
        """Stop the session; HeadlessError 404 when there is none."""
        instance = self.instance
        now = instance.advance()
        if instance.session is None:
            raise HeadlessError(404, NO_SESSION)
        session = instance.session
        frames = behaviour.frames_out(instance.behaviour(session), session, now)
        instance.end_session(session, now, replaced=False)
        instance.logs.write(LOGGER, "INFO", "Headless session stopped")
        instance.events.headless("stream_stopped", session.session_id, list(session.plan.pipeline_ids),
                                 frames_in=0, frames_out=frames)

    def frame(self, *, quality: int, sink_node_id: str | None) -> bytes:
        """The latest output frame (a local WebRTC session's first); HeadlessError 404 when there is none (yet)."""
        instance = self.instance
        now = instance.advance()
        webrtc_frame = None if sink_node_id else self.webrtc.latest_frame(quality)
        if webrtc_frame is not None:
            return webrtc_frame
        session = instance.session
        if session is None:
            raise HeadlessError(404, f"No frame available {NO_FRAME_WHY}")
        sink = sink_node_id or session.plan.sink_ids[0]
        if session.plan.graph and sink not in session.plan.sink_ids:
            raise HeadlessError(404, f"No frame available for sink node '{sink}' {NO_FRAME_WHY}")
        frame = behaviour.output_frame(instance.behaviour(session), session, now, quality=quality, sink=sink)
        if frame is None:
            raise HeadlessError(404, f"No frame available {NO_FRAME_WHY}")
        return frame

    def metrics(self) -> dict:
        """The `/session/metrics` body: only the first WebRTC session if there is one, else the headless one."""
        instance = self.instance
        now = instance.advance()
        session = instance.session
        first_webrtc = self.webrtc.metrics_entry()
        if first_webrtc is not None:
            sessions = {first_webrtc[0]: first_webrtc[1]}
        elif session is not None:
            sessions = {"headless": behaviour.session_metrics(instance.behaviour(session), session, now)}
        else:
            sessions = {}
        return {"sessions": sessions, "gpu": instance.gpu_stats(now)}

    def update_parameters(self, update: ParametersUpdate) -> dict:
        """Merge new parameters into the session, if any; a `prompts` entry switches the prompt.

        Scope answers 200 with the applied parameters even when no session runs.
        """
        instance = self.instance
        now = instance.advance()
        applied = update.applied()
        self.webrtc.broadcast_parameters(applied)  # every WebRTC session, echoed on its data channel
        session = instance.session
        if session is None:
            return applied
        session.parameters.update(applied)
        if update.prompts is not None:
            text = main_prompt(update.prompts)
            latency_s = instance.behaviour(session).profile.prompt_latency_s
            session.switch_prompt(text, now, latency_s, instance.clock.wall(now))
            instance.logs.write(LOGGER, "INFO", f"Prompt updated: {text!r}")
        return applied

    def parameters(self) -> dict:
        """The `GET /session/parameters` body: the first WebRTC session's, else the headless one's, else `{}`."""
        self.instance.advance()
        first_webrtc = self.webrtc.first_parameters()
        if first_webrtc is not None:
            return {"parameters": first_webrtc}
        session = self.instance.session
        return {"parameters": {} if session is None else dict(session.parameters)}


def _initial_parameters(request: SessionStartRequest, plan: SessionPlan) -> dict:
    # Scope starts the session's parameters from the chain and the mode, then prompts, then flat parameters.
    parameters: dict = {"pipeline_ids": list(plan.pipeline_ids), "input_mode": request.input_mode}
    if request.prompts is not None:
        parameters["prompts"] = [item.model_dump() for item in request.prompts]
    for key, value in (request.parameters or {}).items():
        parameters.setdefault(key, value)
    return parameters
