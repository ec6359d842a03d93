"""One simulated Scope server: its components, its active profile, its faults and its truth.

State only moves forward when something reads it (`advance`), from timestamps: a load
"finishes" or a session "crashes" at the moment a route first looks after the due time,
with log lines stamped at the due time. Everything runs on the server's event loop.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from simulator import behaviour
from simulator.assets import AssetStore
from simulator.behaviour import ActiveProfile, local_behaviour
from simulator.cloud import CloudConnection
from simulator.events import ScopeEvents
from simulator.logbook import LogBook
from simulator.pipelines import PipelineManager
from simulator.profiles import NETWORK_FAULTS, FaultKind, Profile
from simulator.rtc_session import RtcSession, RtcState
from simulator.session import HeadlessSession
from simulator.truth import Clock, FaultRecord, TruthLog

INSTANCE_FAULTS = frozenset({FaultKind.SLOW_HTTP, FaultKind.VRAM_CEILING})
EVENT_FAULTS = frozenset({FaultKind.CONNECT_FAIL, FaultKind.CONNECT_TIMEOUT, FaultKind.LOAD_ERROR, FaultKind.NO_CAPACITY})
HANG_PATHS = frozenset({"/api/v1/session/metrics", "/api/v1/session/frame"})
SESSION_PREFIX = "/api/v1/session/"
MAX_SESSIONS_KEPT = 500  # truth keeps the most recent sessions of a long-running instance
CRASH_LOGGER = "scope.server.pipeline_processor"
CRASH_ERROR = "RuntimeError: CUDA error: an illegal memory access was encountered"


class ScopeInstance:
    """The state behind one simulated Scope server."""

    def __init__(
        self, profile: Profile, *, orchestrator_url: str | None = None, orchestrator_address: str | None = None,
        seed: int = 0, assets_dir: Path, env: Mapping[str, str] | None = None,
    ) -> None:
        self.orchestrator_url, self.orchestrator_address = orchestrator_url, orchestrator_address
        self.seed = seed
        self.clock = Clock()
        self.server_start_wall = self.clock.wall(self.clock.now())
        self.logs = LogBook()
        self.assets = AssetStore(assets_dir)
        self._env = os.environ if env is None else env
        self.stopping = False  # set when the server shuts down: hung requests give up
        self.reset_hooks: list[Callable[[], None]] = []  # run first on reset (the WebRTC sessions close)
        self.active = ActiveProfile(profile, self.clock.now())
        self.events = ScopeEvents(self._env, lambda: self.profile.events_defect)  # outlives resets
        self._build_state()
        self.logs.write("scope.server.app", "INFO", f"Assets directory: {assets_dir}")
        self._open_instance_fault()

    def _build_state(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.orchestrator_url or ''}")
        self.truth_log = TruthLog()
        self.pipelines = PipelineManager(self.clock, self.logs, self.truth_log, self.rng, events=self.events)
        self.cloud = CloudConnection(
            self.clock, self.logs, self.truth_log, self.rng, env=self._env, orchestrator_url=self.orchestrator_url,
            events=self.events,
        )
        self.session: HeadlessSession | None = None
        self.sessions: deque[HeadlessSession] = deque(maxlen=MAX_SESSIONS_KEPT)
        self.leaked_sessions = 0
        self.local_session_ids: set[str] = set()  # headless sessions that bypassed the cloud connection
        self.webrtc_sessions: dict[str, RtcSession] = {}  # live, in creation order
        self.webrtc_history: deque[RtcSession] = deque(maxlen=MAX_SESSIONS_KEPT)

    @property
    def profile(self) -> Profile:
        """The profile in force."""
        return self.active.profile

    def set_profile(self, profile: Profile) -> None:
        """Switch profile now; delayed faults count from this moment (or a later session start)."""
        now = self.clock.now()
        self.advance(now)
        self._close_faults(lambda record: record.kind != FaultKind.CONNECT_TIMEOUT, now)
        self.active = ActiveProfile(profile, now)
        self.pipelines.arm_cold_start()
        self.logs.write("scope.sim", "INFO", f"Profile set to {profile.name}")
        self._open_instance_fault()

    def reset(self) -> None:
        """Forget sessions, loads, the connection and the truth; keep identity and profile."""
        for hook in self.reset_hooks:
            hook()
        self.events.reset()
        self._build_state()
        self.logs.clear()
        self.active = ActiveProfile(self.profile, self.clock.now())
        self._open_instance_fault()

    def _open_instance_fault(self) -> None:
        if self.active.fault in INSTANCE_FAULTS:
            self.truth_log.open_fault(self.active.fault, self.clock.wall(self.active.since))

    def cloud_connected(self, now: float | None = None) -> bool:
        """True while the cloud connection is up: WebRTC sessions relay through the orchestrator."""
        self.cloud.advance(self.clock.now() if now is None else now)
        return self.cloud.connection_id is not None

    def behaviour(self, session: HeadlessSession) -> ActiveProfile:
        """What acts on a headless session: the profile, or the local box's healthy behaviour."""
        if session.session_id in self.local_session_ids:
            return local_behaviour(session.started_mono)
        return self.active

    def advance(self, now: float | None = None) -> float:
        """Bring every component up to `now` (default: the current time) and return it."""
        now = self.clock.now() if now is None else now
        self.cloud.advance(now)
        self.pipelines.advance(now)
        session = self.session
        if session is not None:
            self._advance_session(session, now)
        return now

    def _advance_session(self, session: HeadlessSession, now: float) -> None:
        active = self.behaviour(session)
        kind = active.fault
        start = active.fault_start(session)
        if kind is None or kind in INSTANCE_FAULTS | EVENT_FAULTS | NETWORK_FAULTS or start is None or now < start:
            return
        if kind is FaultKind.CRASH:
            self._crash(session, start)
            return
        if not any(f.kind == kind and f.session_id == session.session_id for f in self.truth_log.open_faults()):
            self.truth_log.open_fault(kind, self.clock.wall(start), session.session_id)

    def _crash(self, session: HeadlessSession, at: float) -> None:
        wall = self.clock.wall(at)
        session.end(at, crashed=True)
        self.session = None
        self.truth_log.instant_fault(FaultKind.CRASH, wall)
        self.logs.write(
            CRASH_LOGGER, "ERROR", "Error in pipeline processing loop", wall_s=wall,
            body=(
                "Traceback (most recent call last):",
                '  File "scope/server/pipeline_processor.py", line 287, in _process_loop',
                "    output = self.pipeline(**call_params)",
                CRASH_ERROR,
            ),
        )
        self.logs.write("scope.server.headless", "ERROR", "Headless session terminated: frame processor died", wall_s=wall)

    def end_session(self, session: HeadlessSession, now: float, *, replaced: bool) -> None:
        """Stop (or leak, when replaced) `session` and close its faults."""
        session.end(now, stopped=not replaced, replaced=replaced)
        self.close_session_faults(session.session_id, now)
        if replaced:
            self.leaked_sessions += 1
        if self.session is session:
            self.session = None

    def close_session_faults(self, session_id: str, now: float) -> None:
        """End the open faults of one session."""
        self._close_faults(lambda record: record.session_id == session_id, now)

    def _close_faults(self, which: Callable[[FaultRecord], bool], now: float) -> None:
        wall = self.clock.wall(now)
        for record in self.truth_log.open_faults():
            if which(record):
                record.close(wall)

    def http_delay_s(self) -> float:
        """Delay to add before answering a Scope route."""
        return self.profile.http_delay_s

    def transport_fault(self, method: str, path: str) -> FaultKind | None:
        """HANG_HTTP or CONN_RESET when this request must not get an HTTP answer."""
        now = self.advance()
        session = self.session
        if session is None:
            return None
        active = self.behaviour(session)
        if active.fault not in (FaultKind.HANG_HTTP, FaultKind.CONN_RESET):
            return None
        if not active.active(active.fault, session, now):
            return None
        if active.fault is FaultKind.HANG_HTTP and path in HANG_PATHS:
            return FaultKind.HANG_HTTP
        if active.fault is FaultKind.CONN_RESET and method == "GET" and path.startswith(SESSION_PREFIX):
            return FaultKind.CONN_RESET
        return None

    def gpu_stats(self, now: float) -> dict:
        """The `gpu` entry of the metrics."""
        if self.session is not None:
            active, session = self.behaviour(self.session), self.session
        else:  # the first live WebRTC session is the one Scope's metrics show; its timeline holds the fault
            active = self.active
            session = next((s.timeline for s in self.webrtc_history if s.live and s.timeline is not None), None)
        return behaviour.gpu_stats(active, self.pipelines.loaded_ids, session, self.leaked_sessions, now)

    def truth(self) -> dict:
        """The body of `GET /_sim/truth`."""
        now = self.advance()
        return {
            "orchestrator_url": self.orchestrator_url,
            "orchestrator_address": self.orchestrator_address,
            "profile": self.profile.name,
            "profile_fields": self.profile.model_dump(mode="json"),
            "seed": self.seed,
            "sessions": [self._session_truth(session, now) for session in self.sessions],
            "leaked_sessions": self.leaked_sessions,
            "active_session": self.session is not None,
            "webrtc_sessions": [session.truth(now) for session in self.webrtc_history],
            "live_webrtc_sessions": sum(1 for s in self.webrtc_history if s.state is RtcState.LIVE),
            **self.truth_log.as_dict(),
            "events": self.events.truth(),
        }

    def _session_truth(self, session: HeadlessSession, now: float) -> dict:
        return {
            "session_id": session.session_id,
            "pipeline_ids": list(session.plan.pipeline_ids),
            "prompt_texts": session.prompt_texts,
            "started_at": session.started_wall,
            "first_frame_s": round(session.first_frame_s, 3),
            "fps_true": session.fps_per_sink * session.sinks,
            "frames_out": behaviour.frames_out(self.behaviour(session), session, now),
            "media_path": "local",
            "cloud_bypassed": session.session_id in self.local_session_ids,
            "stopped": session.stopped,
            "replaced": session.replaced,
            "crashed": session.crashed,
            "graph": session.plan.graph,
            "sink_ids": list(session.plan.sink_ids),
            "input_path": session.plan.input_path,
            "prompt_switches": list(session.prompt_switches),
        }
