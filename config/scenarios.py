"""Scenarios: the named, fully resolved units one run executes.

A scenario spec in the YAML (pipeline x modes x durations) expands into one ``Scenario``
per (mode, duration). Names follow the older harness: the pipeline id with ``+`` and
``-`` replaced by ``_``, the mode, then the duration class::

    longlive_t2v_5m            5 minutes
    longlive_rife_v2v_15m      a chain, 15 minutes
    longlive_t2v_15s           a fractional minute (0.25) is named in whole seconds

This module is a leaf: standard library and pydantic only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from errors import ConfigError

Mode = Literal["t2v", "v2v", "i2v"]
InputKind = Literal["none", "video", "image"]

MODES: tuple[str, ...] = ("t2v", "v2v", "i2v")
INPUT_KIND_BY_MODE: dict[str, str] = {"t2v": "none", "v2v": "video", "i2v": "image"}
INPUT_PLACEHOLDER = "{{input_path}}"
SECONDS_PER_MINUTE = 60.0
# Headroom on top of every phase limit so the sweeper never aborts a run that is merely slow.
HARD_CAP_MARGIN_S = 60.0


def duration_label(duration_s: float) -> str:
    """The duration class of a name: ``5m`` for whole minutes, else seconds (``15s``)."""
    if duration_s > 0 and duration_s % SECONDS_PER_MINUTE == 0:
        return f"{int(duration_s // SECONDS_PER_MINUTE)}m"
    return f"{duration_s:g}s"


def scenario_name(pipeline: str, mode: str, duration_s: float) -> str:
    """``<pipeline with + and - as _>_<mode>_<duration class>``, e.g. ``longlive_rife_v2v_15m``."""
    stem = pipeline.replace("+", "_").replace("-", "_")
    return f"{stem}_{mode}_{duration_label(duration_s)}"


def graph_sink_id(graph: dict[str, Any] | None) -> str | None:
    """Id of the first sink node of a graph (the one frames are read from), or None."""
    for node in (graph or {}).get("nodes", []):
        if node.get("type") == "sink":
            return str(node["id"])
    return None


def graph_needs_input(graph: dict[str, Any] | None) -> bool:
    """True when some node of the graph carries the ``{{input_path}}`` placeholder."""
    return any(
        INPUT_PLACEHOLDER in str(value)
        for node in (graph or {}).get("nodes", [])
        for value in node.values()
    )


def graph_pipeline_ids(graph: dict[str, Any]) -> list[str]:
    """The pipeline ids a graph runs, in node order."""
    return [str(n["pipeline_id"]) for n in graph.get("nodes", []) if n.get("type") == "pipeline"]


class Scenario(BaseModel):
    """One fully resolved scenario: what to load, how to start the session, how long, how capped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="e.g. longlive_t2v_5m, longlive_rife_v2v_15m")
    pipeline: str = Field(description="registry id, e.g. longlive+rife")
    pipeline_ids: list[str] = Field(description="chain members, e.g. [longlive, rife]")
    mode: Mode
    duration_s: float = Field(gt=0, description="monitored stream length after the first frame")
    duration_class: str = Field(description="the name's duration suffix, e.g. 5m or 15s")
    prompt_pool: str | None = Field(description="pool name; several pools are joined with ','")
    prompts: tuple[str, ...]
    parameters: dict[str, Any] = Field(description="session parameters, width/height included")
    graph: dict[str, Any] | None = Field(description="graph template, {{input_path}} unresolved")
    sink_node_id: str | None = Field(description="graph sink to read frames from; None without graph")
    width: int = Field(gt=0, description="requested output width in pixels")
    height: int = Field(gt=0, description="requested output height in pixels")
    expected_fps: float = Field(gt=0, description="output fps the pipeline should reach")
    input_kind: InputKind = Field(description="none (t2v), video (v2v) or image (i2v)")
    hard_cap_s: float = Field(
        gt=0, description="connect + load + first-frame limits + duration + cleanup + margin"
    )

    def with_duration(self, duration_s: float) -> Scenario:
        """The same scenario for another stream length; name and hard cap follow."""
        if not duration_s > 0:
            raise ConfigError("<override>", "duration_s", f"must be > 0, got {duration_s!r}")
        overhead_s = self.hard_cap_s - self.duration_s
        return self.model_copy(
            update={
                "name": scenario_name(self.pipeline, self.mode, duration_s),
                "duration_s": float(duration_s),
                "duration_class": duration_label(duration_s),
                "hard_cap_s": overhead_s + duration_s,
            }
        )
