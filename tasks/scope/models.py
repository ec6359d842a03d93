"""What Scope's answers look like and mean (scope-api.md); pure, no I/O.

- the client's configuration: ``ScopeTimeouts`` and ``ResponseLimits`` with named defaults;
- typed answers: every model keeps unknown keys (``extra="allow"``) so a newer Scope that
  adds fields still parses, and only the fields the harness cannot do without are
  required (a missing one is a contract break, reported as ``BadResponse``);
- error answers: ``detail_of`` reads a FastAPI error body, ``error_for_status`` maps a
  status and detail to the exception tree, ``route_missing`` tells a missing route from
  "nothing there yet", ``load_failure_reason`` finds why a load failed in the log,
  ``redact`` keeps secrets out of every text the client hands on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from errors import (
    Category,
    CloudCredentialsMissing,
    NoCapacity,
    ScopeError,
    ScopeHTTPError,
    mentions_no_capacity,
)

CREDENTIALS_MISSING = "400: cloud credentials not configured"
DETAIL_MAX_CHARS = 1000
REDACTED = "**********"
_FAILURE_WORDS = re.compile(r"error|exception|fail", re.IGNORECASE)
# Scope logs each pipeline's cause, then "Failed to load pipeline: <id>", then "Some pipelines failed to load".
_LOAD_CAUSE = re.compile(
    r"(?:Failed to load|Error loading) pipeline (?P<pipeline>\S+): (?P<cause>.+?)(?:\. If this error persists.*)?$"
)
_LOAD_START = re.compile(r"Loading \d+ pipeline\(s\): ")
GENERIC_LOAD_FAILURES = ("Some pipelines failed to load", "Failed to load pipeline: ")
# 404 details that mean "no such route": Scope 0.2.4's frontend catch-all, and FastAPI's own (proxies, old builds).
ROUTE_MISSING_DETAILS = frozenset({"Frontend not built", "Not Found"})


@dataclass(frozen=True)
class ScopeTimeouts:
    """Seconds each kind of call may take; connect_s bounds the TCP connect of every call."""

    connect_s: float = 5.0
    read_s: float = 10.0  # a JSON call, request sent to last byte read
    frame_s: float = 5.0  # one `/session/frame`
    upload_s: float = 120.0  # one asset upload
    stream_s: float = 30.0  # one `read_output_ts`


@dataclass(frozen=True)
class ResponseLimits:
    """Largest answer body accepted, in bytes; larger answers raise ResponseTooLarge."""

    json_bytes: int = 1_048_576
    frame_bytes: int = 8_388_608


DEFAULT_TIMEOUTS = ScopeTimeouts(connect_s=5.0, read_s=10.0, frame_s=5.0, upload_s=120.0)
DEFAULT_LIMITS = ResponseLimits(json_bytes=1_048_576, frame_bytes=8_388_608)


class ScopeModel(BaseModel):
    """Base of every Scope answer: frozen, tolerant of extra and missing optional keys."""

    model_config = ConfigDict(extra="allow", frozen=True)


class PipelineState(StrEnum):
    """The values `/api/v1/pipeline/status` reports in `status`."""

    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    LOADED = "loaded"
    ERROR = "error"


class Prompt(ScopeModel):
    """One weighted text prompt, as `/session/start` and `/session/parameters` take it."""

    text: str
    weight: float = 1.0


class Health(ScopeModel):
    """`GET /health`."""

    status: str
    timestamp: str | None = None
    server_start_time: float | None = Field(None, description="unix seconds")
    version: str | None = None
    git_commit: str | None = None


class HardwareInfo(ScopeModel):
    """`GET /api/v1/hardware/info`."""

    vram_gb: float | None = None
    spout: dict[str, Any] | None = None
    ndi: dict[str, Any] | None = None
    syphon: dict[str, Any] | None = None


class PipelineSchema(ScopeModel):
    """One entry of `GET /api/v1/pipelines/schemas`; `supported_modes` holds Scope's input modes."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    version: str | None = None
    supported_modes: list[str] = Field(default_factory=list, description='"text" and/or "video"')
    default_mode: str | None = None
    supports_prompts: bool = Field(True, description="False: the pipeline ignores prompts")
    estimated_vram_gb: float | None = Field(None, description="None: no estimate (weight-free pipelines)")
    requires_models: bool | None = None
    min_dimension: int | None = None
    usage: list[str] = Field(default_factory=list, description='"preprocessor" / "postprocessor"; [] for main')
    inputs: list[str] = Field(default_factory=list, description="input ports, e.g. video, vace_input_frames")
    outputs: list[str] = Field(default_factory=list)
    produces_video: bool | None = None
    produces_audio: bool | None = None
    plugin_name: str | None = None
    docs_url: str | None = None
    mode_defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    config_schema: dict[str, Any] = Field(default_factory=dict)


