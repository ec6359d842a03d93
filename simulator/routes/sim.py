"""Ground truth and control of the simulation (not part of Scope's API)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from simulator.instance import ScopeInstance
from simulator.profiles import PROFILES, ProfileError, build_profile, own_fields
from simulator.routes.deps import instance_of
from simulator.schemas import ProfileRequest

router = APIRouter(prefix="/_sim")


@router.get("/truth")
async def truth(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """What really happened: sessions, loads, connects, faults."""
    return instance.truth()


@router.post("/profile")
async def set_profile(body: ProfileRequest, instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Switch the active profile (with overrides); 400 names an unknown profile or field."""
    try:
        profile = build_profile(body.profile, body.overrides)
    except ProfileError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    instance.set_profile(profile)
    return {"profile": profile.name, "fields": profile.model_dump(mode="json")}


@router.post("/reset")
async def reset(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Forget sessions, loads, connection and truth; keep the profile."""
    instance.reset()
    return {"status": "ok", "profile": instance.profile.name}


@router.get("/profiles")
async def profiles() -> dict:
    """Every profile and the fields it sets apart from healthy."""
    return {"profiles": {name: own_fields(name) for name in PROFILES}}
