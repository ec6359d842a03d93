"""The client's models and log reading on what real Scope 0.2.4 answered (tests/fixtures/scope-0.2.4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.scope.models import (
    AppliedParameters,
    Asset,
    AssetList,
    CloudStatus,
    HardwareInfo,
    Health,
    LogTail,
    PipelineSchemas,
    PipelineStatus,
    SessionMetrics,
    SessionParameters,
    SessionStarted,
    detail_of,
    load_failure_reason,
    route_missing,
    unexpected_load,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scope-0.2.4"
ENTRIES: list[dict[str, Any]] = json.loads((FIXTURES / "http-contract.json").read_text())
MODEL_OF: dict[str, type[BaseModel]] = {
    "health": Health,
    "status idle": PipelineStatus,
    "metrics no session": SessionMetrics,
    "params no session GET": SessionParameters,
    "params no session POST": AppliedParameters,
    "status loaded": PipelineStatus,
    "upload asset": Asset,
    "list assets": AssetList,
    "start passthrough video": SessionStarted,
    "metrics in session": SessionMetrics,
    "params POST prompts": AppliedParameters,
    "params POST {}": AppliedParameters,
    "params GET": SessionParameters,
    "logs tail 3": LogTail,
    "hardware": HardwareInfo,
    "cloud status": CloudStatus,
    "cloud status after": CloudStatus,
    "cloud disconnect": CloudStatus,
    "metrics after stop": SessionMetrics,
}
# 200 answers the client reads without a model: an acknowledgement, a JPEG, or `stop_session`'s True.
NO_MODEL = {"load unknown", "load passthrough", "frame", "frame wrong sink", "stop", "schemas"}
CALLS = [entry for entry in ENTRIES if "status" in entry]


def test_every_recorded_success_has_a_model() -> None:
    successes = {entry["label"] for entry in CALLS if entry["status"] == 200}
    assert successes == MODEL_OF.keys() | NO_MODEL


@pytest.mark.parametrize("label", sorted(MODEL_OF))
def test_the_model_accepts_the_recorded_answer(label: str) -> None:
    [entry] = [entry for entry in CALLS if entry["label"] == label]
    MODEL_OF[label].model_validate(entry["body"])


@pytest.mark.parametrize("entry", [e for e in CALLS if e["status"] >= 400], ids=lambda e: e["label"])
def test_every_recorded_error_has_a_readable_detail(entry: dict[str, Any]) -> None:
    assert detail_of(json.dumps(entry["body"]).encode())


def test_recorded_answers_read_as_the_contract_says() -> None:
    by_label = {entry["label"]: entry["body"] for entry in CALLS}
    status = PipelineStatus.model_validate(by_label["status loaded"])
    assert (status.pipeline_id, status.pipeline_ids, status.load_params) == ("passthrough", None, {})
    metrics = SessionMetrics.model_validate(by_label["metrics in session"])
    assert metrics.gpu is None and metrics.headless is not None and metrics.headless.frames_out == 40
    assert SessionParameters.model_validate(by_label["params no session GET"]).parameters == {}
    applied = AppliedParameters.model_validate(by_label["params POST {}"]).applied_parameters
    assert applied == {"prompt_interpolation_method": "linear", "vace_context_scale": 1.0}
    assert CloudStatus.model_validate(by_label["cloud status"]).stats is None


def test_recorded_schemas_parse_into_typed_fields() -> None:
    schemas = PipelineSchemas.model_validate_json((FIXTURES / "pipeline-schemas.json").read_text()).pipelines
    assert sorted(schemas) == ["controller-viz", "gray", "optical-flow", "passthrough", "rife", "scribble"]
    passthrough, rife, viz = schemas["passthrough"], schemas["rife"], schemas["controller-viz"]
    assert passthrough.supported_modes == ["video"] and passthrough.supports_prompts is False
    assert passthrough.usage == [] and passthrough.estimated_vram_gb is None and passthrough.requires_models is False
    assert (passthrough.inputs, passthrough.outputs, passthrough.min_dimension) == (["video"], ["video"], 1)
    assert rife.usage == ["postprocessor"] and rife.requires_models is True
    assert viz.supported_modes == ["text"] and viz.config_schema["title"] == "ControllerVisualizerConfig"


def real_failed_load_log(pipeline_id: str, cause: str) -> list[str]:
    """The lines Scope 0.2.4's pipeline manager logs for one pipeline that fails to load."""
    prefix = "2026-12-05 23:11:47,101 - scope.server.pipeline_manager -"
    return [
        f"{prefix} INFO - Loading 1 pipeline(s): [('{pipeline_id}', '{pipeline_id}')]",
        f"{prefix} INFO - Loading pipeline: {pipeline_id} (registry: {pipeline_id})",
        f"{prefix} ERROR - Failed to load pipeline {pipeline_id}: {cause}. If this error persists, consider "
        "removing the models directory '/root/.daydream-scope/models' and re-downloading models.",
        f"{prefix} ERROR - Failed to load pipeline: {pipeline_id}",
        f"{prefix} ERROR - Some pipelines failed to load",
    ]


