"""Async client for the Scope HTTP API (scope-api.md): one method per route, typed answers.

=====================================  =========================================
route                                  method
=====================================  =========================================
GET  /health                           ``health()``
GET  /api/v1/hardware/info             ``hardware_info()``
GET  /api/v1/pipelines/schemas         ``pipeline_schemas()``
POST /api/v1/cloud/connect             ``cloud_connect()``
GET  /api/v1/cloud/status              ``cloud_status()``
POST /api/v1/cloud/disconnect          ``cloud_disconnect()``
POST /api/v1/pipeline/load             ``load_pipelines()``
GET  /api/v1/pipeline/status           ``pipeline_status()``, polled by ``wait_until_loaded()``
POST /api/v1/session/start             ``start_session()``
POST /api/v1/session/stop              ``stop_session()``
GET  /api/v1/session/frame             ``get_frame()``
GET  /api/v1/session/metrics           ``session_metrics()``
POST /api/v1/session/parameters        ``update_parameters()``, ``switch_prompt()``
GET  /api/v1/session/parameters        ``get_parameters()``
POST /api/v1/assets?filename=          ``upload_asset()``
GET  /api/v1/assets                    ``list_assets()``
GET  /api/v1/logs/tail                 ``logs_tail()``
GET  /api/v1/session/output.ts         ``read_output_ts()``
=====================================  =========================================

Every call has a deadline and a cap on the size of its answer, read while streaming.
httpx exceptions are translated in one place (``ScopeClient._exchange``) into the
harness's tree (errors/); unexpected statuses by ``error_for_status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from errors import (
    BadResponse, Category, ConfigError, Phase, PhaseFailed, PhaseTimeout, ResponseTooLarge,
    ScopeError, ScopeTimeout, ScopeUnreachable,
)
from tasks.scope.models import (
    DEFAULT_LIMITS, DEFAULT_TIMEOUTS, AppliedParameters, Asset, AssetList, CloudStatus, GpuStats,
    HardwareInfo, HeadlessStats, Health, LogTail, PipelineSchema, PipelineSchemas, PipelineState,
    PipelineStatus, Prompt, ResponseLimits, ScopeTimeouts, SessionMetrics, SessionParameters,
    SessionStarted, detail_of, error_for_status, load_failure, load_failure_reason, redact,
    route_missing, stale_load_failure, unexpected_load,
)
from tasks.scope.models import WebRTCAnswer, offer_error

__all__ = [
    "DEFAULT_LIMITS", "DEFAULT_TIMEOUTS", "Asset", "CloudStatus", "GpuStats", "HardwareInfo",
    "HeadlessStats", "Health", "LogTail", "PipelineSchema", "PipelineStatus", "Prompt",
    "ResponseLimits", "ScopeClient", "ScopeTimeouts", "SessionMetrics", "SessionStarted",
]

_log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class _Reply:
    """One answer read within its caps: status, content type and body."""

    route: str
    status: int
    content_type: str
    body: bytes


def _transport_error(exc: httpx.HTTPError, route: str) -> ScopeError:
    """The harness exception for an httpx failure that produced no HTTP answer."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, httpx.TimeoutException):
        return ScopeTimeout(f"no answer in time ({text})", route=route)
    if isinstance(exc, httpx.DecodingError):
        return BadResponse(f"undecodable body ({text})", route=route)
    if isinstance(exc, httpx.TransportError):
        return ScopeUnreachable(f"transport failed ({text})", route=route)
    return ScopeError(text, route=route, category=Category.HARNESS)


