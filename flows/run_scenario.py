"""`run-scenario`: one scenario on one Scope instance, a task per lifecycle phase, landed in the lake."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.session.report import publish_run_artifact, resolve_run_inputs, sweep_orphan_runs
from tasks.session.lifecycle import SessionRun, drive_session, open_session_run

# The backstop for any run; each run also enforces its own scenario's hard cap inside.
MAX_RUN_TIMEOUT_S = 3 * 3600


def _phase_task(name: str):
    async def phase(run: SessionRun):
        return await getattr(run, name)()

    phase.__doc__ = f"The `{name}` phase of a session."
    return task(name=name, cache_policy=NO_CACHE, persist_result=False)(phase)


PHASE_TASKS = {name: _phase_task(name) for name in ("prepare", "connect", "load", "start", "stream", "cleanup", "finish")}


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
) -> dict:
    """Run one scenario against one Scope instance and land it; returns the run summary."""
    inputs = resolve_run_inputs(scenario, scope_url, orchestrator, config)
    sweep_orphan_runs(inputs.lake)
    async with open_session_run(
        settings=inputs.settings,
        scenario=inputs.scenario,
        target=inputs.target,
        lake=inputs.lake,
        duration_s=duration_s,
        prefect_flow_run_id=flow_run.id,
    ) as run:
        record = await drive_session(run, call=lambda name, _fn: PHASE_TASKS[name](run))
    return await publish_run_artifact(record)
