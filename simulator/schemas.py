"""Request bodies of the simulated Scope API (FastAPI answers 422 when one does not validate)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PromptItem(BaseModel):
    """One weighted prompt."""

    model_config = ConfigDict(extra="allow")
    text: str
    weight: float = 1.0


def main_prompt(prompts: list[PromptItem] | None) -> str | None:
    """The prompt that dominates a weighted list (the first of the heaviest)."""
    if not prompts:
        return None
    return max(prompts, key=lambda item: item.weight).text


class InputSource(BaseModel):
    """A session's input (only `video_file` sources exist in headless mode)."""

    model_config = ConfigDict(extra="allow")
    enabled: bool = True
    source_type: str = "video_file"
    source_name: str | None = None


class SessionStartRequest(BaseModel):
    """Body of `POST /api/v1/session/start`."""

    model_config = ConfigDict(extra="allow")
    pipeline_id: str | None = None
    input_mode: Literal["text", "video"] = "text"
    prompts: list[PromptItem] | None = None
    input_source: InputSource | None = None
    graph: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    node_parameters: dict[str, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _pipeline_or_graph(self) -> SessionStartRequest:
        if self.pipeline_id is None and self.graph is None:
            raise ValueError("Either pipeline_id or graph must be provided")
        return self


class PipelineEntry(BaseModel):
    """One entry of the `pipelines` form of a load request."""

    model_config = ConfigDict(extra="allow")
    node_id: str | None = None
    pipeline_id: str
    load_params: dict[str, Any] | None = None


class PipelineLoadRequest(BaseModel):
    """Body of `POST /api/v1/pipeline/load`."""

    model_config = ConfigDict(extra="allow")
    pipeline_ids: list[str] | None = None
    pipelines: list[PipelineEntry] | None = None
    load_params: dict[str, Any] | None = None
    connection_id: str | None = None
    user_id: str | None = None

    def requested_ids(self) -> list[str]:
        """The pipeline ids asked for, in either form."""
        if self.pipeline_ids:
            return list(self.pipeline_ids)
        return [entry.pipeline_id for entry in self.pipelines or []]


class CloudConnectRequest(BaseModel):
    """Body of `POST /api/v1/cloud/connect` (every field may come from the server's environment)."""

    model_config = ConfigDict(extra="allow")
    app_id: str | None = None
    api_key: str | None = Field(None, repr=False)
    user_id: str | None = None


class ParametersUpdate(BaseModel):
    """Body of `POST /api/v1/session/parameters`; unknown keys are kept, defaults are applied too."""

    model_config = ConfigDict(extra="allow")
    prompts: list[PromptItem] | None = None
    prompt_interpolation_method: Literal["linear", "slerp"] = "linear"
    vace_context_scale: float = Field(1.0, ge=0.0, le=2.0)
    noise_scale: float | None = Field(None, ge=0.0, le=1.0)
    width: int | None = Field(None, ge=64, le=2048)
    height: int | None = Field(None, ge=64, le=2048)

    def applied(self) -> dict[str, Any]:
        """What Scope applies and echoes as `applied_parameters`: every field that is not None."""
        return self.model_dump(exclude_none=True)


class ProfileRequest(BaseModel):
    """Body of `POST /_sim/profile`."""

    profile: str
    overrides: dict[str, Any] = Field(default_factory=dict)
