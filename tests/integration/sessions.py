"""Run one real session against a simulated Scope instance started for it: the suite's common move."""

from __future__ import annotations

from analytics.lake import Lake
from analytics.records import RunRecord
from config.settings import Settings
from simulator.testing import running_simulator
from tasks.session.target import RunTarget
from tasks.scope.client import DEFAULT_TIMEOUTS, ScopeTimeouts
from tasks.session.lifecycle import run_session

DEFAULT_ORCHESTRATOR = "0x" + "ab" * 20


async def run_on_simulator(
    settings: Settings,
    lake: Lake,
    *,
    profile: str = "healthy",
    overrides: dict | None = None,
    seed: int = 0,
    scenario: str = "longlive_t2v_15s",
    duration_s: float,
    orchestrator: str = DEFAULT_ORCHESTRATOR,
    timeouts: ScopeTimeouts = DEFAULT_TIMEOUTS,
) -> tuple[RunRecord, dict]:
    """The run's final record and the simulator's ground truth once it ended."""
    with running_simulator(profile, overrides=overrides, seed=seed) as sim:
        record = await run_session(
            settings=settings,
            scenario=settings.scenario(scenario),
            target=RunTarget(scope_url=sim.url, orchestrator=orchestrator),
            lake=lake,
            duration_s=duration_s,
            timeouts=timeouts,
        )
        return record, sim.truth()
