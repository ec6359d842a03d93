"""Pipeline loading with Scope's status quirks.

- Right after a request the status still reads `not_loaded` for `load_status_lag_s`.
- A failed load reads `error` once; that read resets it to `not_loaded`; `error` is always
  null and the reason is only in the log.
- A load replaces the loaded set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator import catalog
from simulator.logbook import LogBook
from simulator.profiles import FaultKind, Profile, draw_latency
from simulator.truth import Clock, LoadRecord, TruthLog

LOGGER = "scope.server.pipeline_manager"
UNKNOWN_FAILS_AFTER_S = 0.2  # an unknown id fails as soon as the registry is asked


@dataclass
class LoadJob:
    """A load in progress."""

    pipeline_ids: list[str]
    load_params: dict | None
    visible_at: float  # monotonic: status reads `loading` from here
    done_at: float  # monotonic: loaded or failed
    failure: str | None
    profile_fault: bool  # the failure comes from the profile (a fault to report), not from bad ids
    record: LoadRecord


class PipelineManager:
    """Loads pipelines in the background and answers `/pipeline/status`."""

    def __init__(self, clock: Clock, logs: LogBook, truth: TruthLog, rng: random.Random) -> None:
        self._clock, self._logs, self._truth, self._rng = clock, logs, truth, rng
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
        cold = self._take_cold(profile)
        load_s = draw_latency(self._rng, profile.cold_load_s if cold else profile.load_s)
        failure, from_profile = self._failure_for(pipeline_ids, profile)
        if failure is not None and not from_profile:
            load_s = min(load_s, UNKNOWN_FAILS_AFTER_S)
        record = LoadRecord(list(pipeline_ids), round(load_s, 3), cold, False, self._clock.wall(now))
        self._truth.loads.append(record)
        lag_s = min(profile.load_status_lag_s, load_s)
        self._job = LoadJob(list(pipeline_ids), load_params, now + lag_s, now + load_s, failure, from_profile, record)
        self.loaded_ids, self.load_params, self._error_unread = [], load_params, False
        self._logs.write(LOGGER, "INFO", f"Loading pipelines {pipeline_ids} (load_params={load_params})")
        return self._job

    def _take_cold(self, profile: Profile) -> bool:
        candidate, self._cold_candidate = self._cold_candidate, False
        return candidate and self._rng.random() < profile.cold_start_probability

    @staticmethod
    def _failure_for(pipeline_ids: list[str], profile: Profile) -> tuple[str | None, bool]:
        unknown = catalog.unknown_ids(pipeline_ids)
        if unknown:
            return f"ValueError: Unknown pipeline(s): {unknown}; available: {sorted(catalog.CATALOG)}", False
        if profile.fault is FaultKind.LOAD_ERROR:
            return profile.load_error_reason, True
        return None, False

    def advance(self, now: float) -> None:
        """Finish the running load if its time has come."""
        job = self._job
        if job is None or now < job.done_at:
            return
        self._job = None
        wall = self._clock.wall(job.done_at)
        if job.failure is None:
            self.loaded_ids = job.pipeline_ids
            self._logs.write(LOGGER, "INFO", f"Pipelines {job.pipeline_ids} loaded in {job.record.load_s:.2f}s", wall_s=wall)
            return
        job.record.failed, job.record.reason = True, job.failure
        self._error_unread = True
        self._logs.write(
            LOGGER, "ERROR", f"Failed to load pipelines {job.pipeline_ids}: {job.failure}", wall_s=wall,
            body=("Traceback (most recent call last):", '  File "scope/server/pipeline_manager.py", line 412, in _load', f"{job.failure}"),
        )
        if job.profile_fault:
            self._truth.instant_fault(FaultKind.LOAD_ERROR, wall)

    def status(self, now: float) -> dict:
        """The `/pipeline/status` body; reading an `error` resets it to `not_loaded`."""
        self.advance(now)
        job = self._job
        if job is not None:
            state = "not_loaded" if now < job.visible_at else "loading"
            return self._status_body(state, job.pipeline_ids if state == "loading" else [], "loading_pipelines")
        if self._error_unread:
            self._error_unread = False
            return self._status_body("error", [], None)
        if self.loaded_ids:
            return self._status_body("loaded", self.loaded_ids, None)
        return self._status_body("not_loaded", [], None)

    def _status_body(self, state: str, pipeline_ids: list[str], stage: str | None) -> dict:
        return {
            "status": state,
            "pipeline_id": pipeline_ids[0] if pipeline_ids else None,
            "pipeline_ids": pipeline_ids,
            "load_params": self.load_params if pipeline_ids else None,
            "loaded_lora_adapters": [],
            "error": None,
            "loading_stage": stage if state == "loading" else None,
            "produces_video": bool(pipeline_ids) and state == "loaded",
            "produces_audio": False,
        }

    def has_loaded(self, pipeline_ids: list[str]) -> bool:
        """True when every one of `pipeline_ids` is loaded and no load is running."""
        return self._job is None and all(pid in self.loaded_ids for pid in pipeline_ids)

    def unload_all(self) -> None:
        """Forget the loaded set and any load in progress."""
        self.loaded_ids, self.load_params, self._job, self._error_unread = [], None, None, False