async def _read_up_to(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether the body went on past them."""
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) > limit:
            return bytes(buffer[:limit]), True
    return bytes(buffer), False


async def _read_capped(response: httpx.Response, cap: int, route: str) -> bytes:
    """The whole body, or ResponseTooLarge as soon as it is known to exceed `cap`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ResponseTooLarge(
            f"answer declares {declared} bytes, cap {cap}", route=route, status=response.status_code
        )
    body, overflowed = await _read_up_to(response, cap)
    if overflowed:
        raise ResponseTooLarge(
            f"answer exceeds the cap of {cap} bytes", route=route, status=response.status_code
        )
    return body


def _parse(model: type[M], data: Any, reply: _Reply) -> M:
    """`data` validated as `model`, or BadResponse naming the fields (never their values)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(body)'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        message = f"answer is not a {model.__name__}: {problems}"
        raise BadResponse(
            message, route=reply.route, status=reply.status, detail=problems
        ) from None


class ScopeClient:
    """Async client of one Scope instance; use as `async with ScopeClient(url) as scope:`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: ScopeTimeouts = DEFAULT_TIMEOUTS,
        limits: ResponseLimits = DEFAULT_LIMITS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("scope client", "base_url", f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.limits = limits
        self._secrets: list[SecretStr] = []
        # identity: a compressed body could inflate far past its cap in one decoded chunk.
        # trust_env=False: never route loopback calls through a proxy from the environment.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"accept-encoding": "identity"},
            follow_redirects=False,
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"ScopeClient({self.base_url!r})"

    async def __aenter__(self) -> ScopeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- the one place httpx is called ------------------------------------------------

    async def _exchange(
        self, method: str, path: str, *, budget_s: float, cap: int, truncate: bool = False,
        **request: Any,
    ) -> _Reply:
        """Send one request and read its answer within `budget_s` and `cap` bytes."""
        route = f"{method} {path}"
        timeout = httpx.Timeout(budget_s, connect=self.timeouts.connect_s)
        started = time.perf_counter()
        try:
            # httpx's timeouts bound each read; the deadline bounds a body that trickles in.
            async with asyncio.timeout(self.timeouts.connect_s + budget_s):
                async with self._http.stream(method, path, timeout=timeout, **request) as response:
                    body = await self._read_body(response, route, cap, truncate)
        except httpx.HTTPError as exc:
            # httpx's texts hold the URL at most; the api key only ever travels in a body.
            _log.debug("%s failed: %s", route, type(exc).__name__)
            raise _transport_error(exc, route) from exc
        except TimeoutError:
            raise ScopeTimeout(
                f"no complete answer within {self.timeouts.connect_s + budget_s:.1f} s", route=route
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        _log.debug("%s -> %d (%d bytes, %.1f ms)", route, status, len(body), elapsed_ms)
        return _Reply(route, status, response.headers.get("content-type", ""), body)

    async def _read_body(
        self, response: httpx.Response, route: str, cap: int, truncate: bool
    ) -> bytes:
        """The answer's body: error bodies and `truncate` reads are cut at their cap."""
        if response.status_code >= 400:
            return (await _read_up_to(response, self.limits.json_bytes))[0]
        if truncate:
            return (await _read_up_to(response, cap))[0]
        return await _read_capped(response, cap, route)

    @staticmethod
    def _nothing_there(reply: _Reply) -> bool:
        """A 404 that means "no session / no frame yet", not a route this server lacks."""
        return reply.status == 404 and not route_missing(reply.status, reply.content_type, detail_of(reply.body))

    def _ended(self, reply: _Reply) -> bool:
        """An ending call's answer: True when it ended something, False when nothing was there."""
        if self._nothing_there(reply):
            return False
        if not 200 <= reply.status < 300:
            raise self._status_error(reply)
        return True

    def _status_error(self, reply: _Reply) -> ScopeError:
        """The exception for an answer whose status is not a success, secrets redacted."""
        detail = redact(detail_of(reply.body), self._secrets)
        return error_for_status(reply.route, reply.status, detail)

    async def _call(self, method: str, path: str, **request: Any) -> tuple[_Reply, Any]:
        """A JSON call: the 2xx answer and its decoded body, else the mapped exception."""
        request.setdefault("budget_s", self.timeouts.read_s)
        reply = await self._exchange(method, path, cap=self.limits.json_bytes, **request)
        if not 200 <= reply.status < 300:
            raise self._status_error(reply)
        try:
            return reply, json.loads(reply.body)
        except ValueError:
            raise BadResponse(
                f"answer is not JSON ({reply.content_type or 'no content type'})",
                route=reply.route,
                status=reply.status,
            ) from None

    async def _call_model(self, model: type[M], method: str, path: str, **request: Any) -> M:
        """A JSON call whose answer is validated as `model`."""
        reply, data = await self._call(method, path, **request)
        return _parse(model, data, reply)

    # -- health and capabilities ------------------------------------------------------

    async def health(self) -> Health:
        """GET /health (not under /api/v1)."""
        return await self._call_model(Health, "GET", "/health")

    async def hardware_info(self) -> HardwareInfo:
        """GET /api/v1/hardware/info."""
        return await self._call_model(HardwareInfo, "GET", "/api/v1/hardware/info")

    async def pipeline_schemas(self) -> dict[str, PipelineSchema]:
        """GET /api/v1/pipelines/schemas, keyed by pipeline id."""
        answer = await self._call_model(PipelineSchemas, "GET", "/api/v1/pipelines/schemas")
        return answer.pipelines

    # -- cloud --------------------------------------------------------------------------

    async def cloud_connect(
        self,
        *,
        app_id: str | None = None,
        api_key: SecretStr | None = None,
        user_id: str | None = None,
    ) -> CloudStatus:
        """POST /api/v1/cloud/connect; CloudCredentialsMissing when Scope has none at all."""
        body: dict[str, Any] = {"app_id": app_id, "user_id": user_id}
        body = {key: value for key, value in body.items() if value is not None}
        if api_key is not None:
            api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(str(api_key))
            if api_key not in self._secrets:
                self._secrets.append(api_key)
            body["api_key"] = api_key.get_secret_value()
        return await self._call_model(CloudStatus, "POST", "/api/v1/cloud/connect", json=body)

    async def cloud_status(self) -> CloudStatus:
        """GET /api/v1/cloud/status."""
        return await self._call_model(CloudStatus, "GET", "/api/v1/cloud/status")

    async def cloud_disconnect(self) -> CloudStatus:
        """POST /api/v1/cloud/disconnect."""
        return await self._call_model(CloudStatus, "POST", "/api/v1/cloud/disconnect")

    # -- pipelines ----------------------------------------------------------------------

    async def load_pipelines(
        self,
        pipeline_ids: list[str] | None = None,
        *,
        pipelines: list[dict[str, Any]] | None = None,
        load_params: dict[str, Any] | None = None,
    ) -> None:
        """POST /api/v1/pipeline/load; loading goes on in the background (wait_until_loaded)."""
        body = {"pipeline_ids": pipeline_ids, "pipelines": pipelines, "load_params": load_params}
        body = {key: value for key, value in body.items() if value is not None}
        await self._call("POST", "/api/v1/pipeline/load", json=body)

    async def pipeline_status(self) -> PipelineStatus:
        """GET /api/v1/pipeline/status."""
        return await self._call_model(PipelineStatus, "GET", "/api/v1/pipeline/status")

    async def wait_until_loaded(
        self, *, timeout_s: float, poll_s: float = 0.2, not_loaded_grace_s: float = 10.0,
        expected_ids: Sequence[str] | None = None,
    ) -> PipelineStatus:
        """Poll until `loaded` with `expected_ids`; PhaseFailed(runner, load) if the load failed, else PhaseTimeout.

        `expected_ids` are the ids the load named (node ids for the `pipelines` form); a
        `loaded` naming others is a left-over of an earlier load. None: any `loaded` will do.
        """
        started = time.monotonic()
        seen_loading = False
        while True:
            status = await self.pipeline_status()
            waited_s = time.monotonic() - started
            unexpected = unexpected_load(status, expected_ids)
            if status.status == PipelineState.LOADED and unexpected is None:
                return status
            seen_loading = seen_loading or status.status == PipelineState.LOADING
            failure = load_failure(status.status, seen_loading, waited_s, not_loaded_grace_s)
            failure = failure or stale_load_failure(unexpected, seen_loading, waited_s, not_loaded_grace_s)
            if failure:
                raise await self._load_failed(failure)
            if waited_s >= timeout_s:
                stage = f" (stage {status.loading_stage})" if status.loading_stage else ""
                stage += f" ({unexpected})" if unexpected else ""
                raise PhaseTimeout(
                    f"pipeline not loaded within {timeout_s:.1f} s: status {status.status}{stage}",
                    category=Category.RUNNER,
                    phase=Phase.LOAD,
                )
            await asyncio.sleep(min(poll_s, timeout_s - waited_s))

    async def _load_failed(self, how: str) -> PhaseFailed:
        """PhaseFailed(runner, load) whose message quotes the cause found in the log tail."""
        try:
            reason = load_failure_reason((await self.logs_tail(lines=200)).lines)
        except ScopeError as exc:
            reason = f"log tail unreadable: {exc}"
        reason = redact(reason, self._secrets) or "no reason found in the log tail"
        return PhaseFailed(
            f"pipeline load failed ({how}): {reason}", category=Category.RUNNER, phase=Phase.LOAD
        )

    # -- headless session ---------------------------------------------------------------

    async def start_session(
        self,
        *,
        pipeline_id: str | None = None,
        input_mode: str = "text",
        prompts: list[Prompt] | None = None,
        input_source: dict[str, Any] | None = None,
        graph: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
        node_parameters: dict[str, Any] | None = None,
    ) -> SessionStarted:
        """POST /api/v1/session/start; a running session is replaced, not stopped (stop first)."""
        optional = {
            "pipeline_id": pipeline_id,
            "input_source": input_source,
            "graph": graph,
            "parameters": parameters,
            "node_parameters": node_parameters,
        }
        body: dict[str, Any] = {"input_mode": input_mode}
        body.update({key: value for key, value in optional.items() if value is not None})
        if prompts is not None:
            body["prompts"] = [Prompt.model_validate(prompt).model_dump() for prompt in prompts]
        return await self._call_model(SessionStarted, "POST", "/api/v1/session/start", json=body)

    async def stop_session(self) -> bool:
        """POST /api/v1/session/stop; False when there was no session to stop."""
        reply = await self._exchange(
            "POST", "/api/v1/session/stop",
            budget_s=self.timeouts.read_s, cap=self.limits.json_bytes,
        )
        return self._ended(reply)

    async def get_frame(
        self, *, quality: int = 85, sink_node_id: str | None = None
    ) -> bytes | None:
        """GET /api/v1/session/frame: the latest JPEG, or None when there is none yet."""
        params: dict[str, Any] = {"quality": quality}
        if sink_node_id is not None:
            params["sink_node_id"] = sink_node_id
        reply = await self._exchange(
            "GET", "/api/v1/session/frame", budget_s=self.timeouts.frame_s,
            cap=self.limits.frame_bytes, params=params,
        )
        if self._nothing_there(reply):
            return None
        if not 200 <= reply.status < 300:
            raise self._status_error(reply)
        if not reply.content_type.startswith("image/"):
            raise BadResponse(
                f"frame has content type {reply.content_type or 'none'}",
                route=reply.route, status=reply.status,
            )
        return reply.body

    async def session_metrics(self) -> SessionMetrics:
        """GET /api/v1/session/metrics."""
        return await self._call_model(SessionMetrics, "GET", "/api/v1/session/metrics")

    async def update_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        """POST /api/v1/session/parameters (prompts, noise_scale, any extra key): what Scope applied.

        Scope answers 200 even when no session runs: the parameters then reach nothing.
        """
        answer = await self._call_model(AppliedParameters, "POST", "/api/v1/session/parameters", json=params)
        return answer.applied_parameters

    async def switch_prompt(self, text: str, weight: float = 1.0) -> None:
        """Replace the session's prompts by one prompt."""
        await self.update_parameters({"prompts": [Prompt(text=text, weight=weight).model_dump()]})

    async def get_parameters(self) -> dict[str, Any]:
        """GET /api/v1/session/parameters: the `parameters` object."""
        reply, data = await self._call("GET", "/api/v1/session/parameters")
        return _parse(SessionParameters, data, reply).parameters

    async def read_output_ts(self, *, max_bytes: int) -> bytes:
        """The first `max_bytes` of the endless MPEG-TS output; then the connection is closed."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        reply = await self._exchange(
            "GET", "/api/v1/session/output.ts", budget_s=self.timeouts.stream_s,
            cap=max_bytes, truncate=True,
        )
        if not 200 <= reply.status < 300:
            raise self._status_error(reply)
        return reply.body

    # -- assets and logs ----------------------------------------------------------------

    async def upload_asset(self, filename: str, data: bytes) -> Asset:
        """POST /api/v1/assets?filename=: the stored asset; its `path` is on the Scope host."""
        return await self._call_model(
            Asset, "POST", "/api/v1/assets", params={"filename": filename}, content=data,
            headers={"content-type": "application/octet-stream"}, budget_s=self.timeouts.upload_s,
        )

    async def list_assets(self) -> list[Asset]:
        """GET /api/v1/assets (a list, or an object with an `assets` list)."""
        reply, data = await self._call("GET", "/api/v1/assets")
        if isinstance(data, dict):
            data = data.get("assets")
        return _parse(AssetList, {"assets": data}, reply).assets

    async def logs_tail(self, *, lines: int = 200, since_offset: int | None = None) -> LogTail:
        """GET /api/v1/logs/tail (lines 1-1000); pass `.offset` back to read only new lines."""
        params: dict[str, Any] = {"lines": lines}
        if since_offset is not None:
            params["since_offset"] = since_offset
        return await self._call_model(LogTail, "GET", "/api/v1/logs/tail", params=params)

    # -- WebRTC session -----------------------------------------------------------------

    async def webrtc_offer(self, body: dict[str, Any]) -> WebRTCAnswer:
        """POST /api/v1/webrtc/offer: the answer and `session_id`; 400 "Pipeline not loaded" is runner."""
        reply = await self._exchange(
            "POST", "/api/v1/webrtc/offer", budget_s=self.timeouts.read_s,
            cap=self.limits.json_bytes, json=body,
        )
        if not 200 <= reply.status < 300:
            detail = redact(detail_of(reply.body), self._secrets)
            raise offer_error(reply.route, reply.status, detail)
        try:
            data = json.loads(reply.body)
        except ValueError:
            raise BadResponse("answer is not JSON", route=reply.route, status=reply.status) from None
        return _parse(WebRTCAnswer, data, reply)

    async def webrtc_delete(self, session_id: str) -> bool:
        """DELETE /api/v1/webrtc/offer/{id}: True when ended (204, also on repeat), False on 404."""
        reply = await self._exchange(
            "DELETE", f"/api/v1/webrtc/offer/{quote(session_id, safe='')}",
            budget_s=self.timeouts.read_s, cap=self.limits.json_bytes,
        )
        return self._ended(reply)
