"""Pipeline load and status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from simulator.instance import ScopeInstance
from simulator.profiles import FaultKind, NoCapacityProfile
from simulator.routes.deps import instance_of
from simulator.schemas import PipelineLoadRequest

router = APIRouter(prefix="/api/v1/pipeline")


@router.post("/load")
async def load(body: PipelineLoadRequest, instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Start loading in the background; unknown ids are accepted here and fail later."""
    instance.advance()
    pipeline_ids = body.requested_ids()
    if not pipeline_ids:
        raise HTTPException(status_code=400, detail="Either 'pipelines' or 'pipeline_ids' must be provided")
    profile = instance.profile
    if isinstance(profile, NoCapacityProfile):
        instance.truth_log.instant_fault(FaultKind.NO_CAPACITY, instance.clock.wall(instance.clock.now()))
        raise HTTPException(status_code=503, detail=profile.load_busy_detail)
    load_params = body.load_params
    if load_params is None and body.pipelines:
        load_params = next((entry.load_params for entry in body.pipelines if entry.load_params), None)
    instance.pipelines.request_load(pipeline_ids, load_params, profile)
    return {"message": "Pipeline loading initiated successfully"}


@router.get("/status")
async def status(instance: ScopeInstance = Depends(instance_of)) -> dict:
    """Load state; an `error` is reported once, then `not_loaded`."""
    return instance.pipelines.status(instance.advance())
