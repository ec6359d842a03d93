"""What the lake knows of the orchestrators: the latest discovery snapshot of each, plus the static list.

An address is one orchestrator in any casing (a gateway may report an on-chain address
checksummed, a list in lowercase): every key, target and limit name uses `orchestrator_key`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from analytics.lake import Lake
from config.settings import Settings
from tasks.session.target import utc_now

# The latest snapshot of every orchestrator (addresses folded to lowercase, so snapshots landed
# before addresses were stored lowercase still meet their later ones), with when it was first seen.
LATEST_SNAPSHOTS_SQL = """
with snaps as (select * replace (lower(address) as address) from orchestrator_snapshots),
history as (select address, min(snapshot_at) as first_seen from snaps group by address),
latest as (select * from snaps qualify row_number() over (partition by address order by snapshot_at desc) = 1)
select l.address, l.uri, l.region, l.offers_scope, l.capacity, l.capacity_in_use, l.snapshot_at, h.first_seen,
       l.snapshot_at >= (select max(snapshot_at) from snaps) - to_seconds({window_s}) as recent
from latest l join history h using (address)
"""


@dataclass(frozen=True)
class Orchestrator:
    """What dispatch knows of one orchestrator: identity, where to pin, when first seen, when seen full."""

    address: str
    uri: str | None
    region: str | None
    first_seen: dt.datetime
    no_capacity_at: dt.datetime | None = None  # the latest snapshot said capacity 0 with capacity in use


def orchestrator_key(address: str) -> str:
    """The one spelling of an orchestrator address: stripped, lowercase."""
    return address.strip().lower()


def latest_snapshots(lake: Lake, *, window_s: float = 0.0) -> list[dict]:
    """The latest snapshot of every discovered orchestrator; `recent` when within `window_s` of the newest."""
    return lake.query_frame(LATEST_SNAPSHOTS_SQL.format(window_s=float(window_s))).to_dicts()


def _from_snapshot(row: dict) -> Orchestrator:
    """An Orchestrator from a LATEST_SNAPSHOTS_SQL row."""
    full = row["capacity"] == 0 and (row["capacity_in_use"] or 0) > 0
    return Orchestrator(row["address"], row["uri"], row["region"], row["first_seen"],
                        no_capacity_at=row["snapshot_at"] if full else None)


def known_orchestrators(lake: Lake, settings: Settings) -> dict[str, Orchestrator]:
    """Orchestrators of the latest discovery (within one refresh interval) offering Scope, plus the static list."""
    window_s = settings.discovery.refresh_interval_hours * 3600
    found = {row["address"]: _from_snapshot(row) for row in latest_snapshots(lake, window_s=window_s)
             if row["recent"] and row["offers_scope"] is not False}
    now = utc_now()
    for static in settings.discovery.orchestrators:
        key = orchestrator_key(static.address)
        found.setdefault(key, Orchestrator(key, static.uri, static.region, now))
    return found


def find_orchestrator(lake: Lake | None, settings: Settings, address: str) -> Orchestrator | None:
    """One orchestrator as its latest snapshot (however old) says, gaps filled from static config; None if unknown."""
    key = orchestrator_key(address)
    row = next((r for r in latest_snapshots(lake) if r["address"] == key), None) if lake is not None else None
    static = next((o for o in settings.discovery.orchestrators if orchestrator_key(o.address) == key), None)
    if row is None and static is None:
        return None
    found = _from_snapshot(row) if row is not None else Orchestrator(key, None, None, utc_now())
    if static is None:
        return found
    return replace(found, uri=found.uri or static.uri, region=found.region or static.region)
