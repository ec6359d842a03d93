"""The ASGI app of one simulated Scope server, with transport-level faults in front of it."""

from __future__ import annotations

import asyncio
import threading
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator.headless import Headless, HeadlessError
from simulator.instance import ScopeInstance
from simulator.profiles import FaultKind
from simulator.routes import cloud, pipeline, session, sim, system, webrtc
from simulator.webrtc import WebRtcError, WebRtcHub

TRANSPORT_KEY = "sim.transport"  # put into each request's scope state by server.ResettableH11Protocol
HANG_POLL_S = 0.05
SIM_PREFIX = "/_sim"
FRONTEND_NOT_BUILT = "Frontend not built"


def create_app(instance: ScopeInstance) -> FaultInjector:
    """The full ASGI app for `instance`: Scope's routes, /_sim/ routes and fault injection."""
    app = FastAPI(title="Scope", version="0.2.4", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.instance = instance
    app.state.webrtc = WebRtcHub(instance)
    app.state.headless = Headless(instance, app.state.webrtc)
    for module in (system, cloud, pipeline, session, webrtc, sim):
        app.include_router(module.router)
    app.add_exception_handler(HeadlessError, _status_error)
    app.add_exception_handler(WebRtcError, _status_error)
    app.add_exception_handler(StarletteHTTPException, _no_such_route)
    _prepare_routes(app)
    return FaultInjector(app, instance)


_ROUTES_LOCK = threading.Lock()


def _prepare_routes(app: FastAPI) -> None:
    """Build FastAPI's lazy per-route state now, one app at a time.

    The routers are module-level, so every simulated instance in a process shares their routes;
    FastAPI fills a route's state on the first request, guarded only per app, and two instances
    serving their first requests from two threads raced on it (pydantic: AttributeError
    `__pydantic_core_schema__`). Built here under one lock, no request ever builds it."""
    with _ROUTES_LOCK:
        for route in app.router.routes:
            for build in ("effective_candidates", "effective_low_priority_routes"):
                method = getattr(route, build, None)
                if callable(method):
                    method()


async def _no_such_route(request: Request, exc: Exception) -> JSONResponse:
    """Scope's answer where no route matches: its frontend catch-all takes every GET, so other methods get 405."""
    assert isinstance(exc, StarletteHTTPException)
    from_router = exc.status_code in (404, 405) and exc.detail == HTTPStatus(exc.status_code).phrase
    if not from_router:
        return await http_exception_handler(request, exc)
    if request.method in ("GET", "HEAD"):
        return JSONResponse({"detail": FRONTEND_NOT_BUILT}, status_code=404)
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"allow": "GET"})


async def _status_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HeadlessError | WebRtcError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


class FaultInjector:
    """ASGI middleware: slow answers, hung requests and reset connections, as the profile says."""

    def __init__(self, app: ASGIApp, instance: ScopeInstance) -> None:
        self.app, self.instance = app, instance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http" or scope["path"].startswith(SIM_PREFIX):
            await self.app(scope, receive, send)
            return
        delay_s = self.instance.http_delay_s()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        fault = self.instance.transport_fault(scope["method"], scope["path"])
        if fault is FaultKind.HANG_HTTP:
            await self._hang(send)
        elif fault is FaultKind.CONN_RESET:
            await self._reset(scope)
        else:
            await self.app(scope, receive, send)

    async def _hang(self, send: Send) -> None:
        # Never answer while the server runs; give up once it shuts down so shutdown is not blocked.
        while not self.instance.stopping:
            await asyncio.sleep(HANG_POLL_S)
        await send({"type": "http.response.start", "status": 503, "headers": [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b""})

    async def _reset(self, scope: Scope) -> None:
        transport = scope.get("state", {}).get(TRANSPORT_KEY)
        if transport is None:
            raise ConnectionResetError("simulated connection reset (no transport to abort)")
        transport.abort()
        await asyncio.sleep(0)  # let the server see the connection is gone before this call returns
