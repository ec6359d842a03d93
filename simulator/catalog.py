"""The pipelines a simulated Scope 0.2.4 server knows, and what each one does to output.

The schema entries follow what real Scope 0.2.4 answers on `/api/v1/pipelines/schemas`;
the private figures (frame rate, whether prompts steer the look, fps multiplier) drive the
frame generator. Like Scope, an instance without a GPU registers only the pipelines that
have no VRAM estimate; loading any other one fails with `Invalid pipeline ID`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.config_schema import config_schema

DEFAULT_WIDTH = 512
DEFAULT_HEIGHT = 512
UNPACED_FPS = 30.0  # controller-viz runs unpaced; the simulator caps it at a display rate


# What BasePipelineConfig gives every pipeline unless its config says otherwise (Scope 0.2.4).
BASE_METADATA: dict = {
    "version": "1.0.0",
    "supports_prompts": True,
    "default_temporal_interpolation_method": "slerp",
    "default_temporal_interpolation_steps": 0,
    "default_spatial_interpolation_method": "linear",
    "docs_url": None,
    "estimated_vram_gb": None,
    "requires_models": False,
    "supports_lora": False,
    "supports_vace": False,
    "supports_cache_management": False,
    "supports_kv_cache_bias": False,
    "supports_quantization": False,
    "min_dimension": 1,
    "recommended_quantization_vram_threshold": None,
    "modified": False,
    "produces_video": True,
    "produces_audio": False,
    "usage": [],
    "inputs": ["video"],
    "outputs": ["video"],
    "plugin_name": None,
}


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline: its public schema entry and its simulated behaviour."""

    pipeline_id: str
    name: str
    description: str
    supported_modes: tuple[str, ...]
    fps: float
    prompt_driven: bool  # simulated: prompts steer the look
    fps_multiplier: float = 1.0
    config_class: str = ""
    config_doc: str | None = None
    metadata: dict = field(default_factory=dict)  # overrides of BASE_METADATA
    mode_defaults: dict = field(default_factory=dict)

    @property
    def video_only(self) -> bool:
        """True when the pipeline cannot run without a video input."""
        return self.supported_modes == ("video",)

    @property
    def estimated_vram_gb(self) -> float | None:
        """Scope's VRAM estimate; None for pipelines that need no GPU."""
        return self.metadata.get("estimated_vram_gb")

    def schema(self) -> dict:
        """The entry of this pipeline in `/api/v1/pipelines/schemas`."""
        entry = {
            "id": self.pipeline_id,
            "name": self.name,
            "description": self.description,
            **BASE_METADATA,
            "supported_modes": list(self.supported_modes),
            "default_mode": self.supported_modes[0],
            **self.metadata,
            "config_schema": config_schema(self.pipeline_id, self.config_class, self.config_doc),
        }
        return entry | ({"mode_defaults": self.mode_defaults} if self.mode_defaults else {})


def _spec(pipeline_id: str, name: str, description: str, modes: tuple[str, ...], fps: float, **kwargs) -> PipelineSpec:
    config_class = kwargs.pop("config_class", name.replace(" ", "") + "Config")
    return PipelineSpec(pipeline_id, name, description, modes, fps, config_class=config_class, **kwargs)


VIDEO = ("video",)
PREPROCESSOR = {"usage": ["preprocessor"], "modified": True}
LONGLIVE_VIDEO_DEFAULTS = {
    "height": DEFAULT_HEIGHT, "width": DEFAULT_WIDTH, "noise_scale": 0.7, "noise_controller": True,
    "denoising_steps": [1000, 750],
}

