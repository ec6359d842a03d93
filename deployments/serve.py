"""Every deployment served from one process: the one-machine install (`loadtest serve`).

The same deployment names, schedules, parameters and dispatch concurrency as `prefect.yaml`
(a test holds the two equal), but no work pool and no worker: the runner inside this process
polls the Prefect server and runs each flow run in a subprocess. The discovery interval comes
from the config (`discovery.refresh_interval_hours`), so `prefect.yaml` states the default.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.runner import Runner

from config.settings import Settings
from flows.analyze import analyze
from flows.compact import COMPACT_INTERVAL_S, compact_lake
from flows.discover import discover
from flows.dispatch import dispatch
from flows.publish import PUBLISH_INTERVAL_S, publish_leaderboard
from flows.run_assignment import run_assignment
from flows.run_scenario import run_scenario
from errors import HarnessError

DISPATCH_INTERVAL = timedelta(minutes=5)
# Each dispatch run plans for one interval, then waits for its runs; a run that outlasts the
# interval makes the next scheduled ones cancel themselves (limit 1, CANCEL_NEW) instead of piling up.
DISPATCH_WINDOW_S = DISPATCH_INTERVAL.total_seconds()
ANALYZE_INTERVAL = timedelta(hours=1)
PUBLISH_INTERVAL = timedelta(seconds=PUBLISH_INTERVAL_S)
COMPACT_INTERVAL = timedelta(seconds=COMPACT_INTERVAL_S)
TAGS = ("scope-loadtest",)


@dataclass(frozen=True)
class DeploymentPlan:
    """One deployment: its flow, name, schedule, default parameters and own concurrency limit."""

    flow_name: str
    name: str
    interval: timedelta | None
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = None
    cancel_new: bool = False
    description: str = ""

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as `prefect deployment run` takes it."""
        return f"{self.flow_name}/{self.name}"


def deployment_plans(settings: Settings, config: str | None = None) -> list[DeploymentPlan]:
    """The deployments under `settings`; `config` (a path) becomes every flow's default."""
    common = {"config": str(Path(config).resolve())} if config else {}
    return [
        DeploymentPlan("discover", "scheduled", timedelta(hours=settings.discovery.refresh_interval_hours),
                       dict(common), description="Orchestrators from every discovery source into the lake"),
        DeploymentPlan("dispatch", "scheduled", DISPATCH_INTERVAL, common | {"window_s": DISPATCH_WINDOW_S},
                       concurrency_limit=1, cancel_new=True,
                       description="Plan fair runs over the fleet and launch run-scenario for each"),
        DeploymentPlan("run-scenario", "adhoc", None, dict(common),
                       description="One scenario on one Scope instance, on demand"),
        DeploymentPlan("run-assignment", "dispatched", None, dict(common),
                       description="One dispatched assignment on the worker of its Scope instance's host"),
        DeploymentPlan("analyze", "hourly", ANALYZE_INTERVAL, dict(common),
                       description="Baselines, drift, coverage and scores to the lake, Pushgateway and artifacts"),
        DeploymentPlan("publish-leaderboard", "every-minute", PUBLISH_INTERVAL, dict(common),
                       concurrency_limit=1, cancel_new=True,
                       description="Post finished relay runs to the configured leaderboards through the outbox"),
        DeploymentPlan("compact-lake", "daily", COMPACT_INTERVAL, {}, concurrency_limit=1, cancel_new=True,
                       description="Merge each completed table-day's small lake files into one"),
    ]


def runner_deployments(plans: list[DeploymentPlan]) -> list[RunnerDeployment]:
    """RunnerDeployments for `plans`, ready for a Runner."""
    flows = {f.name: f for f in (discover, dispatch, run_scenario, run_assignment, analyze, publish_leaderboard,
                                 compact_lake)}
    deployments = []
    for plan in plans:
        limit: Any = plan.concurrency_limit
        if limit is not None and plan.cancel_new:
            limit = ConcurrencyLimitConfig(limit=limit, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
        deployments.append(flows[plan.flow_name].to_deployment(
            name=plan.name, interval=plan.interval, parameters=plan.parameters, concurrency_limit=limit,
            description=plan.description, tags=list(TAGS),
        ))
    return deployments


@dataclass(frozen=True)
class BoundDeployment:
    """A deployment of the same name that `prefect deploy` bound to a work pool."""

    full_name: str
    deployment_id: str
    work_pool_name: str


async def worker_bound_deployments(plans: list[DeploymentPlan]) -> list[BoundDeployment]:
    """The planned deployments that already exist on the server bound to a work pool.

    Serving over them is not enough: the update keeps their work pool and storage, and their
    runs then crash looking for flow code; they have to be deleted first.
    """
    bound = []
    async with _prefect_api() as client:
        for plan in plans:
            try:
                deployment = await client.read_deployment_by_name(plan.full_name)
            except ObjectNotFound:
                continue
            if deployment.work_pool_name:
                bound.append(BoundDeployment(plan.full_name, str(deployment.id), deployment.work_pool_name))
    return bound


async def delete_deployments(bound: list[BoundDeployment]) -> None:
    """Delete those deployments (their past flow runs stay; their scheduled ones go)."""
    async with _prefect_api() as client:
        for deployment in bound:
            await client.delete_deployment(UUID(deployment.deployment_id))


@asynccontextmanager
async def _prefect_api() -> AsyncIterator[PrefectClient]:
    """A Prefect client whose transport and HTTP errors become one HarnessError line."""
    try:
        async with get_client() as client:
            yield client
    except httpx.HTTPError as exc:  # the server is down or refused: say so instead of a traceback
        raise HarnessError(f"Prefect API failed: {type(exc).__name__}: {exc}") from exc


class GracefulRunner(Runner):
    """A Runner that treats SIGTERM like SIGINT.

    Prefect's own SIGTERM handler exits the process while the schedules are still being paused;
    SIGINT takes asyncio's graceful path (cancel, leave the runner's context, pause every
    deployment), which is what a service manager's SIGTERM should get.
    """

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        """Re-raise SIGTERM as SIGINT."""
        signal.raise_signal(signal.SIGINT)


def serve_all(settings: Settings, config: str | None = None, *, limit: int | None = None) -> None:
    """Serve every deployment until SIGINT or SIGTERM; their schedules are paused on the way out."""
    runner = GracefulRunner(pause_on_shutdown=True, limit=limit)
    for deployment in runner_deployments(deployment_plans(settings, config)):
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass  # the way out for both signals: the runner has stopped and paused its schedules
