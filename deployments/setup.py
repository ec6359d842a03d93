"""`loadtest setup`: what the Prefect server needs before `prefect deploy --all` and a worker.

It creates the process work pool `scope-loadtest` and a one-slot global concurrency limit per
configured Scope instance and per orchestrator known from the config or the lake (dispatch
holds them with `strict=True`, so a missing one would fail the run). Idempotent: a second call
finds everything in place and says so; a limit whose slot count was changed is set back to 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate, WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from prefect.workers.process import ProcessWorker

from analytics.lake import Lake
from config.settings import Settings
from errors import HarnessError
from tasks.fleet.limits import limit_names

WORK_POOL_NAME = "scope-loadtest"
WORK_POOL_TYPE = "process"
LIMIT_SLOTS = 1  # one run per orchestrator and per instance at a time
# limit_names() names the pair a run holds; setup needs each side alone, so it pairs with a stand-in.
_STAND_IN = "-"
NO_SERVER = (
    "no Prefect server configured: start one (`prefect server start`) and set PREFECT_API_URL, "
    "e.g. http://127.0.0.1:4200/api"
)

Result = Literal["created", "exists", "updated"]


@dataclass(frozen=True)
class SetupAction:
    """One thing setup checked on the Prefect server and what it did about it."""

    kind: Literal["work-pool", "concurrency-limit"]
    name: str
    result: Result
    detail: str = ""

    def line(self) -> str:
        """`created concurrency-limit orch-0xab… (limit 1)`."""
        return f"{self.result:<8} {self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


def configured_api_url() -> str | None:
    """The Prefect API this process would talk to (env or profile); None means a temporary one."""
    return get_current_settings().api.url


def known_orchestrators(settings: Settings, lake: Lake) -> list[str]:
    """Orchestrators named in the config (static list, pinned instances) or seen in the lake."""
    named = [o.address for o in settings.discovery.orchestrators]
    named += [i.orchestrator for i in settings.instances if i.orchestrator]
    seen = lake.query(
        "SELECT address FROM orchestrators UNION SELECT orchestrator FROM runs WHERE orchestrator IS NOT NULL"
    )
    return sorted({str(row[0]) for row in seen.rows} | set(named), key=str.lower)


def setup_limit_names(instances: Iterable[str], orchestrators: Iterable[str]) -> list[str]:
    """The global concurrency limits dispatch holds: one per instance, one per orchestrator, no duplicates."""
    names = [limit_names(_STAND_IN, instance)[1] for instance in instances]
    names += [limit_names(orchestrator, _STAND_IN)[0] for orchestrator in orchestrators]
    return list(dict.fromkeys(names))


async def ensure_work_pool(client: PrefectClient, name: str = WORK_POOL_NAME) -> SetupAction:
    """Create the process work pool `name` when it does not exist (an existing one is left as it is)."""
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()  # local: no collection registry lookup
        await client.create_work_pool(WorkPoolCreate(name=name, type=WORK_POOL_TYPE, base_job_template=template))
        return SetupAction("work-pool", name, "created", f"type {WORK_POOL_TYPE}")
    detail = f"type {pool.type}" + ("" if pool.type == WORK_POOL_TYPE else f", expected {WORK_POOL_TYPE}")
    return SetupAction("work-pool", name, "exists", detail)


async def ensure_limit(client: PrefectClient, name: str, slots: int = LIMIT_SLOTS) -> SetupAction:
    """Create the global concurrency limit `name` with `slots` slots, or set it back to `slots`."""
    try:
        limit = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        return SetupAction("concurrency-limit", name, "created", f"limit {slots}")
    if limit.limit != slots:
        await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots))
        return SetupAction("concurrency-limit", name, "updated", f"limit {limit.limit} -> {slots}")
    return SetupAction("concurrency-limit", name, "exists", f"limit {slots}")


async def run_setup(settings: Settings, lake: Lake) -> list[SetupAction]:
    """Ensure the work pool and every limit on the configured Prefect server; what was done, in order."""
    url = configured_api_url()
    if not url:
        raise HarnessError(NO_SERVER)
    names = setup_limit_names([i.name for i in settings.instances], known_orchestrators(settings, lake))
    try:
        async with get_client() as client:
            actions = [await ensure_work_pool(client)]
            for name in names:
                actions.append(await ensure_limit(client, name))
    except httpx.HTTPError as exc:  # the one place Prefect API errors become ours
        raise HarnessError(f"Prefect API at {url} failed: {type(exc).__name__}: {exc}") from exc
    return actions
