"""Run simulated Scope servers inside a test: uvicorn in a background thread, loopback only.

    with running_simulator("stall", overrides={"fault_after_s": 1.0}) as sim:
        httpx.get(f"{sim.url}/health")
        sim.truth()
    with running_fleet(instances=3, orchestrators=6, profiles=["healthy", "stall"]) as fleet:
        fleet.discovery_url, fleet.instances, fleet.orchestrators
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from simulator.fleet import derive_address, normalize_uri
from simulator.launch import Launch, instance_binding, launch_fleet
from simulator.server import BackgroundServers

LOOPBACK = "127.0.0.1"
CONTROL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SimInstance:
    """One running simulated Scope server."""

    url: str
    orchestrator_address: str | None
    orchestrator_url: str | None
    profile: str


class SimHandle:
    """A running simulator: its URL and its /_sim/ controls."""

    def __init__(self, url: str) -> None:
        self.url = url

    def truth(self) -> dict:
        """GET /_sim/truth."""
        return self._call("GET", "/_sim/truth")

    def set_profile(self, profile: str, overrides: dict | None = None) -> dict:
        """POST /_sim/profile; ValueError when the simulator refuses the profile or an override."""
        return self._call("POST", "/_sim/profile", {"profile": profile, "overrides": overrides or {}})

    def reset(self) -> dict:
        """POST /_sim/reset: forget sessions, loads, connection and truth."""
        return self._call("POST", "/_sim/reset")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=CONTROL_TIMEOUT_S)
        if response.status_code == 400:
            raise ValueError(response.json().get("detail"))
        response.raise_for_status()
        return response.json()


@dataclass(frozen=True)
class FleetHandle:
    """A running fleet: discovery URL, instances and orchestrators."""

    discovery_url: str
    instances: list[SimInstance]
    orchestrators: list[dict]

    def handle(self, index: int) -> SimHandle:
        """Controls of instance `index`."""
        return SimHandle(self.instances[index].url)


@contextmanager
def _serving(launch: Launch) -> Iterator[None]:
    servers = BackgroundServers(launch.bindings)
    try:
        servers.start()
        yield
    finally:
        servers.stop()
        launch.cleanup()


@contextmanager
def running_simulator(
    profile: str = "healthy", *, orchestrator_url: str | None = None, overrides: dict | None = None, seed: int = 0
) -> Iterator[SimHandle]:
    """One simulated Scope server on a free loopback port for the duration of the block."""
    launch = Launch()
    address = derive_address(normalize_uri(orchestrator_url)) if orchestrator_url else None
    try:
        binding = instance_binding(
            launch, profile, overrides or {}, host=LOOPBACK, port=0, seed=seed,
            orchestrator_url=orchestrator_url, orchestrator_address=address,
        )
    except BaseException:
        launch.cleanup()
        raise
    launch.instances.append((binding, None))
    with _serving(launch):
        yield SimHandle(binding.url)


@contextmanager
def running_fleet(
    instances: int = 3, orchestrators: int = 6, profiles: Sequence[str] | None = None, *, seed: int = 0,
    overrides: dict | None = None,
) -> Iterator[FleetHandle]:
    """A discovery server and `instances` Scope servers pinned to `orchestrators` orchestrators."""
    launch = launch_fleet(
        instances=instances, orchestrators=orchestrators, profiles=list(profiles or ["healthy"]), seed=seed,
        host=LOOPBACK, base_port=0, overrides=overrides,
    )
    handle = FleetHandle(
        launch.discovery.url if launch.discovery else "",
        [SimInstance(b.url, o.address, o.orch_uri, o.profile) for b, o in launch.instances if o is not None],
        [o.summary() for o in launch.orchestrators],
    )
    with _serving(launch):
        yield handle
