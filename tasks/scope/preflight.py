"""Can a chain of pipelines do what a scenario asks? Judged from Scope's own schemas; pure.

Scope 0.2.4 knows two input modes, ``text`` and ``video``. The harness's modes map onto
them: t2v -> text, v2v -> video, and i2v -> text (0.2.4 has no image mode: an image-to-video
run is a text-mode session given a reference image, ``first_frame_image``). The first
pipeline of a chain takes the scenario's input; every later one is fed the video of the one
before it, so it must take a video input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.scope.models import PipelineSchema

SCOPE_MODE = {"t2v": "text", "v2v": "video", "i2v": "text", "text": "text", "video": "video"}
VIDEO = "video"


@dataclass(frozen=True)
class Preflight:
    """What a chain cannot do: unknown ids, modes lacking, pipelines that ignore prompts."""

    pipeline_ids: tuple[str, ...]
    scope_mode: str  # the Scope input mode the scenario's mode maps to
    unknown_ids: tuple[str, ...]
    missing_modes: Mapping[str, str]  # pipeline id -> the mode it lacks
    prompts_supported: bool  # at least one pipeline of the chain takes prompts
    ignores_prompts: tuple[str, ...]  # the pipelines with supports_prompts false
    wants_prompts: bool

    @property
    def problem(self) -> str | None:
        """Why the scenario cannot run here (a configuration error), or None."""
        problems = []
        if self.unknown_ids:
            problems.append(f"unknown pipeline(s) {', '.join(self.unknown_ids)}")
        problems += [f"{pid} has no {mode} mode" for pid, mode in self.missing_modes.items()]
        return "; ".join(problems) or None

    @property
    def prompts_unsupported(self) -> str | None:
        """Why prompt switches cannot be judged on this chain, or None (also when none are wanted)."""
        if not self.wants_prompts or self.prompts_supported:
            return None
        return f"no pipeline of {'+'.join(self.pipeline_ids)} takes prompts ({', '.join(self.ignores_prompts)})"


def preflight(
    schemas: Mapping[str, PipelineSchema], pipeline_ids: Sequence[str], mode: str, wants_prompts: bool
) -> Preflight:
    """Check the chain `pipeline_ids` in harness mode `mode` (t2v, v2v, i2v) against `schemas`."""
    if mode not in SCOPE_MODE:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(SCOPE_MODE)}")
    scope_mode = SCOPE_MODE[mode]
    known = [pid for pid in pipeline_ids if pid in schemas]
    return Preflight(
        pipeline_ids=tuple(pipeline_ids),
        scope_mode=scope_mode,
        unknown_ids=tuple(pid for pid in pipeline_ids if pid not in schemas),
        missing_modes=_missing_modes(schemas, pipeline_ids, scope_mode),
        prompts_supported=any(schemas[pid].supports_prompts for pid in known),
        ignores_prompts=tuple(pid for pid in known if not schemas[pid].supports_prompts),
        wants_prompts=wants_prompts,
    )


def _missing_modes(schemas: Mapping[str, PipelineSchema], pipeline_ids: Sequence[str], scope_mode: str) -> dict[str, str]:
    """Pipeline id -> the mode it lacks: the scenario's for the first, video for every later one."""
    missing: dict[str, str] = {}
    for position, pid in enumerate(pipeline_ids):
        schema = schemas.get(pid)
        if schema is None:
            continue
        needed = scope_mode if position == 0 else VIDEO
        # A later pipeline is fed the previous one's video: a video input port counts as well as a video mode.
        takes_video_input = position > 0 and VIDEO in schema.inputs
        if needed not in schema.supported_modes and not takes_video_input:
            missing[pid] = needed
    return missing
