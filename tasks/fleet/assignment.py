"""Carrying out one assignment in this process: hold its slots, bring up its instance, run its scenario.

Dispatch does this itself for instances without a work queue; the `run-assignment` flow does
it on the worker of an instance's queue, so the slots are held by the machine that runs the
session and a dead machine's slots come back through their lease (limits.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from analytics.lake import Lake
from config.settings import ScopeInstanceConfig, Settings
from tasks.fleet.instance_failures import land_instance_failure
from tasks.fleet.instances import InstanceStartFailed, LogLimits, scope_instance
from tasks.fleet.limits import holding_slots, limit_names
from tasks.fleet.planner import Assignment
from tasks.fleet.roster import Orchestrator
from tasks.session.report import run_summary
from tasks.session.target import utc_now

RunAt = Callable[[str], Awaitable[dict]]  # run the scenario against this Scope URL -> the run's summary


def instance_config(settings: Settings, name: str) -> ScopeInstanceConfig:
    """The configured instance called `name`."""
    return next(i for i in settings.instances if i.name == name)


async def carry_out(assignment: Assignment, orchestrator: Orchestrator, *, settings: Settings, lake: Lake,
                    run_at: RunAt, flow_run_id: str | None = None) -> dict:
    """Hold the orchestrator and instance slots, bring up the instance, run the scenario: the run's summary.

    An instance that cannot start lands as an `aborted` run of the instance (harness, prepare).
    """
    instance = instance_config(settings, assignment.instance)
    logs = LogLimits(files=settings.dispatch.instance_log_files, max_bytes=settings.dispatch.instance_log_max_bytes)
    async with holding_slots(limit_names(assignment.orchestrator, assignment.instance),
                             lease_s=settings.dispatch.slot_lease_s, wait_s=settings.dispatch.start_allowance_s):
        started_at = utc_now()
        try:
            async with scope_instance(instance, orchestrator_uri=orchestrator.uri, log_dir=lake.root / "instances",
                                      log_limits=logs) as url:
                return await run_at(url)
        except InstanceStartFailed as error:
            record = land_instance_failure(lake, settings, assignment, orchestrator, error, started_at=started_at,
                                           prefect_flow_run_id=flow_run_id)
            return run_summary(record)
