"""Before a run: can the instance's pipelines do what the scenario asks? (Scope's own schemas.)

An unknown pipeline id or a mode a pipeline lacks is a configuration error (`PreflightError`,
never the orchestrator's failure); a pipeline that ignores prompts makes the prompt check one
that cannot run, said with its reason.
"""

from __future__ import annotations

from typing import Any

from config.scenarios import Scenario
from errors import PreflightError
from tasks.scope.preflight import preflight


def preflight_scenario(schemas: dict[str, Any], scenario: Scenario) -> str | None:
    """Raise PreflightError when the scenario cannot run here; return why prompts cannot be judged, or None."""
    found = preflight(schemas, list(scenario.pipeline_ids), scenario.mode, wants_prompts=bool(scenario.prompts))
    problem = found.problem
    if problem is not None:
        raise PreflightError(f"scenario {scenario.name} cannot run on this instance: {problem}", check="preflight")
    return found.prompts_unsupported
