"""`dispatch`: plan fair runs over the fleet and launch `run-scenario` for each, within concurrency limits."""

from __future__ import annotations

from prefect import flow
from prefect.concurrency.asyncio import concurrency

from analytics.lake import Lake
from config.settings import Settings, load_settings
from flows.analyze import analyze
from flows.run_scenario import run_scenario
from tasks.fleet.dispatching import DEFAULT_WINDOW_S, Orchestrator, dispatch_runs
from tasks.fleet.instance_failures import land_instance_failure
from tasks.fleet.instances import InstanceStartFailed, LogLimits, scope_instance
from tasks.fleet.limits import ensure_limits, limit_names
from tasks.fleet.planner import Assignment
from tasks.session.report import run_summary, run_summary_of, sweep_orphan_runs
from tasks.session.target import utc_now


async def launch_assignment(
    assignment: Assignment, orchestrator: Orchestrator, *, settings: Settings, lake: Lake, config: str | None
) -> dict:
    """One assignment: hold its orchestrator and instance limits, bring up the instance, run the scenario.

    An instance that cannot start lands as an `aborted` run of the instance (harness, prepare).
    """
    instance = next(i for i in settings.instances if i.name == assignment.instance)
    names = limit_names(assignment.orchestrator, assignment.instance)
    logs = LogLimits(files=settings.dispatch.instance_log_files, max_bytes=settings.dispatch.instance_log_max_bytes)
    await ensure_limits(names)
    async with concurrency(names, occupy=1, strict=True):
        started_at = utc_now()
        try:
            async with scope_instance(instance, orchestrator_uri=orchestrator.uri, log_dir=lake.root / "instances",
                                      log_limits=logs) as url:
                state = await run_scenario(
                    scenario=assignment.scenario,
                    scope_url=url,
                    orchestrator=orchestrator.address,
                    duration_s=assignment.duration_s,
                    config=config,
                    return_state=True,
                )
                return await run_summary_of(state)
        except InstanceStartFailed as error:
            record = land_instance_failure(lake, settings, assignment, orchestrator, error, started_at=started_at)
            return run_summary(record)


@flow(name="dispatch")
async def dispatch(config: str | None = None, max_runs: int | None = None, window_s: float = DEFAULT_WINDOW_S) -> dict:
    """Plan and launch runs for `window_s` seconds (or `max_runs` runs), wait for them, then analyze."""
    settings = load_settings(config)
    lake = Lake.from_env()
    sweep_orphan_runs(lake)

    async def launch(assignment: Assignment, orchestrator: Orchestrator) -> dict:
        return await launch_assignment(assignment, orchestrator, settings=settings, lake=lake, config=config)

    summary = await dispatch_runs(settings=settings, lake=lake, launch=launch, max_runs=max_runs, window_s=window_s)
    if summary.launched:  # a batch landed: refresh baselines, drift, scores and the gauges
        await analyze(config=config)
    return summary.as_dict()
