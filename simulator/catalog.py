"""The pipelines a simulated Scope 0.2.4 server knows, and what each one does to output.

The schema entries follow `/api/v1/pipelines/schemas`; the private figures (frame rate,
whether prompts steer the look, fps multiplier) drive the frame generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_WIDTH = 512
DEFAULT_HEIGHT = 512
UNPACED_FPS = 30.0  # controller-viz runs unpaced; the simulator caps it at a display rate


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline: its public schema fields and its simulated behaviour."""

    pipeline_id: str
    name: str
    supported_modes: tuple[str, ...]
    default_mode: str
    estimated_vram_gb: float
    fps: float
    prompt_driven: bool
    usage: str = "main"  # main / preprocessor / postprocessor
    fps_multiplier: float = 1.0
    plugin_name: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def video_only(self) -> bool:
        """True when the pipeline cannot run without a video input."""
        return self.supported_modes == ("video",)

    def schema(self) -> dict:
        """The entry of this pipeline in `/api/v1/pipelines/schemas`."""
        return {
            "id": self.pipeline_id,
            "name": self.name,
            "version": "0.2.4",
            "supported_modes": list(self.supported_modes),
            "default_mode": self.default_mode,
            "mode_defaults": _mode_defaults(self),
            "estimated_vram_gb": self.estimated_vram_gb,
            "produces_video": True,
            "produces_audio": False,
            "usage": self.usage,
            "plugin_name": self.plugin_name,
            "config_schema": _config_schema(self),
            **self.extra,
        }


def _mode_defaults(spec: PipelineSpec) -> dict:
    # Video mode runs at the input's square crop, 512x512, for every video-capable pipeline.
    defaults = {mode: {"width": DEFAULT_WIDTH, "height": DEFAULT_HEIGHT} for mode in spec.supported_modes}
    if "video" in defaults and spec.prompt_driven:
        defaults["video"]["noise_scale"] = 0.7
    return defaults


def _config_schema(spec: PipelineSpec) -> dict:
    properties: dict = {
        "width": {"type": "integer", "default": DEFAULT_WIDTH, "minimum": 64, "maximum": 2048},
        "height": {"type": "integer", "default": DEFAULT_HEIGHT, "minimum": 64, "maximum": 2048},
    }
    if spec.prompt_driven:
        properties["noise_scale"] = {"type": "number", "default": 0.7, "minimum": 0.0, "maximum": 1.0}
        properties["prompts"] = {"type": "array", "items": {"type": "object"}}
    return {"title": f"{spec.name} config", "type": "object", "properties": properties}


CATALOG: dict[str, PipelineSpec] = {
    spec.pipeline_id: spec
    for spec in (
        PipelineSpec("longlive", "LongLive", ("text", "video"), "text", 18.0, 12.0, True),
        PipelineSpec(
            "ltx2", "LTX-2", ("text",), "text", 21.0, 10.0, True, plugin_name="scope-ltx-2",
            extra={"supported_tasks": ["t2v", "i2v"], "image_parameter": "first_frame_image"},
        ),
        PipelineSpec("rife", "RIFE", ("video",), "video", 1.0, 15.0, False, "postprocessor", 2.0),
        PipelineSpec(
            "video-depth-anything", "Video Depth Anything", ("video",), "video", 2.5, 15.0, False,
            "preprocessor", extra={"output_port": "vace_input_frames"},
        ),
        PipelineSpec("passthrough", "Passthrough", ("video",), "video", 0.0, 15.0, False),
        PipelineSpec("gray", "Gray", ("video",), "video", 0.0, 15.0, False),
        PipelineSpec("controller-viz", "Controller Visualizer", ("text",), "text", 0.0, UNPACED_FPS, False),
    )
}


def unknown_ids(pipeline_ids: Sequence[str]) -> list[str]:
    """The ids in `pipeline_ids` that no pipeline in the catalog has."""
    return [pid for pid in pipeline_ids if pid not in CATALOG]


def chain_fps(pipeline_ids: Sequence[str]) -> float:
    """Output frame rate of a chain: the slowest generator, times every interpolator's factor."""
    specs = [CATALOG[pid] for pid in pipeline_ids if pid in CATALOG]
    base_rates = [s.fps for s in specs if s.fps_multiplier == 1.0]
    rate = min(base_rates) if base_rates else 15.0
    for spec in specs:
        rate *= spec.fps_multiplier
    return rate


def fps_multiplier(pipeline_ids: Sequence[str]) -> float:
    """Product of the interpolation factors in a chain (rife doubles)."""
    factor = 1.0
    for pid in pipeline_ids:
        if pid in CATALOG:
            factor *= CATALOG[pid].fps_multiplier
    return factor


def needs_video_input(pipeline_ids: Sequence[str]) -> bool:
    """True when the chain's first pipeline can only run on a video input."""
    return bool(pipeline_ids) and pipeline_ids[0] in CATALOG and CATALOG[pipeline_ids[0]].video_only


def is_prompt_driven(pipeline_ids: Sequence[str]) -> bool:
    """True when some pipeline of the chain generates from prompts."""
    return any(CATALOG[pid].prompt_driven for pid in pipeline_ids if pid in CATALOG)


def vram_mb(pipeline_ids: Sequence[str]) -> float:
    """VRAM the loaded weights of these pipelines hold, in MB."""
    # Scope's estimate is a peak figure; resident weights sit a little below it.
    return sum(CATALOG[pid].estimated_vram_gb * 1024 * 0.85 for pid in pipeline_ids if pid in CATALOG)


def schemas_payload() -> dict:
    """The body of `GET /api/v1/pipelines/schemas`."""
    return {"pipelines": {pid: spec.schema() for pid, spec in CATALOG.items()}}