class CloudStatus(ScopeModel):
    """`GET /api/v1/cloud/status` (also the answer of connect and disconnect)."""

    connected: bool
    connecting: bool = False
    error: str | None = None
    connect_stage: str | None = None
    webrtc_connected: bool | None = None
    app_id: str | None = None
    connection_id: str | None = Field(None, description="the Livepeer manifest id")
    credentials_configured: bool | None = None
    stats: dict[str, Any] | None = None
    last_close_code: int | None = None
    last_close_reason: str | None = None

    @property
    def failed(self) -> bool:
        """True when the connection attempt ended without a connection."""
        return not self.connected and not self.connecting and bool(self.error)


class PipelineStatus(ScopeModel):
    """`GET /api/v1/pipeline/status`; `status` is one of `PipelineState`.

    0.2.4 names only the first loaded pipeline (`pipeline_id`); `pipeline_ids` is read when
    a server lists the whole loaded set.
    """

    status: str
    pipeline_id: str | None = None
    pipeline_ids: list[str] | None = None
    load_params: dict[str, Any] | None = None
    loaded_lora_adapters: list[Any] | None = None
    error: str | None = None
    loading_stage: str | None = None
    produces_video: bool | None = None
    produces_audio: bool | None = None


class SessionStarted(ScopeModel):
    """`POST /api/v1/session/start`."""

    status: str
    input_mode: str | None = None
    cloud_mode: bool | None = None
    pipeline_id: str | None = None
    graph: bool | None = None


class HeadlessStats(ScopeModel):
    """`sessions.headless` of `/api/v1/session/metrics`; frame counters since start."""

    frames_in: int | None = None
    frames_out: int | None = None
    elapsed_seconds: float | None = None
    fps_in: float | None = None
    fps_out: float | None = None
    pipeline_fps: float | None = None


class GpuStats(ScopeModel):
    """`gpu` of `/api/v1/session/metrics`, in MB."""

    vram_allocated_mb: float | None = None
    vram_reserved_mb: float | None = None
    vram_total_mb: float | None = None


class SessionMetrics(ScopeModel):
    """`GET /api/v1/session/metrics`; `headless` is None when no session runs."""

    sessions: dict[str, HeadlessStats] = Field(default_factory=dict)
    gpu: GpuStats | None = None

    @field_validator("gpu", mode="before")
    @classmethod
    def _empty_gpu_is_none(cls, value: Any) -> Any:
        # Scope answers `"gpu": {}` on a machine without a GPU.
        return None if value == {} else value

    @property
    def headless(self) -> HeadlessStats | None:
        """The headless session's counters, or None when there is no session."""
        return self.sessions.get("headless")


class Asset(ScopeModel):
    """One file in Scope's assets folder; `path` is absolute on the Scope host."""

    path: str
    name: str | None = None
    size_mb: float | None = None
    folder: str | None = None
    type: str | None = Field(None, description='"video" or "image"')
    created_at: str | float | None = None


class LogTail(ScopeModel):
    """`GET /api/v1/logs/tail`; pass `offset` back as `since_offset` to read only new lines."""

    lines: list[str]
    offset: int


class PipelineSchemas(ScopeModel):
    """`GET /api/v1/pipelines/schemas`."""

    pipelines: dict[str, PipelineSchema]


class SessionParameters(ScopeModel):
    """`GET /api/v1/session/parameters` (`{}` when no session runs)."""

    parameters: dict[str, Any]


class AppliedParameters(ScopeModel):
    """`POST /api/v1/session/parameters`: what Scope applied, its defaults included."""

    status: str | None = None
    applied_parameters: dict[str, Any] = Field(default_factory=dict)


class AssetList(ScopeModel):
    """`GET /api/v1/assets`."""

    assets: list[Asset]


def redact(text: str | None, secrets: list[SecretStr]) -> str | None:
    """Text with every secret's value replaced by asterisks."""
    if text is None:
        return None
    for secret in secrets:
        value = secret.get_secret_value()
        if value:
            text = text.replace(value, REDACTED)
    return text


