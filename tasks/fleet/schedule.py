"""The scheduler's state and stop: when to rediscover (from the lake's latest snapshot, no state file), and
how a stopped schedule winds down the runs a cancelled dispatch round left in flight."""

from __future__ import annotations

import asyncio
import datetime as dt

from analytics.lake import Lake
from config.settings import load_settings


def discovery_due(config: str | None, *, now: dt.datetime | None = None) -> bool:
    """True when no discovery landed yet or the latest is older than refresh_interval_hours."""
    settings = load_settings(config)
    latest = Lake.from_env().query("select max(snapshot_at) from orchestrators").rows[0][0]
    if latest is None:
        return True
    now = now or dt.datetime.now(dt.UTC)
    return now - latest >= dt.timedelta(hours=settings.discovery.refresh_interval_hours)


async def stop_runs_in_flight(grace_s: float, *, reason: str) -> int:
    """Cancel every other task of this loop and wait up to `grace_s` for them; how many did not end.

    Called once the dispatch round itself was cancelled: what is left in the loop are the runs it
    launched (each cleans up and lands its final row when cancelled) and their helpers. A run that
    already ended is not touched; each run's own final row says how it ended, so errors raised by
    the cancelled tasks are collected here, not re-raised.
    """
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in tasks:
        task.cancel(msg=reason)
    if not tasks:
        return 0
    done, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
    return len(pending)
