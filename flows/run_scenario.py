"""`run-scenario`: one scenario on one Scope instance, a task per lifecycle phase, landed in the lake.

The flow run ends in a state that carries the verdict: `Completed` for a pass, `Completed`
named `Unavailable`, `Failed` with the failure reason, `Failed` named `Aborted`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from errors import HarnessError
from tasks.session.lifecycle import drive_session, open_session
from tasks.session.report import flow_state, publish_run_artifact, resolve_run_inputs, sweep_orphan_runs

# The backstop for any run; each run also enforces its own scenario's hard cap inside.
MAX_RUN_TIMEOUT_S = 3 * 3600


async def phase_task(name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run one lifecycle phase as a Prefect task named after it.

    A phase's own failure (a HarnessError: the verdict's business) ends the task `Failed` with its
    reason rather than as a crash with a traceback, and is raised again here for the lifecycle."""
    failures: list[HarnessError] = []

    async def phase(*phase_args: Any) -> Any:
        try:
            return await fn(*phase_args)
        except HarnessError as error:
            failures.append(error)
            return Failed(message=f"{error.category}/{name}: {error}")

    phase.__name__ = phase.__qualname__ = name
    state = await task(name=name, cache_policy=NO_CACHE, persist_result=False)(phase)(*args, return_state=True)
    if failures:
        raise failures[0]
    return await state.result()


def flow_run_name() -> str:
    """`longlive_t2v_5m @ 0x12ab34…` (or the Scope URL when no orchestrator is named)."""
    parameters = flow_run.parameters
    where = parameters.get("orchestrator") or parameters.get("scope_url", "?")
    if where.startswith("0x") and len(where) > 10:
        where = where[:8] + "…"
    return f"{parameters.get('scenario', '?')} @ {where}"


@flow(name="run-scenario", flow_run_name=flow_run_name, timeout_seconds=MAX_RUN_TIMEOUT_S)
async def run_scenario(
    scenario: str,
    scope_url: str,
    orchestrator: str | None = None,
    duration_s: float | None = None,
    config: str | None = None,
) -> State:
    """Run one scenario against one Scope instance and land it; the final state carries the verdict."""
    inputs = resolve_run_inputs(scenario, scope_url, orchestrator, config)
    sweep_orphan_runs(inputs.lake)
    async with open_session(settings=inputs.settings, scenario=inputs.scenario, target=inputs.target,
                            lake=inputs.lake, duration_s=duration_s, prefect_flow_run_id=flow_run.id) as session:
        record = await drive_session(session, call=phase_task)
    return flow_state(await publish_run_artifact(record))
