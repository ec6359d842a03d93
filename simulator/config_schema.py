"""The `config_schema` of each pipeline in `/api/v1/pipelines/schemas`.

Scope renders a pipeline's pydantic config class with `model_json_schema()`; the
simulator does the same with a base config whose fields carry the titles, bounds and
descriptions real Scope 0.2.4 answered, so the JSON Schema has the same layout.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


class CtrlInput(BaseModel):
    """Keyboard and mouse state controller-viz draws."""

    button: set[str] = Field(default_factory=set)
    mouse: tuple[float, float] = (0.0, 0.0)


class BaseConfig(BaseModel):
    """The fields every built-in pipeline config has."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(512, ge=1, description="Output height in pixels")
    width: int = Field(512, ge=1, description="Output width in pixels")
    manage_cache: bool = Field(True, description="Enable automatic cache management for performance optimization")
    base_seed: int = Field(42, ge=0, description="Base random seed for reproducible generation")
    denoising_steps: list[int] | None = Field(None, description="Denoising step schedule for progressive generation")
    lora_merge_strategy: Literal["permanent_merge", "runtime_peft"] | None = None
    noise_scale: float | None = Field(
        None, ge=0.0, le=1.0, description="Amount of noise to add during video generation (video mode only)"
    )
    noise_controller: bool | None = Field(
        None, description="Enable dynamic noise control during generation (video mode only)"
    )
    input_size: int | None = Field(1, ge=1, description="Expected input video frame count (video mode only)")
    ref_images: list[str] | None = Field(None, description="List of reference image paths for VACE conditioning")
    vace_context_scale: float = Field(
        1.0, ge=0.0, le=2.0, description="Scaling factor for VACE hint injection (0.0 to 2.0)"
    )


EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "controller-viz": {"ctrl_input": (CtrlInput | None, None)},
    "optical-flow": {"model_size": (Literal["small", "large"], Field("small"))},
    "longlive": {"quantization": (Literal["fp8_e4m3fn"] | None, None)},
}


@lru_cache(maxsize=None)
def config_schema(pipeline_id: str, class_name: str, doc: str | None) -> dict:
    """The JSON Schema of pipeline `pipeline_id`'s config class, titled `class_name` (shared: do not mutate)."""
    model = create_model(class_name, __base__=BaseConfig, __doc__=doc, **EXTRA_FIELDS.get(pipeline_id, {}))
    schema = model.model_json_schema()
    if doc is None:
        schema.pop("description", None)  # a config class without a docstring has none (passthrough)
    return schema
