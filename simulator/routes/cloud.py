"""Cloud (Livepeer) connect, status and disconnect."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from simulator.cloud import CredentialsMissing
from simulator.instance import ScopeInstance
from simulator.routes.deps import instance_of
from simulator.schemas import CloudConnectRequest

router = APIRouter(prefix="/api/v1/cloud")


@router.post("/connect")
async def connect(body: CloudConnectRequest | None = None, instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Begin connecting in the background; Scope wraps the missing-credentials 400 into a 500."""
    body = body or CloudConnectRequest()
    try:
        return instance.cloud.connect(body.app_id, body.api_key, body.user_id, instance.profile)
    except CredentialsMissing as exc:
        raise HTTPException(status_code=500, detail=str(exc)) from None


@router.get("/status")
async def status(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """The connection's state."""
    return instance.cloud.status(instance.advance())


@router.post("/disconnect")
async def disconnect(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Drop the connection."""
    instance.advance()
    return instance.cloud.disconnect()
