"""The lake's orchestrators: one key per address in any casing, capacity and URI/region from discovery."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from analytics.lake import Lake
from analytics.records import OrchestratorSnapshot
from config.settings import Discovery, ScopeInstanceConfig, Settings, StaticOrchestrator
from tasks.fleet.limits import limit_names
from tasks.fleet.roster import known_orchestrators
from tasks.session.report import resolve_target

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
LOWER = CHECKSUMMED.lower()
T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def snapshot(address: str, at: datetime, **fields) -> OrchestratorSnapshot:
    """One gateway sighting."""
    return OrchestratorSnapshot(snapshot_at=at, address=address, source="gateway", offers_scope=True, **fields)


def test_snapshots_in_any_casing_are_one_orchestrator_with_its_latest_capacity(lake: Lake) -> None:
    # landed before addresses were stored lowercase, then after
    lake.land("orchestrators", [snapshot(CHECKSUMMED, T0, uri="https://old", capacity=0, capacity_in_use=2)],
              file_stem="d1")
    lake.land("orchestrators", [snapshot(LOWER, T0 + timedelta(minutes=30), uri="https://new", region="eu",
                                         capacity=0, capacity_in_use=1)], file_stem="d2")
    settings = Settings(discovery=Discovery(orchestrators=[StaticOrchestrator(address=CHECKSUMMED, uri="https://s")]))
    (key, orchestrator), = known_orchestrators(lake, settings).items()
    assert key == orchestrator.address == LOWER
    assert (orchestrator.uri, orchestrator.region, orchestrator.first_seen) == ("https://new", "eu", T0)
    assert orchestrator.no_capacity_at == T0 + timedelta(minutes=30)
    lake.land("orchestrators", [snapshot(CHECKSUMMED, T0 + timedelta(minutes=50), capacity=1, capacity_in_use=1)],
              file_stem="d3")
    assert known_orchestrators(lake, settings)[LOWER].no_capacity_at is None
    assert limit_names(CHECKSUMMED, "scope-1") == limit_names(LOWER, "scope-1")


def test_a_run_takes_uri_and_region_from_discovery_and_a_lowercase_address(lake: Lake) -> None:
    lake.land("orchestrators", [snapshot(CHECKSUMMED, T0, uri="https://discovered:8935", region="us-east")],
              file_stem="d1")
    settings = Settings(instances=[ScopeInstanceConfig(name="scope-1", url="http://scope-1:8000",
                                                       orchestrator=CHECKSUMMED)])
    pinned = resolve_target(settings, "http://scope-1:8000/", None, lake=lake)  # ad hoc on a pinned instance
    named = resolve_target(settings, "http://127.0.0.1:9100", LOWER, lake=lake)  # dispatched to a managed one
    for target in (pinned, named):
        assert (target.orchestrator, target.orchestrator_uri, target.region) == (
            LOWER, "https://discovered:8935", "us-east")
    assert pinned.scope_instance == "scope-1"
    unknown = resolve_target(settings, "http://127.0.0.1:9100", "0xNEW", lake=lake)
    assert (unknown.orchestrator, unknown.orchestrator_uri, unknown.region) == ("0xnew", None, None)
