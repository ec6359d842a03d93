"""The dispatch loop: read the fleet's state from the lake, plan, launch, re-plan as instances free up.

Launching a run is handed in as a callable (the dispatch flow passes one that sends it to its
instance's worker, or runs it here inside Prefect's global concurrency limits), so this loop is plain
asyncio and tested without Prefect. Everything it decides from comes from the lake
(rule 1): runs, their outcomes (instances that failed to start back off) and the latest
orchestrator snapshots (who exists, where to pin, who had no free capacity).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction

import polars as pl

from analytics.lake import Lake
from config.scenarios import Scenario
from config.settings import Settings
from tasks.fleet.instance_failures import instance_backoff_until
from tasks.fleet.planner import Assignment, InstanceSlot, plan
from tasks.fleet.roster import Orchestrator, known_orchestrators, orchestrator_key
from tasks.session.target import utc_now

_log = logging.getLogger(__name__)
REPLAN_EVERY_S = 30.0  # re-plan while runs go on, so cooldowns and back-offs that end are seen
DEFAULT_WINDOW_S = 3600.0  # one dispatch call plans for an hour, then waits for its runs
Launch = Callable[[Assignment, Orchestrator], Awaitable[dict]]
PREFLIGHT_MEMORY = dt.timedelta(hours=6)  # a refused scenario is retried after this (the config may be fixed)
_said: set[tuple[str, str]] = set()  # refusals already logged by this process


@dataclass(frozen=True)
class FleetState:
    """The lake's view of the fleet at one moment."""

    orchestrators: dict[str, Orchestrator]  # by orchestrator_key
    runs: pl.DataFrame
    running_orchestrators: frozenset[str]
    instances_backing_off: dict[str, dt.datetime] = field(default_factory=dict)  # name -> until


@dataclass
class DispatchSummary:
    """What one dispatch call launched and how the runs ended."""

    launched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        """A plain dict for flow results and --json."""
        return {"launched": self.launched, "outcomes": self.outcomes, "errors": self.errors, "runs": self.runs}


def read_fleet_state(lake: Lake, settings: Settings, *, now: dt.datetime) -> FleetState:
    """Orchestrators, runs, which orchestrators have a run going (from any harness process), instances backing off."""
    runs = lake.runs_frame()
    running = runs.filter(pl.col("outcome").is_null()) if "outcome" in runs.columns else runs.head(0)
    busy = frozenset(orchestrator_key(a) for a in running.get_column("orchestrator").drop_nulls().to_list())
    backing_off = instance_backoff_until(runs, [i.name for i in settings.instances], now=now,
                                         first_s=settings.dispatch.instance_backoff_s,
                                         max_s=settings.dispatch.instance_backoff_max_s)
    return FleetState(known_orchestrators(lake, settings), runs, busy, backing_off)


def instance_slots(settings: Settings) -> list[InstanceSlot]:
    """Every configured Scope instance as a planner slot (static ones pinned to their orchestrator)."""
    return [InstanceSlot(name=i.name, kind=i.kind, orchestrator=i.orchestrator and orchestrator_key(i.orchestrator))
            for i in settings.instances]


def session_share(settings: Settings, instance: str) -> Fraction:
    """The share of this process one session on ``instance`` takes: 1 / max_concurrent_sessions of its driver.

    Nothing for an instance with a work queue: its sessions run on that queue's worker, not here."""
    config = next(i for i in settings.instances if i.name == instance)
    if config.work_queue:
        return Fraction(0)
    driver = settings.driver_for(config.driver)
    return Fraction(1, getattr(settings.dispatch.max_concurrent_sessions, driver))


