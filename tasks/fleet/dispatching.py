"""The dispatch loop: read the fleet's state from the lake, plan, launch, re-plan as instances free up.

Launching a run is handed in as a callable (the dispatch flow passes one that runs the
`run-scenario` flow inside Prefect's global concurrency limits), so this loop is plain
asyncio and tested without Prefect. Everything it decides from comes from the lake
(rule 1): runs, their outcomes and the orchestrator snapshots.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import polars as pl

from analytics.lake import Lake
from config.settings import Settings
from tasks.fleet.planner import Assignment, InstanceSlot, plan
from tasks.session.target import utc_now

_log = logging.getLogger(__name__)
REPLAN_EVERY_S = 30.0  # re-plan while runs go on, so cooldowns and back-offs that end are seen
DEFAULT_WINDOW_S = 3600.0  # one dispatch call plans for an hour, then waits for its runs
Launch = Callable[[Assignment, "Orchestrator"], Awaitable[dict]]


@dataclass(frozen=True)
class Orchestrator:
    """What dispatch knows of one orchestrator: identity, where to pin, when first seen."""

    address: str
    uri: str | None
    region: str | None
    first_seen: dt.datetime


@dataclass(frozen=True)
class FleetState:
    """The lake's view of the fleet at one moment."""

    orchestrators: dict[str, Orchestrator]
    runs: pl.DataFrame
    running_orchestrators: frozenset[str]


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


def known_orchestrators(lake: Lake, settings: Settings) -> dict[str, Orchestrator]:
    """Orchestrators of the latest discovery (within one refresh interval), plus the static list."""
    window_s = int(settings.discovery.refresh_interval_hours * 3600)
    snapshots = lake.query_frame(
        "with history as (select address, min(snapshot_at) first_seen from orchestrator_snapshots group by 1) "
        "select o.address, o.uri, o.region, h.first_seen from orchestrators o join history h using (address) "
        f"where coalesce(o.offers_scope, true) and o.snapshot_at >= "
        f"(select max(snapshot_at) from orchestrators) - interval ({window_s}) second"
    )
    found = {
        row["address"].lower(): Orchestrator(row["address"], row["uri"], row["region"], row["first_seen"])
        for row in snapshots.iter_rows(named=True)
    }
    now = utc_now()
    for static in settings.discovery.orchestrators:
        found.setdefault(static.address.lower(), Orchestrator(static.address, static.uri, static.region, now))
    return found


def read_fleet_state(lake: Lake, settings: Settings) -> FleetState:
    """Orchestrators, runs, and which orchestrators have a run going (from any harness process)."""
    runs = lake.runs_frame()
    running = runs.filter(pl.col("outcome").is_null()) if "outcome" in runs.columns else runs.head(0)
    busy = frozenset(a.lower() for a in running.get_column("orchestrator").drop_nulls().to_list()) if len(running) else frozenset()
    return FleetState(known_orchestrators(lake, settings), runs, busy)


def instance_slots(settings: Settings) -> list[InstanceSlot]:
    """Every configured Scope instance as a planner slot (static ones pinned to their orchestrator)."""
    return [InstanceSlot(name=i.name, kind=i.kind, orchestrator=i.orchestrator) for i in settings.instances]


async def dispatch_runs(
    *,
    settings: Settings,
    lake: Lake,
    launch: Launch,
    max_runs: int | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    clock: Callable[[], dt.datetime] = utc_now,
) -> DispatchSummary:
    """Plan and launch runs until the window closes (then wait for them) or nothing is left to plan."""
    summary = DispatchSummary()
    running: dict[asyncio.Task, Assignment] = {}
    deadline = time.monotonic() + window_s
    scenarios = settings.expand_scenarios()
    while True:
        if time.monotonic() < deadline and (max_runs is None or summary.launched < max_runs):
            for assignment, orchestrator in _next_assignments(settings, lake, scenarios, running, clock()):
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
            _collect(summary, running.pop(task), task)


def _next_assignments(settings, lake, scenarios, running, now) -> list[tuple[Assignment, Orchestrator]]:
    state = read_fleet_state(lake, settings)
    busy_instances = {a.instance for a in running.values()}
    busy = set(state.running_orchestrators) | {a.orchestrator.lower() for a in running.values()}
    assignments = plan(
        orchestrators=[o.address for o in state.orchestrators.values()],
        first_seen={o.address: o.first_seen for o in state.orchestrators.values()},
        runs=state.runs,
        scenarios=scenarios,
        free_instances=[s for s in instance_slots(settings) if s.name not in busy_instances],
        busy_orchestrators=busy,
        budget=settings.budget,
        now=now,
    )
    return [(a, state.orchestrators[a.orchestrator.lower()]) for a in assignments]


def _collect(summary: DispatchSummary, assignment: Assignment, task: asyncio.Task) -> None:
    error = task.exception()
    if error is not None:
        message = f"{assignment.scenario} on {assignment.orchestrator} via {assignment.instance}: {error}"
        _log.error("run could not be carried out: %s", message)
        summary.errors.append(message)
        return
    result = task.result()
    outcome = str(result.get("outcome"))
    summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
    summary.runs.append(result)
