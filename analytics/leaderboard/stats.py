"""The leaderboard's Stats object (one test job): the POST body contract, and a relay run as one.

The contract is livepeer/leaderboard-serverless's `models.Stats`. Parsing is strict where the
reference's Go decoder is (a string where a number belongs, a fraction in `timestamp`) and
bounded where it is not (string lengths, list sizes, finite numbers). Fields the contract does
not know are ignored, as the reference ignores them, so newer testers keep posting.

`stats_of_run` maps a finished relay run (a `runs` row) onto a Stats object (leaderboard.md):
passed 1 / failed 0, the round trip is the first-frame time, `model` the Scope pipeline or chain,
`pipeline` the Livepeer capability. Its JSON (`stats_body`) is canonical (sorted keys, no
spaces), so the same run always gives the same bytes, the same signature and the same SHA-256:
a retried post is recognised by the receiver as the body it already has.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from analytics.records import JobType, as_utc

LIVE_VIDEO_PIPELINE = "live-video-to-video"  # the Livepeer capability of Scope streams
GLOBAL_REGION = "GLOBAL"  # the reference's region for a tester without one
MAX_TEXT = 16 * 1024
RESULT_OUTCOMES = ("passed", "failed")  # runs that are jobs; unavailable and aborted are not


def _finite(value: float) -> float:
    """Refuse NaN and infinities (JSON has none; Python's parser accepts them)."""
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
RegionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Address = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
# Names a stat is filtered by (model, pipeline, error codes): printable, as the API's parameters must be.
ShortText = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]


class StatsError(BaseModel):
    """One error kind of a job: its code, a message and how often it happened."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    error_code: ShortText
    message: Text | None = None
    count: int = Field(1, ge=0, le=1_000_000_000)


class Stats(BaseModel):
    """One test job as the leaderboard takes it (the body of POST /api/post_stats)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    region: RegionId
    orchestrator: Address
    success_rate: Finite = Field(ge=0, le=1)
    round_trip_time: Finite = Field(ge=0, le=86_400)
    errors: list[StatsError] | None = Field(default=None, max_length=100)
    timestamp: int = Field(gt=0, lt=2**40, description="unix seconds")
    seg_duration: Finite | None = Field(default=None, ge=0, le=3600)
    segments_sent: int | None = Field(default=None, ge=0, le=1_000_000_000)
    segments_received: int | None = Field(default=None, ge=0, le=1_000_000_000)
    upload_time: Finite | None = Field(default=None, ge=0, le=86_400)
    download_time: Finite | None = Field(default=None, ge=0, le=86_400)
    transcode_time: Finite | None = Field(default=None, ge=0, le=86_400)
    model: ShortText | None = None
    model_is_warm: bool | None = None
    pipeline: ShortText | None = None
    input_parameters: Text | None = None
    response_payload: Text | None = None

    @property
    def job_type(self) -> JobType:
        """ai when the stat names a model and a pipeline (the reference's rule), else transcoding."""
        return "ai" if self.model and self.pipeline else "transcoding"

    @property
    def stat_at(self) -> dt.datetime:
        """`timestamp` as a UTC datetime."""
        return dt.datetime.fromtimestamp(self.timestamp, tz=dt.timezone.utc)

    def run_id(self) -> str | None:
        """The harness run named in `input_parameters` (our own posts carry it), else None."""
        try:
            params = json.loads(self.input_parameters or "")
        except ValueError:
            return None
        run_id = params.get("run_id") if isinstance(params, dict) else None
        return run_id if isinstance(run_id, str) and run_id else None

    def wire(self) -> dict[str, Any]:
        """The JSON object of this stat, leaving out what is unset (as the reference's omitempty does)."""
        return self.model_dump(mode="json", exclude_none=True)


def canonical_json(value: Any) -> bytes:
    """Deterministic compact JSON bytes (sorted keys): the same value always gives the same body."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_sha256(body: bytes) -> str:
    """Lower-case hex SHA-256 of body bytes."""
    return hashlib.sha256(body).hexdigest()


def _epoch_s(value: Any) -> int | None:
    """Unix seconds of a datetime (None stays None)."""
    return None if value is None else int(as_utc(value).timestamp())


def _errors_of_run(run: Mapping[str, Any]) -> list[StatsError]:
    """One error per failed check; the first failure's category, phase and reason on each."""
    if run.get("outcome") != "failed":
        return []
    first = (f"{run.get('failure_category') or 'unknown'} in {run.get('failure_phase') or 'unknown'}: "
             f"{run.get('failure_reason') or 'no reason recorded'}")[:MAX_TEXT]
    checks = list(run.get("checks_failed") or ()) or [run.get("failure_category") or "failed"]
    return [StatsError(error_code=str(check)[:256], message=first, count=1) for check in checks]


def run_region(run: Mapping[str, Any]) -> str:
    """The region a run posts under: its orchestrator's region upper-cased, else GLOBAL."""
    region = (run.get("region") or "").strip().upper()
    return region if region else GLOBAL_REGION


def stats_of_run(run: Mapping[str, Any], *, live_video_score: float | None = None,
                 capability: str = LIVE_VIDEO_PIPELINE) -> Stats:
    """A finished passed/failed run (a `runs` row) as one Stats job."""
    if run.get("outcome") not in RESULT_OUTCOMES:
        raise ValueError(f"run {run.get('run_id')} ended {run.get('outcome')!r}: only passed and failed runs are jobs")
    parameters = {key: run.get(key) for key in ("run_id", "scenario", "mode", "duration_class",
                                                 "planned_duration_s", "media_path", "scope_version",
                                                 "harness_version")}
    response = {"outcome": run.get("outcome"), "first_frame_s": run.get("first_frame_s"),
                "fps": run.get("fps_received") if run.get("fps_received") is not None else run.get("fps_steady"),
                "expected_fps": run.get("expected_fps"), "freeze_count": run.get("freeze_count"),
                "live_video_score": live_video_score}
    ended = run.get("ended_at") or run.get("started_at")
    return Stats(
        region=run_region(run), orchestrator=str(run.get("orchestrator") or "unknown").lower(),
        success_rate=1.0 if run["outcome"] == "passed" else 0.0,
        round_trip_time=float(run.get("first_frame_s") or 0.0), errors=_errors_of_run(run),
        timestamp=_epoch_s(ended) or 1, model=str(run.get("pipeline")), pipeline=capability,
        model_is_warm=run.get("cold_start") is False,
        input_parameters=canonical_json(parameters).decode(), response_payload=canonical_json(response).decode(),
    )


def stats_body(stats: Stats) -> bytes:
    """The exact bytes posted for a stat."""
    return canonical_json(stats.wire())
