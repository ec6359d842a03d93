"""The fleet's discovery server: the three orchestrator sources a harness may read.

- `GET /getNetworkCapabilities`: go-livepeer gateway style, with per-model warm/capacity/
  capacityInUse for the live-video-to-video capability.
- `GET /registeredOrchestrators`: `[{"Address","ServiceURI","Active",...}]`.
- `GET /orchestrators`: a plain list `[{"id","address","uri","region"}]`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from simulator.fleet import Orchestrator

LIVE_VIDEO_TO_VIDEO = 35  # go-livepeer's capability number
PIPELINE = "live-video-to-video"
SCOPE_MODEL = "scope"
OTHER_MODEL = "streamdiffusion"
RUNNER_VERSION = "0.2.4"


def capabilities_entry(orchestrator: Orchestrator) -> dict:
    """One orchestrator of `/getNetworkCapabilities`."""
    model = SCOPE_MODEL if orchestrator.offers_scope else OTHER_MODEL
    in_use = orchestrator.capacity_in_use
    constraint = {"warm": True, "capacity": orchestrator.capacity, "capacityInUse": in_use, "runnerVersion": RUNNER_VERSION}
    return {
        "address": orchestrator.address,
        "local_address": orchestrator.address,
        "orch_uri": orchestrator.orch_uri,
        "capabilities": {
            "bitstring": [1 << LIVE_VIDEO_TO_VIDEO],
            "mandatories": [0],
            "capacities": {str(LIVE_VIDEO_TO_VIDEO): orchestrator.capacity + in_use},
            "version": "0.8.8",
            "constraints": {"minVersion": "", "PerCapability": {str(LIVE_VIDEO_TO_VIDEO): {"models": {model: constraint}}}},
        },
        "capabilities_prices": [{"pricePerUnit": 2080, "pixelsPerUnit": 1, "capability": LIVE_VIDEO_TO_VIDEO, "constraint": model}],
        "hardware": [{"pipeline": PIPELINE, "model_id": model, "gpu_info": {"0": _gpu_info(orchestrator)}}],
    }


def _gpu_info(orchestrator: Orchestrator) -> dict:
    total_bytes = orchestrator.vram_total_mb * 1024 * 1024
    major, minor = orchestrator.compute_capability
    return {
        "id": f"GPU-{orchestrator.address[2:10]}-{orchestrator.address[10:14]}",
        "name": orchestrator.gpu_name,
        "major": major,
        "minor": minor,
        "memory_free": total_bytes // 4 if orchestrator.capacity_in_use else total_bytes * 9 // 10,
        "memory_total": total_bytes,
    }


def registered_entry(orchestrator: Orchestrator) -> dict:
    """One orchestrator of `/registeredOrchestrators` (go-livepeer's field names)."""
    return {
        "Address": orchestrator.address,
        "ServiceURI": orchestrator.orch_uri,
        "LastRewardRound": 4200 + orchestrator.index,
        "RewardCut": 50000,
        "FeeShare": 500000,
        "DelegatedStake": str(10**21 * (orchestrator.index + 1)),
        "ActivationRound": 1000 + orchestrator.index,
        "DeactivationRound": 0,
        "Active": True,
        "Status": "Registered",
    }


def plain_entry(orchestrator: Orchestrator) -> dict:
    """One orchestrator of the plain JSON list."""
    return {
        "id": f"orch-{orchestrator.index}",
        "address": orchestrator.address,
        "uri": orchestrator.orch_uri,
        "region": orchestrator.region,
    }


def create_discovery_app(orchestrators: Sequence[Orchestrator]) -> FastAPI:
    """The discovery server for a fleet's orchestrators."""
    app = FastAPI(title="Livepeer discovery (simulated)", docs_url=None, redoc_url=None, openapi_url=None)
    capabilities = {"orchestrators": [capabilities_entry(o) for o in orchestrators]}
    registered = [registered_entry(o) for o in orchestrators]
    plain = [plain_entry(o) for o in orchestrators]

    @app.get("/getNetworkCapabilities")
    async def network_capabilities() -> dict:
        """Every orchestrator's capabilities, capacity and hardware."""
        return capabilities

    @app.get("/registeredOrchestrators")
    async def registered_orchestrators() -> list:
        """The on-chain registry view."""
        return registered

    @app.get("/orchestrators")
    async def plain_list() -> list:
        """A plain list with regions."""
        return plain

    return app
