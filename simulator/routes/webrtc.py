"""WebRTC offer, trickle ICE and close, as Scope 0.2.4 answers them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from simulator.rtc_session import RtcTags
from simulator.webrtc import WebRtcHub

router = APIRouter(prefix="/api/v1/webrtc")


class OfferRequest(BaseModel):
    """Body of `POST /api/v1/webrtc/offer` (422 without `sdp` or `type`)."""

    model_config = ConfigDict(extra="allow")
    sdp: str
    type: str
    initialParameters: dict[str, Any] | None = None  # noqa: N815 - Scope's name
    user_id: str | None = None
    connection_id: str | None = None
    connection_info: dict[str, Any] | None = None


class IceCandidate(BaseModel):
    """One trickled candidate."""

    model_config = ConfigDict(extra="allow")
    candidate: str
    sdpMid: str | None = None  # noqa: N815 - Scope's name
    sdpMLineIndex: int | None = None  # noqa: N815 - Scope's name


class IceCandidateRequest(BaseModel):
    """Body of `PATCH /api/v1/webrtc/offer/{id}`."""

    candidates: list[IceCandidate]


def hub_of(request: Request) -> WebRtcHub:
    """The WebRTC manager of this request's server."""
    return request.app.state.webrtc


@router.post("/offer")
async def offer(body: OfferRequest, request: Request) -> dict:
    """Create a session for the offer and answer it."""
    tags = RtcTags(body.connection_id, body.user_id, body.connection_info)
    return await hub_of(request).offer(body.sdp, body.type, body.initialParameters, tags)


@router.patch("/offer/{session_id}", status_code=204)
async def add_ice_candidates(session_id: str, body: IceCandidateRequest, request: Request) -> Response:
    """Add ICE candidates; 404 for an unknown session or a bad candidate."""
    await hub_of(request).add_candidates(session_id, [c.model_dump() for c in body.candidates])
    return Response(status_code=204)


@router.delete("/offer/{session_id}", status_code=204)
async def close(session_id: str, request: Request) -> Response:
    """Stop and close the session (204 also when it is already gone)."""
    await hub_of(request).delete(session_id)
    return Response(status_code=204)
