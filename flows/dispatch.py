"""`dispatch`: plan fair runs over the fleet and launch each, within concurrency limits.

An assignment whose instance names a work queue goes to the worker serving that queue as a
`run-assignment` deployment run; any other is carried out in this process, as before.
"""

from __future__ import annotations

from prefect import flow

from analytics.lake import Lake
from config.settings import load_settings
from flows.analyze import analyze
from flows.run_assignment import scenario_runner
from tasks.fleet.assignment import carry_out, instance_config
from tasks.fleet.dispatching import DEFAULT_WINDOW_S, Orchestrator, dispatch_runs
from tasks.fleet.planner import Assignment
from tasks.fleet.submission import run_on_worker
from tasks.session.report import sweep_orphan_runs


@flow(name="dispatch")
async def dispatch(config: str | None = None, max_runs: int | None = None, window_s: float = DEFAULT_WINDOW_S) -> dict:
    """Plan and launch runs for `window_s` seconds (or `max_runs` runs), wait for them, then analyze."""
    settings = load_settings(config)
    lake = Lake.from_env()
    sweep_orphan_runs(lake)

    async def launch(assignment: Assignment, orchestrator: Orchestrator) -> dict:
        if queue := instance_config(settings, assignment.instance).work_queue:
            return await run_on_worker(assignment, orchestrator, settings=settings, lake=lake, work_queue=queue,
                                       config=config)
        return await carry_out(assignment, orchestrator, settings=settings, lake=lake,
                               run_at=scenario_runner(assignment, orchestrator, config))

    summary = await dispatch_runs(settings=settings, lake=lake, launch=launch, max_runs=max_runs, window_s=window_s)
    if summary.launched:  # a batch landed: refresh baselines, drift, scores and the gauges
        await analyze(config=config)
    return summary.as_dict()
