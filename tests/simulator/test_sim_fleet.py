"""The fleet: discovery routes, deterministic orchestrators, instances pinned to them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sim_helpers import ScopeHttp, wait_until

from simulator.testing import FleetHandle, running_fleet, running_simulator

ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
PROFILES = ["healthy", "stall", "no_capacity"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    """Three instances over six orchestrators."""
    with running_fleet(instances=3, orchestrators=6, profiles=PROFILES, seed=11) as running:
        yield running


def _get(url: str) -> object:
    response = httpx.get(url, timeout=5.0)
    assert response.status_code == 200
    return response.json()


def test_network_capabilities(fleet: FleetHandle) -> None:
    orchestrators = _get(f"{fleet.discovery_url}/getNetworkCapabilities")["orchestrators"]
    assert [o["address"] for o in orchestrators] == [o["address"] for o in fleet.orchestrators]
    for entry, expected in zip(orchestrators, fleet.orchestrators, strict=True):
        assert ADDRESS.match(entry["address"]) and entry["orch_uri"] == expected["orch_uri"]
        models = entry["capabilities"]["constraints"]["PerCapability"]["35"]["models"]
        assert ("scope" in models) == expected["offers_scope"]
        model = next(iter(models.values()))
        assert {"warm", "capacity", "capacityInUse"} <= model.keys()
        (hardware,) = entry["hardware"]
        assert hardware["pipeline"] == "live-video-to-video" and hardware["model_id"] in models
        assert {"name", "memory_total"} <= hardware["gpu_info"]["0"].keys()
        if expected["offers_scope"]:
            assert (model["capacity"], model["capacityInUse"]) == (expected["capacity"], expected["capacity_in_use"])


def test_some_orchestrators_lack_scope_and_some_are_busy(fleet: FleetHandle) -> None:
    assert any(not o["offers_scope"] for o in fleet.orchestrators)
    busy = [o for o in fleet.orchestrators if o["offers_scope"] and o["capacity"] == 0]
    assert busy and all(o["capacity_in_use"] > 0 for o in busy)
    pinned = {instance.orchestrator_url for instance in fleet.instances}
    assert all(o["offers_scope"] for o in fleet.orchestrators if o["orch_uri"] in pinned)


def test_registered_and_plain_lists(fleet: FleetHandle) -> None:
    registered = _get(f"{fleet.discovery_url}/registeredOrchestrators")
    assert [(r["Address"], r["ServiceURI"]) for r in registered] == [(o["address"], o["orch_uri"]) for o in fleet.orchestrators]
    assert all(r["Active"] is True for r in registered)
    plain = _get(f"{fleet.discovery_url}/orchestrators")
    assert [p["address"] for p in plain] == [o["address"] for o in fleet.orchestrators]
    assert all({"id", "address", "uri", "region"} <= p.keys() for p in plain)
    assert all(p["uri"].endswith(".sim.invalid:8935") for p in plain)


def test_instances_are_pinned_round_robin(fleet: FleetHandle) -> None:
    assert len(fleet.instances) == 3
    for index, instance in enumerate(fleet.instances):
        orchestrator = fleet.orchestrators[index % 6]
        assert instance.orchestrator_address == orchestrator["address"]
        assert instance.profile == orchestrator["profile"] == PROFILES[index % len(PROFILES)]
        truth = fleet.handle(index).truth()
        assert (truth["orchestrator_url"], truth["orchestrator_address"], truth["profile"]) == (
            orchestrator["orch_uri"], orchestrator["address"], orchestrator["profile"],
        )


def test_pinned_instance_reports_its_orchestrator_gpu_and_connects_through_it(fleet: FleetHandle) -> None:
    instance = fleet.instances[0]
    capability = _get(f"{fleet.discovery_url}/getNetworkCapabilities")["orchestrators"][0]
    total_mb = capability["hardware"][0]["gpu_info"]["0"]["memory_total"] / 1024 / 1024
    scope = ScopeHttp(instance.url)
    try:
        assert scope.http.get("/api/v1/hardware/info").json()["vram_gb"] == round(total_mb / 1024, 2)
        scope.http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})
        status = wait_until(lambda: (s := scope.http.get("/api/v1/cloud/status").json())["connected"] and s)
        # Scope's status does not name the orchestrator; its log line does.
        assert "orchestrator_url" not in status and status["stats"] is None
        assert any(f"via {instance.orchestrator_url}" in line for line in scope.log_lines())
    finally:
        scope.http.post("/api/v1/cloud/disconnect")
        scope.close()


def test_fleets_are_deterministic_per_seed(fleet: FleetHandle) -> None:
    with running_fleet(instances=1, orchestrators=6, profiles=PROFILES, seed=11) as again:
        assert [o["address"] for o in again.orchestrators] == [o["address"] for o in fleet.orchestrators]
    with running_fleet(instances=1, orchestrators=6, profiles=PROFILES, seed=12) as other:
        assert not {o["address"] for o in other.orchestrators} & {o["address"] for o in fleet.orchestrators}


def test_fleet_overrides_apply_where_the_field_exists() -> None:
    with running_fleet(instances=2, orchestrators=2, profiles=["healthy", "stall"], overrides={"fault_after_s": 0.7}) as f:
        assert f.handle(1).truth()["profile_fields"]["fault_after_s"] == 0.7
        assert "fault_after_s" not in f.handle(0).truth()["profile_fields"]
    with pytest.raises(ValueError, match="no profile"):
        with running_fleet(instances=1, orchestrators=1, overrides={"fault_after_s": 1}):
            pass


def test_running_simulator_pins_an_orchestrator_and_stops_despite_a_hung_request() -> None:
    url = "https://orch-9.sim.invalid:8935"
    outcome: list[object] = []
    with running_simulator("hang_http", orchestrator_url=url, overrides={"fault_after_s": 0.0, "load_s": 0.01}) as sim:
        truth = sim.truth()
        assert truth["orchestrator_url"] == url and ADDRESS.match(truth["orchestrator_address"])
        scope = ScopeHttp(sim.url)
        scope.load("longlive")
        scope.start(pipeline_id="longlive")
        waiter = threading.Thread(target=lambda: outcome.append(_try_get(f"{sim.url}/api/v1/session/metrics")))
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive()  # no answer while the server runs
        scope.close()
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 5.0  # leaving the block did not wait for the hung request
    waiter.join(5.0)
    assert not waiter.is_alive() and outcome


def _try_get(url: str) -> object:
    try:
        return httpx.get(url, timeout=30.0).status_code
    except httpx.HTTPError as exc:
        return exc