# passthrough, gray, controller-viz, rife, optical-flow and scribble carry the values real Scope 0.2.4
# answered; longlive, video-depth-anything (built in) and ltx2 (the scope-ltx-2 plugin) follow their configs.
CATALOG: dict[str, PipelineSpec] = {
    spec.pipeline_id: spec
    for spec in (
        _spec(
            "longlive", "LongLive", "Streaming autoregressive video diffusion (Wan2.1 1.3B, Self-Forcing).",
            ("text", "video"), 12.0, prompt_driven=True, mode_defaults={"video": LONGLIVE_VIDEO_DEFAULTS},
            metadata={
                "estimated_vram_gb": 20.0, "requires_models": True, "supports_lora": True, "supports_vace": True,
                "supports_cache_management": True, "supports_quantization": True, "min_dimension": 16,
                "modified": True, "inputs": ["video", "vace_input_frames", "vace_input_masks"],
                "docs_url": "https://github.com/daydreamlive/scope/blob/main/src/scope/core/pipelines/longlive/docs/usage.md",
            },
        ),
        _spec(
            "ltx2", "LTX 2.3", "High-quality audio-video generation with LTX 2.3 (22B distilled)", ("text",), 10.0,
            prompt_driven=True, config_class="LTX2Config",
            metadata={
                "version": "0.3.0", "estimated_vram_gb": 22.0, "requires_models": True, "supports_lora": True,
                "min_dimension": 64, "produces_audio": True, "plugin_name": "scope-ltx-2",
                "docs_url": "https://github.com/Lightricks/LTX-2",
            },
        ),
        _spec(
            "rife", "RIFE", "Frame interpolation pipeline using RIFE HDv3 to double the frame rate of input video "
            "by generating intermediate frames.", VIDEO, 15.0, prompt_driven=False, fps_multiplier=2.0,
            config_doc="Configuration for RIFE frame interpolation pipeline.",
            metadata={"supports_prompts": False, "requires_models": True, "modified": True, "usage": ["postprocessor"],
                      "docs_url": "https://github.com/hzwer/Practical-RIFE"},
        ),
        _spec(
            "video-depth-anything", "Video Depth Anything", "Video depth estimation pipeline providing temporally "
            "consistent depth maps for video sequences using Video-Depth-Anything Small model.", VIDEO, 15.0,
            prompt_driven=False, config_doc="Configuration for Video Depth Anything pipeline.",
            metadata={**PREPROCESSOR, "supports_prompts": False, "estimated_vram_gb": 1.0, "requires_models": True,
                      "docs_url": "https://github.com/DepthAnything/Video-Depth-Anything"},
        ),
        _spec(
            "passthrough", "Passthrough", "A pipeline that returns the input video without any processing that is "
            "useful for testing and debugging.", VIDEO, 15.0, prompt_driven=False, metadata={"supports_prompts": False},
        ),
        _spec(
            "gray", "Grayscale", "Converts video frames to grayscale. Lightweight preprocessor with no model required, "
            "optimized for realtime use.", VIDEO, 15.0, prompt_driven=False, config_class="GrayConfig",
            config_doc="Configuration for Gray preprocessor pipeline.", metadata={**PREPROCESSOR, "supports_prompts": False},
        ),
        _spec(
            "controller-viz", "Controller Visualizer", "Visualizes WASD keyboard and mouse controller inputs in "
            "real-time. Useful for testing the controller input system.", ("text",), UNPACED_FPS, prompt_driven=False,
            config_doc="Configuration for the Controller Visualizer pipeline.", metadata={"supports_prompts": False},
        ),
        _spec(
            "optical-flow", "Optical Flow", "Optical flow computation using RAFT model. Produces RGB flow "
            "visualizations for video conditioning.", VIDEO, 15.0, prompt_driven=False,
            config_doc="Configuration for Optical Flow pipeline.",
            metadata={**PREPROCESSOR, "supports_prompts": False, "docs_url": "https://pytorch.org/vision/main/models/raft.html"},
        ),
        _spec(
            "scribble", "Scribble", "Extracts contour/scribble line art from video frames using a neural network. "
            "Based on VACE's anime-style contour extraction model.", VIDEO, 15.0, prompt_driven=False,
            config_doc="Configuration for Scribble preprocessor pipeline.",
            metadata={**PREPROCESSOR, "supports_prompts": False, "requires_models": True},
        ),
    )
}


def available(*, has_gpu: bool) -> dict[str, PipelineSpec]:
    """The pipelines Scope registers: without a GPU, only those with no VRAM estimate."""
    return {pid: spec for pid, spec in CATALOG.items() if has_gpu or spec.estimated_vram_gb is None}


def unknown_ids(pipeline_ids: Sequence[str], *, has_gpu: bool = True) -> list[str]:
    """The ids in `pipeline_ids` that no registered pipeline has."""
    registered = available(has_gpu=has_gpu)
    return [pid for pid in pipeline_ids if pid not in registered]


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
    return sum((CATALOG[pid].estimated_vram_gb or 0.0) * 1024 * 0.85 for pid in pipeline_ids if pid in CATALOG)


def schemas_payload(*, has_gpu: bool = True) -> dict:
    """The body of `GET /api/v1/pipelines/schemas`."""
    return {"pipelines": {pid: spec.schema() for pid, spec in available(has_gpu=has_gpu).items()}}
