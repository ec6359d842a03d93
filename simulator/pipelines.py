"""Pipeline loading with Scope's status quirks.

- Scope 0.2.4 reads `loading` right after a request; with `load_status_lag_s` the status
  still reads what it read before the request (a left-over `loaded` too) for that long.
- A failed load reads `error` once; that read resets it to `not_loaded`; `error` is always
  null and the reason is only in the log: `Failed to load pipeline <id>: <cause>` per
  pipeline (the cause is `Invalid pipeline ID: <id>` for an unknown one), then the generic
  `Some pipelines failed to load`.
- A load replaces the loaded set. The status names the first loaded pipeline in
  `pipeline_id` (there is no `pipeline_ids`); `load_params` is `{}` once loaded without any.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator import catalog
from simulator.events import ScopeEvents
from simulator.logbook import LogBook
from simulator.profiles import FaultKind, Profile, draw_latency
from simulator.truth import Clock, LoadRecord, TruthLog

LOGGER = "scope.server.pipeline_manager"
UNKNOWN_FAILS_AFTER_S = 0.2  # an unknown id fails as soon as the registry is asked
LOADING_STAGE = "Initializing pipeline..."
MODELS_DIR = "/root/.daydream-scope/models"
ALL_FAILED = "Some pipelines failed to load"


@dataclass
class LoadJob:
    """A load in progress."""

    pipeline_ids: list[str]
    load_params: dict | None
    visible_at: float  # monotonic: status reads `loading` from here
    done_at: float  # monotonic: loaded or failed
    causes: dict[str, str]  # pipeline id -> why it failed to load
    profile_fault: bool  # the failure comes from the profile (a fault to report), not from bad ids
    record: LoadRecord
    before: dict  # the status body as it read before the request

    @property
    def failure(self) -> str | None:
        """Why the load failed (every failing pipeline's cause), None when it succeeds."""
        return "; ".join(self.causes.values()) or None


class PipelineManager:
    """Loads pipelines in the background and answers `/pipeline/status`."""

    def __init__(
        self, clock: Clock, logs: LogBook, truth: TruthLog, rng: random.Random, *, events: ScopeEvents | None = None
    ) -> None:
        self._clock, self._logs, self._truth, self._rng = clock, logs, truth, rng
        self._events = events
        self.loaded_ids: list[str] = []
        self.load_params: dict | None = None
        self._job: LoadJob | None = None
        self._error_unread = False
        self._cold_candidate = True  # the first load after start (or a profile change) may be cold

    def arm_cold_start(self) -> None:
        """Make the next load a cold-start candidate again (instance start, profile change)."""
        self._cold_candidate = True

    def request_load(self, pipeline_ids: list[str], load_params: dict | None, profile: Profile) -> LoadJob:
        """Start loading `pipeline_ids` in the background, replacing whatever was loaded."""
        now = self._clock.now()
        if self._job is not None:
            self._job.record.superseded = True
        before = self.status(now, consume_error=False)
        wall = self._clock.wall(now)
        if self.loaded_ids:
            self._event("pipeline_unloaded", self.loaded_ids, wall)
        self._event("pipeline_load_start", pipeline_ids, wall)
        cold = self._take_cold(profile)
        load_s = draw_latency(self._rng, profile.cold_load_s if cold else profile.load_s)
        causes, from_profile = self._causes_for(pipeline_ids, profile)
        if causes and not from_profile:
            load_s = UNKNOWN_FAILS_AFTER_S
        record = LoadRecord(list(pipeline_ids), round(load_s, 3), cold, False, self._clock.wall(now))
        self._truth.loads.append(record)
        lag_s = min(profile.load_status_lag_s, load_s)
        self._job = LoadJob(
            list(pipeline_ids), load_params, now + lag_s, now + load_s, causes, from_profile, record, before
        )
        self.loaded_ids, self.load_params, self._error_unread = [], load_params, False
        pairs = [(pid, pid) for pid in pipeline_ids]
        self._logs.write(LOGGER, "INFO", f"Loading {len(pipeline_ids)} pipeline(s): {pairs}")
        return self._job

    def _take_cold(self, profile: Profile) -> bool:
        candidate, self._cold_candidate = self._cold_candidate, False
        return candidate and self._rng.random() < profile.cold_start_probability

    @staticmethod
    def _causes_for(pipeline_ids: list[str], profile: Profile) -> tuple[dict[str, str], bool]:
        unknown = catalog.unknown_ids(pipeline_ids, has_gpu=profile.has_gpu)
        if unknown:
            return {pid: f"Invalid pipeline ID: {pid}" for pid in unknown}, False
        if profile.fault is FaultKind.LOAD_ERROR and pipeline_ids:
            return {pipeline_ids[0]: profile.load_error_reason}, True
        return {}, False

    def advance(self, now: float) -> None:
        """Finish the running load if its time has come."""
        job = self._job
        if job is None or now < job.done_at:
            return
        self._job = None
        wall = self._clock.wall(job.done_at)
        if job.failure is None:
            self.loaded_ids = job.pipeline_ids
            for pid in job.pipeline_ids:
                self._logs.write(LOGGER, "INFO", f"Pipeline {pid} loaded successfully", wall_s=wall)
            self._logs.write(LOGGER, "INFO", f"All {len(job.pipeline_ids)} pipeline(s) loaded successfully", wall_s=wall)
            self._event("pipeline_loaded", job.pipeline_ids, wall, load_duration_ms=int(job.record.load_s * 1000))
            return
        job.record.failed, job.record.reason = True, job.failure
        self._error_unread = True
        self._log_failure(job, wall)
        error = {"error_type": "pipeline_load_failed", "message": job.failure, "exception_type": "RuntimeError",
                 "recoverable": False}
        self._event("error", job.pipeline_ids, wall, error=error)
        if job.profile_fault:
            self._truth.instant_fault(FaultKind.LOAD_ERROR, wall)

    def _event(self, event_type: str, pipeline_ids: list[str], wall: float, **data: object) -> None:
        if self._events is not None:
            self._events.pipeline(event_type, pipeline_ids, wall, **data)

    def _log_failure(self, job: LoadJob, wall: float) -> None:
        # Scope logs each pipeline's cause, then a line per failed pipeline, then a generic summary.
        for pid, cause in job.causes.items():
            advice = f"consider removing the models directory '{MODELS_DIR}' and re-downloading models."
            self._logs.write(
                LOGGER, "ERROR", f"Failed to load pipeline {pid}: {cause}. If this error persists, {advice}", wall_s=wall
            )
            self._logs.write(LOGGER, "ERROR", f"Failed to load pipeline: {pid}", wall_s=wall)
        self._logs.write(LOGGER, "ERROR", ALL_FAILED, wall_s=wall)

    def status(self, now: float, *, consume_error: bool = True) -> dict:
        """The `/pipeline/status` body; reading an `error` resets it to `not_loaded`."""
        self.advance(now)
        job = self._job
        if job is not None:
            return dict(job.before) if now < job.visible_at else self._status_body("loading")
        if self._error_unread:
            self._error_unread = not consume_error
            return self._status_body("error")
        return self._status_body("loaded" if self.loaded_ids else "not_loaded")

    def _status_body(self, state: str) -> dict:
        loaded = state == "loaded"
        return {
            "status": state,
            "pipeline_id": self.loaded_ids[0] if loaded else None,
            # Scope reports the request's load_params, else the loaded pipeline's own ({} without any).
            "load_params": self.load_params or ({} if loaded else self.load_params),
            "loaded_lora_adapters": None,
            "error": None,
            "loading_stage": LOADING_STAGE if state == "loading" else None,
            "produces_video": True,
            "produces_audio": False,
        }

    def has_loaded(self, pipeline_ids: list[str]) -> bool:
        """True when every one of `pipeline_ids` is loaded and no load is running."""
        return self._job is None and all(pid in self.loaded_ids for pid in pipeline_ids)

    def unload_all(self) -> None:
        """Forget the loaded set and any load in progress."""
        if self.loaded_ids:
            self._event("pipeline_unloaded", self.loaded_ids, self._clock.wall(self._clock.now()))
        self.loaded_ids, self.load_params, self._job, self._error_unread = [], None, None, False
