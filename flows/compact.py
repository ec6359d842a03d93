"""`compact-lake`: merge each completed table-day's small files into one, daily.

A day's files are compacted once the day is over (today's are still landing); each run also deletes
what earlier runs replaced, once the grace period has passed (analytics/compaction.py tells why
readers never lose or double-count a row meanwhile).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from analytics.lake import Lake

COMPACT_INTERVAL_S = 86_400
COMPACT_TIMEOUT_S = 60 * 60
NO_RESULT = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="compact-table", **NO_RESULT)
def compact_table(lake: Lake, table: str, before: dt.date | None) -> list[dict]:
    """Compact every day of one table before `before`; what each day's compaction did."""
    return [asdict(result) for result in lake.compact_all(before=before, tables=[table])]


@flow(name="compact-lake", timeout_seconds=COMPACT_TIMEOUT_S)
def compact_lake(tables: list[str] | None = None, before: dt.date | None = None) -> list[dict]:
    """Compact the lake's completed days (before today UTC unless `before`), table by table."""
    from analytics.records import TABLES

    lake = Lake.from_env()
    return [day for table in tables or list(TABLES) for day in compact_table(lake, table, before)]
