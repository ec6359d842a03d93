"""One headless session: its plan, its clock (first frame, frame rate) and its prompt history."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from simulator import catalog
from simulator.frames import VARIANTS, Look, LookKind

DEFAULT_SINK = "output"


@dataclass(frozen=True)
class SessionPlan:
    """A validated start request: what runs, on what input, into which sinks."""

    pipeline_ids: tuple[str, ...]
    input_mode: str
    input_path: str | None
    sink_ids: tuple[str, ...]
    graph: bool
    pipeline_id: str | None  # as echoed by the start answer
    tint: tuple[int, int] | None = None  # mean (Cb, Cr) of the input clip or reference image


class HeadlessSession:
    """Timing and state of one session; frames are derived from it lazily, never produced."""

    def __init__(
        self, session_id: str, plan: SessionPlan, *, started_mono: float, started_wall: float,
        first_frame_s: float, fps_per_sink: float, prompt: str | None, parameters: dict,
        node_parameters: dict | None = None,
    ) -> None:
        self.session_id, self.plan = session_id, plan
        self.started_mono, self.started_wall = started_mono, started_wall
        self.first_frame_s, self.fps_per_sink = first_frame_s, fps_per_sink
        self.first_frame_mono = started_mono + first_frame_s
        self.parameters = dict(parameters)
        self.node_parameters = dict(node_parameters or {})
        self.prompt_changes: list[tuple[float, str | None]] = [(started_mono, prompt)]
        self.prompt_switches: list[dict] = []
        self.ended_mono: float | None = None
        self.stopped = self.replaced = self.crashed = False
        self._variants: dict[str, tuple[int, int]] = {}
        self._seed = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:4], "little")

    @property
    def prompt_texts(self) -> list[str]:
        """Every prompt text the session was given, first one first."""
        return [text for _, text in self.prompt_changes if text is not None]

    @property
    def sinks(self) -> int:
        """How many sinks count into frames_out."""
        return len(self.plan.sink_ids)

    def frames_per_sink(self, now: float, stall_at: float | None = None) -> int:
        """Frames one sink has produced by `now` (frozen at `stall_at` if the output stalled)."""
        until = now if self.ended_mono is None or self.replaced else min(now, self.ended_mono)
        if stall_at is not None:
            until = min(until, stall_at)
        if until < self.first_frame_mono:
            return 0
        return math.floor((until - self.first_frame_mono) * self.fps_per_sink + 1e-9) + 1

    def frame_time(self, index: int) -> float:
        """Monotonic time frame `index` (0-based) came out."""
        return self.first_frame_mono + index / self.fps_per_sink

    def index_at(self, mono: float) -> int:
        """Index of the latest frame at `mono` (-1 before the first frame)."""
        return self.frames_per_sink(mono) - 1

    def switch_prompt(self, text: str | None, now: float, latency_s: float, wall: float) -> None:
        """Take a new prompt; the output follows after `latency_s`."""
        self.prompt_changes.append((now + latency_s, text))
        self.prompt_switches.append({"text": text, "at": wall, "effective_at": wall + latency_s})

    def prompt_at(self, mono: float) -> str | None:
        """The prompt that shaped the output at `mono`."""
        current = self.prompt_changes[0][1]
        for effective_mono, text in self.prompt_changes:
            if effective_mono <= mono:
                current = text
        return current

    def requested_size(self) -> tuple[int, int]:
        """Output size asked for by parameters (or any node's parameters), default 512x512."""
        sources = [self.parameters, *[p for p in self.node_parameters.values() if isinstance(p, dict)]]
        for params in sources:
            width, height = params.get("width"), params.get("height")
            if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
                return width, height
        return catalog.DEFAULT_WIDTH, catalog.DEFAULT_HEIGHT

    def base_look(self, prompt: str | None) -> Look:
        """The picture the chain makes for `prompt` on this session's input."""
        chain = self.plan.pipeline_ids
        if catalog.is_prompt_driven(chain):
            return Look(LookKind.PROMPT, prompt or f"pipeline:{'+'.join(chain)}", self.plan.tint)
        if self.plan.input_path is None:
            return Look(LookKind.PROMPT, f"pipeline:{'+'.join(chain)}")
        if "gray" in chain:
            return Look(LookKind.GRAY, self.plan.input_path)
        if chain and chain[0] == "video-depth-anything":
            return Look(LookKind.DEPTH, self.plan.input_path)
        return Look(LookKind.CLIP, self.plan.input_path)

    def variant_for(self, sink: str, index: int) -> int:
        """Noise variant of frame `index`; a new frame never repeats the variant last served on this sink."""
        last = self._variants.get(sink)
        if last is not None and last[0] == index:
            return last[1]
        # Frames cycle through the variants: with a prime count, a receiver sampling every N frames
        # (a 24-fps stream at 2 Hz: N = 12; 10 fps: 5) never sees one variant twice in a row.
        variant = (index + self._seed) % VARIANTS
        if last is not None and variant == last[1]:
            variant = (variant + 1) % VARIANTS
        self._variants[sink] = (index, variant)
        return variant

    def end(self, now: float, *, stopped: bool = False, replaced: bool = False, crashed: bool = False) -> None:
        """Mark the session over (a replaced session keeps running: it leaked)."""
        self.ended_mono = now if self.ended_mono is None else self.ended_mono
        self.stopped, self.replaced, self.crashed = stopped, replaced, crashed