def test_load_failure_reason_quotes_the_cause_not_the_summary() -> None:
    assert load_failure_reason(real_failed_load_log("nosuch-pipe", "Invalid pipeline ID: nosuch-pipe")) == (
        "Invalid pipeline ID: nosuch-pipe"
    )
    own_error = real_failed_load_log("longlive", "CUDA error: out of memory")
    assert load_failure_reason(own_error) == "CUDA error: out of memory (pipeline longlive)"


def test_load_failure_reason_reads_only_the_latest_load() -> None:
    earlier = real_failed_load_log("nosuch-pipe", "Invalid pipeline ID: nosuch-pipe")
    latest = real_failed_load_log("longlive", "CUDA error: out of memory")
    assert load_failure_reason(earlier + latest) == "CUDA error: out of memory (pipeline longlive)"
    unparsed = ["INFO x", "ERROR RuntimeError: checkpoint missing", "ERROR Some pipelines failed to load"]
    assert load_failure_reason(unparsed) == "ERROR RuntimeError: checkpoint missing"
    assert load_failure_reason(["INFO all good"]) is None


@pytest.mark.parametrize(
    ("status", "content_type", "detail", "missing"),
    [
        (404, "application/json", "Frontend not built", True),  # 0.2.4's GET catch-all without a UI build
        (404, "text/html; charset=utf-8", "<!doctype html>", True),  # the catch-all serving the UI
        (405, "application/json", "Method Not Allowed", True),  # any other method where no route is
        (404, "application/json", "Not Found", True),  # FastAPI's own, from a proxy or another build
        (404, "application/json", "No active headless session", False),
        (404, "application/json", "No frame available (no active session or pipeline not running)", False),
    ],
)
def test_route_missing_knows_scopes_real_answers(status, content_type, detail, missing) -> None:
    assert route_missing(status, content_type, detail) is missing


@pytest.mark.parametrize(
    ("body", "expected", "unexpected"),
    [
        ({"status": "loaded", "pipeline_id": "passthrough"}, ["gray"], True),  # left over from the last load
        ({"status": "loaded", "pipeline_id": "gray"}, ["gray"], False),
        ({"status": "loaded", "pipeline_id": "longlive"}, ["longlive", "rife"], False),  # 0.2.4 names the first
        ({"status": "loaded", "pipeline_id": "longlive", "pipeline_ids": ["longlive"]}, ["longlive", "rife"], True),
        ({"status": "loaded", "pipeline_id": "passthrough"}, None, False),  # no ids given: no check
        ({"status": "loading", "pipeline_id": None}, ["gray"], False),
    ],
)
def test_unexpected_load_spots_a_left_over_loaded(body, expected, unexpected) -> None:
    assert bool(unexpected_load(PipelineStatus.model_validate(body), expected)) is unexpected
