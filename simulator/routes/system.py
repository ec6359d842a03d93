"""Health, hardware, pipeline schemas, logs and assets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from simulator import catalog
from simulator.assets import AssetError
from simulator.instance import ScopeInstance
from simulator.routes.deps import instance_of

SCOPE_VERSION = "0.2.4"
GIT_COMMIT = "5c0pe5im"

# What a Linux host without the NDI SDK answers, as real Scope 0.2.4 did.
VIDEO_IO_UNAVAILABLE = {
    "spout": {
        "available": False, "reason": "Spout is Windows-only",
        "install_hint": "Run Scope on Windows to use Spout sources and sinks.",
    },
    "ndi": {
        "available": False, "reason": "NDI SDK not found",
        "install_hint": "Install the NDI SDK from https://ndi.video/tools and restart Scope.",
    },
    "syphon": {
        "available": False, "reason": "Syphon is macOS-only",
        "install_hint": "Run Scope on macOS to use Syphon sources and sinks.",
    },
}

router = APIRouter()


@router.get("/health")
async def health(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Scope's health answer (note: not under /api/v1)."""
    return {
        "status": "healthy",
        "timestamp": datetime.now().isoformat(),
        "server_start_time": instance.server_start_wall,
        "version": SCOPE_VERSION,
        "git_commit": GIT_COMMIT,
    }


@router.get("/api/v1/hardware/info")
async def hardware_info(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """VRAM of the GPU (null without one) and the local video I/O integrations."""
    profile = instance.profile
    vram_gb = round(profile.vram_total_mb / 1024, 2) if profile.has_gpu else None
    return {"vram_gb": vram_gb, **VIDEO_IO_UNAVAILABLE}


@router.get("/api/v1/pipelines/schemas")
async def pipeline_schemas(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Every registered pipeline's schema and metadata (no GPU: only the weight-free ones)."""
    return catalog.schemas_payload(has_gpu=instance.profile.has_gpu)


@router.get("/api/v1/logs/tail")
async def logs_tail(
    lines: int = Query(200, ge=1, le=1000),
    since_offset: int | None = Query(None, ge=0),
    instance: ScopeInstance = Depends(instance_of),
) -> dict:
    """The last `lines` log lines (only those after `since_offset`) and the offset to pass next."""
    instance.advance()
    tail, offset = instance.logs.tail(lines, since_offset)
    return {"lines": tail, "offset": offset}


@router.post("/api/v1/assets")
async def upload_asset(request: Request, filename: str = Query(...), instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Store the raw request body as an asset; 400 on a bad file type."""
    content = await request.body()
    try:
        asset = instance.assets.save(filename, content)
    except AssetError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    instance.logs.write("scope.server.app", "INFO", f"upload_asset: Uploaded {asset['type']} file: {asset['path']}")
    return asset


@router.get("/api/v1/assets")
async def list_assets(
    type: Literal["image", "video"] | None = Query(None), instance: ScopeInstance = Depends(instance_of)  # noqa: A002 - Scope's name
) -> dict:
    """Every asset, most recent first."""
    return {"assets": instance.assets.list(type)}
