"""Cross-reference checks of a settings tree and the expansion of specs into scenarios.

Field-level problems (types, ranges, unknown keys) are pydantic's job; this module checks
what only the whole tree knows: a scenario's pipeline, modes, prompt pools and graph
template exist and fit together, and no two expanded scenarios share a name.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from config.loading import close_matches, validate_prompts
from config.scenarios import (
    HARD_CAP_MARGIN_S,
    INPUT_KIND_BY_MODE,
    SECONDS_PER_MINUTE,
    Scenario,
    duration_label,
    graph_needs_input,
    graph_pipeline_ids,
    graph_sink_id,
    scenario_name,
)
from errors import ConfigError

if TYPE_CHECKING:
    from config.settings import PipelineConfig, ScenarioSpec, Settings

# Modes whose session is driven by a prompt: without one there is nothing to generate.
PROMPTED_MODES = frozenset({"t2v", "i2v"})


def check_settings(settings: Settings) -> None:
    """Raise ConfigError for the first broken reference in the tree; None when all hold."""
    file = settings.source_file
    for pool, prompts in settings.prompt_pools.items():
        validate_prompts(prompts, file=file, key=f"prompt_pools.{pool}")
    _check_instances(settings)
    for pipeline_id, pipeline in settings.pipelines.items():
        _check_pipeline(settings, pipeline_id, pipeline)
    for index, spec in enumerate(settings.scenarios):
        _check_spec(settings, index, spec)
    _check_unique_names(settings)


def _check_instances(settings: Settings) -> None:
    """Instance names are unique (runs and concurrency limits are keyed by them)."""
    seen: set[str] = set()
    for index, instance in enumerate(settings.instances):
        if instance.name in seen:
            raise ConfigError(settings.source_file, f"instances[{index}].name", f"duplicate name {instance.name!r}")
        seen.add(instance.name)


def _check_pipeline(settings: Settings, pipeline_id: str, pipeline: PipelineConfig) -> None:
    """A chain needs a graph template, and the template must run exactly the chain's members."""
    key = f"pipelines.{pipeline_id}.graph_template"
    if pipeline.graph_template is None:
        if len(pipeline.pipeline_ids) > 1:
            problem = f"a chain of {len(pipeline.pipeline_ids)} pipelines needs a graph_template"
            raise ConfigError(settings.source_file, key, problem)
        return
    _check_graph(settings, key, pipeline.graph_template, pipeline)


def _check_graph(settings: Settings, key: str, name: str, pipeline: PipelineConfig) -> None:
    """The named template exists and its pipeline nodes are the pipeline's members."""
    if name not in settings.graph_templates:
        problem = f"unknown graph template {name!r}" + close_matches(name, settings.graph_templates)
        raise ConfigError(settings.source_file, key, problem)
    runs = graph_pipeline_ids(settings.graph_templates[name])
    if sorted(runs) != sorted(pipeline.pipeline_ids):
        problem = f"graph {name} runs {runs} but the pipeline lists {pipeline.pipeline_ids}"
        raise ConfigError(settings.source_file, key, problem)


