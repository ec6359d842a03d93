"""When the scheduler should rediscover: derived from the lake's latest snapshot (no state file)."""

from __future__ import annotations

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
