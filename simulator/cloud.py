"""The cloud (Livepeer) connection: connects in the background, fails the way a profile says."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from simulator.events import ScopeEvents
from simulator.logbook import LogBook
from simulator.profiles import ConnectFailProfile, FaultKind, NoCapacityProfile, Profile, draw_latency
from simulator.truth import Clock, ConnectRecord, FaultRecord, TruthLog

LOGGER = "scope.server.cloud_connection"
APP_ID_ENV = "SCOPE_CLOUD_APP_ID"
API_KEY_ENV = "SCOPE_CLOUD_API_KEY"
INVALID_APP_ID_AFTER_S = 0.05
NO_CREDENTIALS_DETAIL = (
    "400: cloud credentials not configured. Use --cloud-app-id or --cloud-api-key CLI args, "
    "or SCOPE_CLOUD_APP_ID or SCOPE_CLOUD_API_KEY environment variables."
)


class CredentialsMissing(Exception):
    """No app id in the request nor in the server's environment."""


@dataclass
class Attempt:
    """A connect in progress or finished."""

    app_id: str
    user_id: str | None
    done_at: float | None  # monotonic; None: never finishes (connect_timeout)
    outcome: str  # connected / failed / busy / invalid_app_id / timeout
    error: str | None
    record: ConnectRecord
    fault: FaultRecord | None = None


class CloudConnection:
    """State of the cloud connection, advanced lazily from timestamps."""

    def __init__(
        self, clock: Clock, logs: LogBook, truth: TruthLog, rng: random.Random, *,
        env: Mapping[str, str], orchestrator_url: str | None, events: ScopeEvents | None = None,
    ) -> None:
        self._clock, self._logs, self._truth, self._rng = clock, logs, truth, rng
        self._events = events
        self._env, self.orchestrator_url = env, orchestrator_url
        self._attempt: Attempt | None = None
        self._finished = False
        self.connection_id: str | None = None

    def connect(self, app_id: str | None, api_key: str | None, user_id: str | None, profile: Profile) -> dict:
        """Begin a background connect; raise CredentialsMissing when there is no app id at all.

        The api key is accepted as Scope accepts it and deliberately neither stored nor logged.
        """
        now = self._clock.now()
        resolved_app_id = app_id or self._env.get(APP_ID_ENV)
        if not resolved_app_id:
            self._truth.connects.append(ConnectRecord(None, "no_credentials", self._clock.wall(now)))
            self._logs.write(LOGGER, "ERROR", f"Error connecting to cloud: {NO_CREDENTIALS_DETAIL}")
            raise CredentialsMissing(NO_CREDENTIALS_DETAIL)
        self.disconnect()
        self._attempt = self._plan(resolved_app_id, user_id, profile, now)
        self._logs.write(LOGGER, "INFO", f"Connecting to cloud (background): {resolved_app_id} (user_id: {user_id})")
        return self.status(now)

    def _plan(self, app_id: str, user_id: str | None, profile: Profile, now: float) -> Attempt:
        wall = self._clock.wall(now)
        if not app_id.endswith("/ws"):
            error = f"Invalid cloud app id '{app_id}': it must end in '/ws'"
            record = ConnectRecord(INVALID_APP_ID_AFTER_S, "invalid_app_id", wall, error)
            attempt = Attempt(app_id, user_id, now + INVALID_APP_ID_AFTER_S, "invalid_app_id", error, record)
        elif profile.fault is FaultKind.CONNECT_TIMEOUT:
            record = ConnectRecord(None, "timeout", wall)
            attempt = Attempt(app_id, user_id, None, "timeout", None, record)
            attempt.fault = self._truth.open_fault(FaultKind.CONNECT_TIMEOUT, wall)
        else:
            connect_s = draw_latency(self._rng, profile.connect_s)
            outcome, error = _outcome(profile)
            record = ConnectRecord(round(connect_s, 3), outcome, wall, error)
            attempt = Attempt(app_id, user_id, now + connect_s, outcome, error, record)
        self._truth.connects.append(attempt.record)
        return attempt

    def advance(self, now: float) -> None:
        """Finish the attempt when its time has come (log it, open a connection id)."""
        attempt = self._attempt
        if attempt is None or self._finished or attempt.done_at is None or now < attempt.done_at:
            return
        self._finished = True
        wall = self._clock.wall(attempt.done_at)
        if attempt.outcome == "connected":
            self.connection_id = f"{self._rng.getrandbits(64):016x}"
            via = f" via {self.orchestrator_url}" if self.orchestrator_url else ""
            self._logs.write(LOGGER, "INFO", f"Connected to cloud: manifest {self.connection_id}{via}", wall_s=wall)
            if self._events is not None:
                self._events.cloud_connected(self.connection_id, attempt.user_id, wall)
            return
        self._logs.write(LOGGER, "ERROR", f"Cloud connection failed: {attempt.error}", wall_s=wall)
        if attempt.outcome in ("failed", "busy"):
            kind = FaultKind.NO_CAPACITY if attempt.outcome == "busy" else FaultKind.CONNECT_FAIL
            self._truth.instant_fault(kind, wall)

    def status(self, now: float) -> dict:
        """The `/cloud/status` body."""
        self.advance(now)
        attempt = self._attempt
        connected = attempt is not None and self._finished and attempt.outcome == "connected"
        connecting = attempt is not None and not self._finished
        return {
            "connected": connected,
            "connecting": connecting,
            "error": attempt.error if attempt is not None and self._finished else None,
            "connect_stage": _stage(attempt, connected, connecting),
            "webrtc_connected": False,
            "app_id": attempt.app_id if attempt is not None else None,
            "connection_id": self.connection_id if connected else None,
            "credentials_configured": bool(self._env.get(APP_ID_ENV)),
            "stats": None,  # 0.2.4 answers null; which orchestrator serves is only in the log
            "last_close_code": None,
            "last_close_reason": None,
        }

    def disconnect(self) -> dict:
        """Drop the connection (or the attempt) and answer with the resulting status."""
        if self._attempt is not None:
            if self._attempt.fault is not None:
                self._attempt.fault.close(self._clock.wall(self._clock.now()))
            if self.connection_id is not None:
                self._logs.write(LOGGER, "INFO", f"Disconnected from cloud (manifest {self.connection_id})")
                if self._events is not None:
                    self._events.cloud_disconnected(self._clock.wall(self._clock.now()))
        self._attempt, self._finished, self.connection_id = None, False, None
        return self.status(self._clock.now())


def _outcome(profile: Profile) -> tuple[str, str | None]:
    if isinstance(profile, NoCapacityProfile):
        return "busy", profile.connect_error
    if isinstance(profile, ConnectFailProfile):
        return "failed", profile.connect_error
    return "connected", None


def _stage(attempt: Attempt | None, connected: bool, connecting: bool) -> str | None:
    if connected:
        return "connected"
    if connecting:
        return "selecting_orchestrator" if attempt is not None and attempt.done_at is None else "connecting"
    return "failed" if attempt is not None else None