def _check_spec(settings: Settings, index: int, spec: ScenarioSpec) -> None:
    """Pipeline known, modes supported, pools known, graph fits, durations within budget."""
    file, where = settings.source_file, f"scenarios[{index}]"
    if spec.pipeline not in settings.pipelines:
        problem = f"unknown pipeline {spec.pipeline!r}" + close_matches(spec.pipeline, settings.pipelines)
        raise ConfigError(file, f"{where}.pipeline", problem)
    pipeline = settings.pipelines[spec.pipeline]
    for pool_key, pool in spec.pool_keys():
        if pool not in settings.prompt_pools:
            problem = f"unknown prompt pool {pool!r}" + close_matches(pool, settings.prompt_pools)
            raise ConfigError(file, f"{where}.{pool_key}", problem)
    if spec.graph_template is not None:
        _check_graph(settings, f"{where}.graph_template", spec.graph_template, pipeline)
    graph_name = spec.graph_template or pipeline.graph_template
    graph = settings.graph_templates[graph_name] if graph_name else None
    for mode_index, mode in enumerate(spec.modes):
        problem = _mode_problem(spec, pipeline, mode, graph)
        if problem:
            raise ConfigError(file, f"{where}.modes[{mode_index}]", problem)
    for size_key in ("width", "height"):
        value = spec.parameters.get(size_key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(file, f"{where}.parameters.{size_key}", f"expected a positive integer, got {value!r}")
    limit_mins = settings.budget.max_run_duration_mins
    for duration_index, minutes in enumerate(spec.durations):
        if minutes > limit_mins:
            problem = f"{minutes:g} min is longer than budget.max_run_duration_mins ({limit_mins:g})"
            raise ConfigError(file, f"{where}.durations[{duration_index}]", problem)


def _mode_problem(spec: ScenarioSpec, pipeline: PipelineConfig, mode: str, graph: dict | None) -> str | None:
    """Why a mode cannot run for this spec, or None."""
    if mode not in pipeline.modes:
        return f"pipeline {spec.pipeline!r} does not support mode {mode!r} (supports {', '.join(pipeline.modes)})"
    if mode in PROMPTED_MODES and not spec.pools():
        return f"mode {mode} needs prompts: set prompts_pool or prompts_pools"
    if graph is not None and graph_needs_input(graph) and INPUT_KIND_BY_MODE[mode] != "video":
        return f"mode {mode} has no input video but the graph needs one ({{{{input_path}}}})"
    return None


def _check_unique_names(settings: Settings) -> None:
    """Two (spec, mode, duration) combinations must not expand to the same name."""
    first_seen: dict[str, int] = {}
    for index, spec in enumerate(settings.scenarios):
        for duration_index, minutes in enumerate(spec.durations):
            for mode in spec.modes:
                name = scenario_name(spec.pipeline, mode, minutes_to_seconds(minutes))
                if name in first_seen:
                    problem = f"duplicate scenario name {name!r} (first from scenarios[{first_seen[name]}])"
                    raise ConfigError(settings.source_file, f"scenarios[{index}].durations[{duration_index}]", problem)
                first_seen[name] = index


def minutes_to_seconds(minutes: float) -> float:
    """Minutes from the YAML to seconds, rounded to the millisecond (0.1 min is 6.0 s, not 6.000000000000001)."""
    return round(minutes * SECONDS_PER_MINUTE, 3)


def expand_settings(settings: Settings) -> list[Scenario]:
    """Every (spec, mode, duration) as a resolved Scenario, in YAML order."""
    return [
        build_scenario(settings, spec, mode, minutes_to_seconds(minutes))
        for spec in settings.scenarios
        for mode in spec.modes
        for minutes in spec.durations
    ]


def build_scenario(settings: Settings, spec: ScenarioSpec, mode: str, duration_s: float) -> Scenario:
    """One Scenario from a checked spec: parameters merged, prompts pooled, hard cap computed."""
    pipeline = settings.pipelines[spec.pipeline]
    graph_name = spec.graph_template or pipeline.graph_template
    graph = settings.graph_templates[graph_name] if graph_name else None
    parameters: dict[str, Any] = {"width": pipeline.width, "height": pipeline.height}
    parameters |= pipeline.parameters | spec.parameters
    pools = spec.pools()
    prompts = tuple(dict.fromkeys(p for pool in pools for p in settings.prompt_pools[pool]))
    t = settings.thresholds
    overhead_s = t.connect_timeout_s + t.load_timeout_s + t.first_frame_timeout_s + t.cleanup_timeout_s
    return Scenario(
        name=scenario_name(spec.pipeline, mode, duration_s),
        pipeline=spec.pipeline,
        pipeline_ids=list(pipeline.pipeline_ids),
        mode=mode,
        duration_s=duration_s,
        duration_class=duration_label(duration_s),
        prompt_pool=",".join(pools) or None,
        prompts=prompts,
        parameters=parameters,
        graph=copy.deepcopy(graph),
        sink_node_id=graph_sink_id(graph),
        width=parameters["width"],
        height=parameters["height"],
        expected_fps=pipeline.expected_fps,
        input_kind=INPUT_KIND_BY_MODE[mode],
        hard_cap_s=overhead_s + duration_s + HARD_CAP_MARGIN_S,
    )