def detail_of(body: bytes) -> str | None:
    """The `detail` of a FastAPI error body (422 lists summarised), else the body's text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:DETAIL_MAX_CHARS] or None
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, str):
        return detail[:DETAIL_MAX_CHARS]
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        # Validation errors echo the request body under "input": keep only where and why.
        detail = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
            for item in detail
        )
        return detail[:DETAIL_MAX_CHARS]
    return json.dumps(detail)[:DETAIL_MAX_CHARS]


def error_for_status(route: str, status: int, detail: str | None) -> ScopeError:
    """The exception an unexpected HTTP status maps to (interfaces.md's error mapping)."""
    message = f"Scope answered {status}" + (f": {detail}" if detail else "")
    where: dict[str, Any] = {"route": route, "status": status, "detail": detail}
    if CREDENTIALS_MISSING in (detail or "").lower():
        return CloudCredentialsMissing(message, **where)
    if status == 503 or mentions_no_capacity(detail):
        return NoCapacity(message, **where)
    if status in (502, 504):
        category = Category.ORCHESTRATOR  # Scope relays the orchestrator's runner failing
    elif status >= 500:
        category = Category.RUNNER
    else:
        category = Category.PROTOCOL
    return ScopeHTTPError(message, category=category, **where)


def failure_line(lines: list[str]) -> str | None:
    """The last log line that names an error or failure, stripped."""
    for line in reversed(lines):
        if _FAILURE_WORDS.search(line):
            return line.strip()[:DETAIL_MAX_CHARS]
    return None


def route_missing(status: int, content_type: str, detail: str | None) -> bool:
    """True when an answer says the route itself does not exist, not that there is nothing there yet."""
    if status == 405:  # Scope's frontend catch-all takes every GET, so another method on no route is a 405
        return True
    return status == 404 and (detail in ROUTE_MISSING_DETAILS or content_type.startswith("text/html"))


def load_failure_reason(lines: list[str]) -> str | None:
    """Why the latest load failed, quoted from the log: each pipeline's own cause, not the generic summary."""
    causes: list[str] = []
    for line in reversed(lines):
        if _LOAD_START.search(line):
            break  # the latest load begins here: older failures are not this one's
        match = _LOAD_CAUSE.search(line.strip())
        if match:
            pipeline, cause = match["pipeline"], match["cause"]
            causes.insert(0, cause if pipeline in cause else f"{cause} (pipeline {pipeline})")
    if causes:
        return "; ".join(dict.fromkeys(causes))[:DETAIL_MAX_CHARS]
    return failure_line([line for line in lines if not any(g in line for g in GENERIC_LOAD_FAILURES)])


def unexpected_load(status: PipelineStatus, expected_ids: Sequence[str] | None) -> str | None:
    """How a `loaded` reading differs from the load asked for (a left-over from an earlier load), or None."""
    if expected_ids is None or status.status != PipelineState.LOADED:
        return None
    expected = list(expected_ids)
    if status.pipeline_ids is not None:
        same = sorted(status.pipeline_ids) == sorted(expected)
        return None if same else f"{status.pipeline_ids} loaded, {expected} asked for"
    return None if status.pipeline_id in expected else f"{status.pipeline_id!r} loaded, {expected} asked for"


def load_failure(state: str, seen_loading: bool, waited_s: float, grace_s: float) -> str | None:
    """How a load failed, judged from one status reading; None while it may still succeed."""
    if state == PipelineState.ERROR:
        return "status error"
    if state == PipelineState.NOT_LOADED and seen_loading:
        # `error` reads only once, then resets to not_loaded: someone else may have read it.
        return "status went back from loading to not_loaded"
    if state == PipelineState.NOT_LOADED and waited_s > grace_s:
        return f"status still not_loaded after {waited_s:.1f} s, never loading"
    return None


def stale_load_failure(unexpected: str | None, seen_loading: bool, waited_s: float, grace_s: float) -> str | None:
    """How a load failed when the status shows other pipelines loaded; None while it may still start."""
    if unexpected is None:
        return None
    if seen_loading:
        return f"status went from loading to loaded with other pipelines ({unexpected}): another load replaced it"
    if waited_s > grace_s:
        return f"status still shows the previous load after {waited_s:.1f} s ({unexpected}), never loading"
    return None


class WebRTCAnswer(ScopeModel):
    """`POST /api/v1/webrtc/offer`: the SDP answer and the id that names the session."""

    sdp: str
    type: str
    session_id: str = Field(alias="sessionId", min_length=1)


PIPELINE_NOT_LOADED = "pipeline not loaded"


def offer_error(route: str, status: int, detail: str | None) -> ScopeError:
    """The exception for a refused offer: 400 "Pipeline not loaded" is the runner's, not ours."""
    error = error_for_status(route, status, detail)
    if status == 400 and PIPELINE_NOT_LOADED in (detail or "").lower():
        error.category = Category.RUNNER
    return error
