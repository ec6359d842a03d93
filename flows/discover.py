"""`discover`: read every orchestrator source, land one snapshot per orchestrator, show a table.

Scheduled every `discovery.refresh_interval_hours` (REFRESH by default); the thin task
wrappers live here so that `tasks/fleet/discovery.py`, and the `loadtest discover` command built
on it, never import Prefect.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from analytics.lake import Lake
from config.settings import Discovery, Settings, load_settings
from tasks.fleet.discovery import (
    DiscoveryError, DiscoveryResult, discover_orchestrators, discovery_markdown, land_discovery,
)

ARTIFACT_KEY = "discovery"
DISCOVER_TIMEOUT_S = 600  # every source is bounded by discovery.timeout_s; this is the backstop


def refresh_interval(settings: Settings) -> timedelta:
    """How often the `discover` deployment runs under `settings`."""
    return timedelta(hours=settings.discovery.refresh_interval_hours)


REFRESH = timedelta(hours=Discovery().refresh_interval_hours)  # the default schedule: every 4 hours


@task(name="gather-orchestrators", cache_policy=NO_CACHE, persist_result=False)
async def gather_orchestrators(discovery: Discovery) -> DiscoveryResult:
    """Read and merge every source; DiscoveryError when every configured source failed."""
    result = await discover_orchestrators(discovery)
    logger = get_run_logger()
    for stats in result.sources:
        if not stats.ok:
            logger.warning("source %s failed: %s", stats.source, stats.error)
    if result.all_failed:
        category = next(s.failure_category for s in result.sources)
        raise DiscoveryError(f"all {len(result.sources)} discovery sources failed", category=category)
    return result


@task(name="land-orchestrators", cache_policy=NO_CACHE, persist_result=False)
def land_orchestrators(result: DiscoveryResult, lake: Lake) -> str | None:
    """Land the snapshots in the lake; the file path, or None when there was nothing to land."""
    path = land_discovery(lake, result)
    return str(path) if path else None


@task(name="publish-discovery-artifact", cache_policy=NO_CACHE, persist_result=False)
async def publish_discovery_artifact(result: DiscoveryResult) -> None:
    """The discovery tables as a Prefect markdown artifact."""
    await acreate_markdown_artifact(markdown=discovery_markdown(result), key=ARTIFACT_KEY,
                                    description=f"{len(result.snapshots)} orchestrators")


@flow(name="discover", timeout_seconds=DISCOVER_TIMEOUT_S)
async def discover(config: str | None = None) -> dict:
    """Discover orchestrators from every configured source and land them; returns the counts."""
    settings = load_settings(config)
    result = await gather_orchestrators(settings.discovery)
    landed = land_orchestrators(result, Lake.from_env())
    await publish_discovery_artifact(result)
    return result.counts() | {"landed": landed}
