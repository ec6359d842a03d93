"""Headless session routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from simulator.headless import Headless, HeadlessError
from simulator.media import TS_SEGMENT_S, ts_segment
from simulator.routes.deps import headless_of
from simulator.schemas import ParametersUpdate, SessionStartRequest

router = APIRouter(prefix="/api/v1/session")


@router.post("/start")
async def start(body: SessionStartRequest, headless: Headless = Depends(headless_of)) -> dict:
    """Start a session (replacing, without stopping, any running one)."""
    return await headless.start(body)


@router.post("/stop")
async def stop(headless: Headless = Depends(headless_of)) -> dict:
    """Stop the session; 404 when none runs."""
    headless.stop()
    return {"status": "ok", "message": "Headless session stopped"}


@router.get("/frame")
async def frame(
    quality: int = Query(85, ge=1, le=100),
    sink_node_id: str | None = Query(None),
    headless: Headless = Depends(headless_of),
) -> Response:
    """The latest output frame as JPEG; 404 before the first one."""
    return Response(headless.frame(quality=quality, sink_node_id=sink_node_id), media_type="image/jpeg")


@router.get("/metrics")
async def metrics(headless: Headless = Depends(headless_of)) -> JSONResponse:
    """Frame counters and GPU memory."""
    return JSONResponse(headless.metrics())


@router.post("/parameters")
async def update_parameters(body: ParametersUpdate, headless: Headless = Depends(headless_of)) -> dict:
    """Merge parameters; `prompts` switches the prompt; 200 with what was applied, session or not."""
    return {"status": "ok", "applied_parameters": headless.update_parameters(body)}


@router.get("/parameters")
async def parameters(headless: Headless = Depends(headless_of)) -> dict:
    """The session's current parameters (`{}` without a session)."""
    return headless.parameters()


@router.get("/output.ts")
async def output_ts(headless: Headless = Depends(headless_of)) -> StreamingResponse:
    """An endless MPEG-TS stream (H.264, 30 fps) while the session runs."""
    headless.instance.advance()
    if headless.instance.session is None:
        raise HeadlessError(404, "No active headless session")
    return StreamingResponse(_ts_stream(headless), media_type="video/mp2t")


async def _ts_stream(headless: Headless) -> AsyncIterator[bytes]:
    segment = await asyncio.to_thread(ts_segment)
    session = headless.instance.session
    # One pre-encoded second per second of wall time: cheap, and it ends with the session or server.
    while not headless.instance.stopping and headless.instance.session is session:
        yield segment
        await asyncio.sleep(TS_SEGMENT_S)
        headless.instance.advance()