async def dispatch_runs(
    *,
    settings: Settings,
    lake: Lake,
    launch: Launch,
    max_runs: int | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    clock: Callable[[], dt.datetime] = utc_now,
) -> DispatchSummary:
    """Plan and launch runs until the window closes (then wait for them) or nothing is left to plan.

    Never more sessions at once than dispatch.max_concurrent_sessions allows this process; an
    instance whose launch raised is not used again in this call.
    """
    summary = DispatchSummary()
    running: dict[asyncio.Task, Assignment] = {}
    failed_instances: set[str] = set()
    deadline = time.monotonic() + window_s
    scenarios = settings.expand_scenarios()
    while True:
        if time.monotonic() < deadline and (max_runs is None or summary.launched < max_runs):
            for assignment, orchestrator in _next_assignments(settings, lake, scenarios, running, failed_instances,
                                                              clock()):
                if max_runs is not None and summary.launched >= max_runs:
                    break
                running[asyncio.create_task(launch(assignment, orchestrator))] = assignment
                summary.launched += 1
                _log.info("launched %s on %s via %s (%s)", assignment.scenario, assignment.orchestrator,
                          assignment.instance, assignment.reason)
        if not running:
            return summary
        done, _ = await asyncio.wait(running, timeout=REPLAN_EVERY_S, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            assignment = running.pop(task)
            if not _collect(summary, assignment, task):
                failed_instances.add(assignment.instance)


def _next_assignments(settings: Settings, lake: Lake, scenarios: list[Scenario],
                      running: dict[asyncio.Task, Assignment], failed_instances: set[str],
                      now: dt.datetime) -> list[tuple[Assignment, Orchestrator]]:
    """What to launch now: the plan for the free instances, cut to the sessions this process has room for."""
    state = read_fleet_state(lake, settings, now=now)
    unusable = {a.instance for a in running.values()} | failed_instances | set(state.instances_backing_off)
    busy = set(state.running_orchestrators) | {orchestrator_key(a.orchestrator) for a in running.values()}
    assignments = plan(
        orchestrators=list(state.orchestrators),
        first_seen={key: o.first_seen for key, o in state.orchestrators.items()},
        runs=state.runs,
        scenarios=scenarios,
        free_instances=[s for s in instance_slots(settings) if s.name not in unusable],
        busy_orchestrators=busy,
        budget=settings.budget,
        now=now,
        no_capacity_at={key: o.no_capacity_at for key, o in state.orchestrators.items() if o.no_capacity_at},
        refused=refused_by_preflight(state.runs, settings, now=now),
    )
    room = 1 - sum((session_share(settings, a.instance) for a in running.values()), Fraction(0))
    chosen = []
    for assignment in assignments:
        share = session_share(settings, assignment.instance)
        if share <= room:
            room -= share
            chosen.append((assignment, state.orchestrators[assignment.orchestrator]))
    return chosen


def refused_by_preflight(runs: pl.DataFrame, settings: Settings, *, now: dt.datetime) -> set[tuple[str, str]]:
    """(instance, scenario) pairs whose run the instance's own schemas refused (unknown pipeline, missing
    mode) within PREFLIGHT_MEMORY: a configuration error dispatch does not repeat, and says so once."""
    needed = {"checks_failed", "scope_instance", "scenario", "started_at"}
    if runs.is_empty() or not needed <= set(runs.columns):
        return set()
    names = {i.name for i in settings.instances} | {i.base_url() for i in settings.instances if i.url}
    by_url = {i.base_url(): i.name for i in settings.instances if i.url}
    recent = runs.filter(pl.col("checks_failed").list.contains("preflight")
                         & (pl.col("started_at") > now - PREFLIGHT_MEMORY))
    refused = set()
    for instance, scenario in recent.select("scope_instance", "scenario").unique().iter_rows():
        if instance in names:
            refused.add((by_url.get(instance, instance), scenario))
    for instance, scenario in sorted(refused - _said):
        _log.warning("skipping %s on %s: its pipelines cannot run it (preflight; fix the config or the "
                     "instance, and it is tried again within %s)", scenario, instance, PREFLIGHT_MEMORY)
    _said.update(refused)
    return refused


def _collect(summary: DispatchSummary, assignment: Assignment, task: asyncio.Task) -> bool:
    """Count a finished launch in the summary; False when it raised instead of landing a run."""
    error = task.exception()
    if error is not None:
        message = f"{assignment.scenario} on {assignment.orchestrator} via {assignment.instance}: {error}"
        _log.error("run could not be carried out: %s", message)
        summary.errors.append(message)
        return False
    result = task.result()
    outcome = str(result.get("outcome"))
    summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
    summary.runs.append(result)
    return True
