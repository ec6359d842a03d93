"""The Scope client's own logic: error mapping, size caps, secrets, model tolerance.

Cases the simulator does not produce (oversized or trickling bodies, wrong shapes, a 502,
redirects, echoed secrets) run against a tiny loopback server started by the test.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr, ValidationError

from errors import (
    BadResponse,
    Category,
    CloudCredentialsMissing,
    ConfigError,
    NoCapacity,
    Phase,
    PhaseFailed,
    PhaseTimeout,
    ResponseTooLarge,
    ScopeHTTPError,
    ScopeTimeout,
    ScopeUnreachable,
)
from tasks.scope.client import ResponseLimits, ScopeClient, ScopeTimeouts
from tasks.scope.models import (
    CloudStatus,
    PipelineStatus,
    Prompt,
    SessionMetrics,
    detail_of,
    error_for_status,
    failure_line,
    load_failure,
    redact,
)

FAST = ScopeTimeouts(connect_s=1.0, read_s=1.0, frame_s=1.0, upload_s=2.0, stream_s=2.0)
SMALL = ResponseLimits(json_bytes=4096, frame_bytes=8192)
API_KEY = "sk-test-7f3a9c1e55d04b2b"


# -- pure logic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "kind", "category"),
    [
        (503, "Cloud request failed: 503 OrchestratorBusy", NoCapacity, Category.ORCHESTRATOR),
        (503, None, NoCapacity, Category.ORCHESTRATOR),
        (500, "All orchestrators failed (1 tried): OrchestratorBusy", NoCapacity, "orchestrator"),
        (500, "runner said: OrchestratorCapped", NoCapacity, Category.ORCHESTRATOR),
        (400, "Insufficient Capacity on this node", NoCapacity, Category.ORCHESTRATOR),
        (502, "Cloud request failed: connection lost", ScopeHTTPError, Category.ORCHESTRATOR),
        (504, "Gateway Timeout", ScopeHTTPError, Category.ORCHESTRATOR),
        (500, "FrameProcessor failed to start", ScopeHTTPError, Category.RUNNER),
        (507, None, ScopeHTTPError, Category.RUNNER),
        (400, "Neither pipeline_ids nor pipelines given", ScopeHTTPError, Category.PROTOCOL),
        (422, "query.quality: Input should be less than or equal to 100", ScopeHTTPError, "protocol"),
        (302, None, ScopeHTTPError, Category.PROTOCOL),
        (500, "HTTP 400: cloud credentials not configured", CloudCredentialsMissing, "harness"),
    ],
)
def test_error_for_status_maps_status_and_detail(status, detail, kind, category):
    error = error_for_status("POST /api/v1/x", status, detail)
    assert type(error) is kind
    assert error.category == Category(category)
    assert (error.route, error.status, error.detail) == ("POST /api/v1/x", status, detail)
    assert str(status) in str(error) and "POST /api/v1/x" in str(error)
    assert detail is None or detail in str(error)


def test_detail_of_reads_every_error_body_shape():
    assert detail_of(b'{"detail": "No active headless session"}') == "No active headless session"
    validation = {
        "detail": [
            {"loc": ["body", "app_id"], "msg": "must end in /ws", "input": {"api_key": API_KEY}},
            {"loc": ["query", "quality"], "msg": "too big"},
        ]
    }
    summary = detail_of(json.dumps(validation).encode())
    assert summary == "body.app_id: must end in /ws; query.quality: too big"
    assert detail_of(b"<html>Bad Gateway</html>\n") == "<html>Bad Gateway</html>"
    assert detail_of(b"") is None
    assert detail_of(b'{"error": "x"}') == '{"error": "x"}'
    assert len(detail_of(b"x" * 50_000) or "") == 1000


def test_redact_removes_every_secret_value():
    secrets = [SecretStr(API_KEY), SecretStr("")]
    assert redact(f"key={API_KEY}; again {API_KEY}", secrets) == "key=**********; again **********"
    assert redact(None, secrets) is None


def test_failure_line_is_the_last_line_naming_a_failure():
    lines = [
        "INFO loading pipeline longlive",
        "ERROR Failed to load pipeline longlive: checkpoint missing",
        "Traceback (most recent call last):",
        "RuntimeError: CUDA error: out of memory  ",
        "INFO heartbeat",
    ]
    assert failure_line(lines) == "RuntimeError: CUDA error: out of memory"
    assert failure_line(lines[:3]) == "ERROR Failed to load pipeline longlive: checkpoint missing"
    assert failure_line(["INFO all good"]) is None


@pytest.mark.parametrize(
    ("state", "seen_loading", "waited_s", "failed"),
    [
        ("error", False, 0.0, True),
        ("error", True, 1.0, True),
        ("not_loaded", True, 0.5, True),  # error-once already consumed by another reader
        ("not_loaded", False, 0.5, False),  # right after the request: normal for a moment
        ("not_loaded", False, 10.5, True),  # never started loading within the grace
        ("loading", True, 99.0, False),  # slow loads are the timeout's business
    ],
)
def test_load_failure_judges_one_status_reading(state, seen_loading, waited_s, failed):
    assert bool(load_failure(state, seen_loading, waited_s, 10.0)) is failed


def test_models_keep_extra_keys_and_tolerate_missing_optional_ones():
    status = PipelineStatus.model_validate({"status": "loaded", "future_field": [1, 2]})
    assert status.pipeline_id is None and status.model_extra == {"future_field": [1, 2]}
    cloud = CloudStatus.model_validate({"connected": False, "error": "All orchestrators failed"})
    assert cloud.failed and cloud.connection_id is None
    with pytest.raises(ValidationError):
        CloudStatus.model_validate({"connecting": True})


def test_session_metrics_without_session_or_gpu():
    idle = SessionMetrics.model_validate({"sessions": {}, "gpu": {}})
    assert idle.headless is None and idle.gpu is None
    running = SessionMetrics.model_validate(
        {
            "sessions": {"headless": {"frames_out": 42, "fps_out": 11.5, "relay_mode": "x"}},
            "gpu": {"vram_allocated_mb": 1024.5, "vram_total_mb": 24576},
        }
    )
    assert running.headless is not None and running.headless.frames_out == 42
    assert running.headless.frames_in is None and running.headless.model_extra == {"relay_mode": "x"}
    assert running.gpu is not None and running.gpu.vram_reserved_mb is None
    assert SessionMetrics.model_validate({}).headless is None


def test_prompt_serialises_as_text_and_weight():
    assert Prompt(text="a red fox").model_dump() == {"text": "a red fox", "weight": 1.0}


def test_base_url_must_be_http():
    with pytest.raises(ConfigError, match="base_url"):
        ScopeClient("127.0.0.1:8000")


# -- a scripted loopback server ---------------------------------------------------------


Route = Callable[[BaseHTTPRequestHandler, bytes], None]


@dataclass
class Loopback:
    """A threaded http.server whose answers the test scripts per path."""

    routes: dict[str, Route]
    received: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def _handler_for(server: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _dispatch(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            server.received.append(body)
            route = server.routes.get(self.path.split("?")[0])
            try:
                if route is None:
                    send_json(self, 404, {"detail": "Not Found"})
                else:
                    route(self, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, which is the point of several tests

        do_GET = do_POST = _dispatch

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def loopback() -> Iterator[Callable[[dict[str, Route]], Loopback]]:
    started: list[tuple[ThreadingHTTPServer, Loopback, threading.Thread]] = []

    def start(routes: dict[str, Route]) -> Loopback:
        state = Loopback(routes)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
        httpd.state = state  # type: ignore[attr-defined]
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        started.append((httpd, state, thread))
        return state

    yield start
    for httpd, state, thread in started:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: BaseHTTPRequestHandler, status: int, data: object) -> None:
    send(handler, status, json.dumps(data).encode(), "application/json")


def answer(status: int, data: object) -> Route:
    return lambda handler, _body: send_json(handler, status, data)


def send_then_hold(nbytes: int, content_type: str) -> Route:
    """Send `nbytes` of a body of unknown length, then keep the connection open."""

    def route(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("content-type", content_type)
        handler.end_headers()
        handler.wfile.write(b"x" * nbytes)
        handler.wfile.flush()
        # A client that wanted the whole body would wait here until its timeout.
        handler.server.state.release.wait(10)  # type: ignore[attr-defined]

    return route


# -- size caps ------------------------------------------------------------------------------


async def test_json_past_its_cap_raises_without_waiting_for_the_rest(loopback):
    server = loopback({"/api/v1/session/metrics": send_then_hold(5000, "application/json")})
    async with ScopeClient(server.url, timeouts=FAST, limits=SMALL) as scope:
        with pytest.raises(ResponseTooLarge) as caught:
            await scope.session_metrics()
    assert caught.value.route == "GET /api/v1/session/metrics" and caught.value.status == 200
    assert caught.value.category == Category.PROTOCOL


async def test_declared_length_past_the_cap_raises_before_reading(loopback):
    def declares_huge(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "image/jpeg")
        handler.send_header("content-length", str(SMALL.frame_bytes + 1))
        handler.end_headers()
        handler.wfile.flush()
        server.release.wait(10)  # never sends the body

    server = loopback({"/api/v1/session/frame": declares_huge})
    async with ScopeClient(server.url, timeouts=FAST, limits=SMALL) as scope:
        with pytest.raises(ResponseTooLarge, match="declares"):
            await scope.get_frame()


async def test_frame_at_its_cap_is_returned_whole(loopback):
    frame = b"\xff\xd8" + b"\x01" * (SMALL.frame_bytes - 2)
    server = loopback({"/api/v1/session/frame": lambda h, _b: send(h, 200, frame, "image/jpeg")})
    async with ScopeClient(server.url, timeouts=FAST, limits=SMALL) as scope:
        assert await scope.get_frame() == frame


async def test_frame_past_its_cap_raises(loopback):
    oversized = send_then_hold(SMALL.frame_bytes + 1, "image/jpeg")
    server = loopback({"/api/v1/session/frame": oversized})
    async with ScopeClient(server.url, timeouts=FAST, limits=SMALL) as scope:
        with pytest.raises(ResponseTooLarge):
            await scope.get_frame()


async def test_output_ts_returns_its_first_bytes_and_hangs_up(loopback):
    endless = send_then_hold(100_000, "video/mp2t")
    server = loopback({"/api/v1/session/output.ts": endless})
    async with ScopeClient(server.url, timeouts=FAST, limits=SMALL) as scope:
        assert await scope.read_output_ts(max_bytes=30_000) == b"x" * 30_000


async def test_a_body_that_trickles_in_hits_the_call_deadline(loopback):
    def trickle(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.end_headers()
        for _ in range(100):  # a byte every 0.05 s, well inside the read timeout, for 5 s
            if server.release.wait(0.05):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()

    server = loopback({"/health": trickle})
    quick = ScopeTimeouts(connect_s=0.2, read_s=0.3)
    async with ScopeClient(server.url, timeouts=quick) as scope:
        with pytest.raises(ScopeTimeout, match="no complete answer") as caught:
            await scope.health()
    assert caught.value.category == Category.NETWORK


# -- statuses, shapes and transport failures ---------------------------------------------


async def test_502_from_a_proxied_call_blames_the_orchestrator(loopback):
    server = loopback({"/api/v1/pipeline/status": answer(502, {"detail": "Cloud request failed: EOF"})})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeHTTPError) as caught:
            await scope.pipeline_status()
    error = caught.value
    assert (error.category, error.status, error.detail) == (
        Category.ORCHESTRATOR, 502, "Cloud request failed: EOF",
    )


async def test_wrong_shapes_are_bad_responses(loopback):
    server = loopback(
        {
            "/api/v1/cloud/status": answer(200, {"connecting": True}),
            "/api/v1/pipelines/schemas": answer(200, ["longlive"]),
            "/health": lambda h, _b: send(h, 200, b"<html>ok</html>", "text/html"),
            "/api/v1/session/frame": answer(200, {"frame": None}),
            "/api/v1/session/parameters": answer(200, {"params": {}}),
        }
    )
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(BadResponse, match="connected: Field required") as caught:
            await scope.cloud_status()
        assert caught.value.status == 200 and caught.value.category == Category.PROTOCOL
        with pytest.raises(BadResponse, match="PipelineSchemas"):
            await scope.pipeline_schemas()
        with pytest.raises(BadResponse, match="not JSON"):
            await scope.health()
        with pytest.raises(BadResponse, match="content type application/json"):
            await scope.get_frame()
        with pytest.raises(BadResponse, match="parameters"):
            await scope.get_parameters()


async def test_404_means_nothing_there_unless_the_route_itself_is_missing(loopback):
    server = loopback(
        {
            "/api/v1/session/stop": answer(404, {"detail": "No active headless session"}),
            "/api/v1/session/frame": answer(
                404, {"detail": "No frame available (no active session or pipeline not running)"}
            ),
        }
    )
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        assert await scope.stop_session() is False
        assert await scope.get_frame() is None
    server.routes.clear()  # now both answer FastAPI's "Not Found" for an unknown route
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeHTTPError, match="Not Found"):
            await scope.stop_session()
        with pytest.raises(ScopeHTTPError, match="Not Found"):
            await scope.get_frame()


async def test_a_route_real_scope_lacks_is_an_error_not_an_empty_answer(loopback):
    # Scope 0.2.4's frontend catch-all answers every GET it has no route for: 404 "Frontend not built"
    # without a UI build, the UI's HTML with one; any other method there gets 405.
    def html(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        send(handler, 404, b"<!doctype html><html></html>", "text/html; charset=utf-8")

    server = loopback(
        {
            "/api/v1/session/frame": answer(404, {"detail": "Frontend not built"}),
            "/api/v1/session/stop": answer(405, {"detail": "Method Not Allowed"}),
        }
    )
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeHTTPError, match="Frontend not built") as no_frame_route:
            await scope.get_frame()
        with pytest.raises(ScopeHTTPError) as no_stop_route:
            await scope.stop_session()
        server.routes["/api/v1/session/frame"] = html
        with pytest.raises(ScopeHTTPError, match="doctype html"):
            await scope.get_frame()
    assert (no_frame_route.value.status, no_frame_route.value.category) == (404, Category.PROTOCOL)
    assert no_stop_route.value.status == 405


async def test_redirects_are_not_followed(loopback):
    def redirect(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.send_response(307)
        handler.send_header("location", "http://127.0.0.1:1/elsewhere")
        handler.send_header("content-length", "0")
        handler.end_headers()

    server = loopback({"/health": redirect})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeHTTPError) as caught:
            await scope.health()
    assert caught.value.status == 307 and caught.value.category == Category.PROTOCOL


async def test_refused_connection_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the call: nothing listens
    async with ScopeClient(f"http://127.0.0.1:{port}", timeouts=FAST) as scope:
        with pytest.raises(ScopeUnreachable) as caught:
            await scope.health()
    assert caught.value.category == Category.NETWORK and caught.value.status is None
    assert isinstance(caught.value.__cause__, Exception)


async def test_connection_closed_without_an_answer_is_unreachable(loopback):
    def hang_up(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    server = loopback({"/api/v1/session/metrics": hang_up})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeUnreachable):
            await scope.session_metrics()


async def test_assets_list_in_either_shape(loopback):
    asset = {"name": "in.mp4", "path": "/srv/assets/in.mp4", "type": "video"}
    server = loopback({"/api/v1/assets": answer(200, [asset])})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        assert [a.path for a in await scope.list_assets()] == ["/srv/assets/in.mp4"]
        server.routes["/api/v1/assets"] = answer(200, {"assets": [asset, {"name": "x"}]})
        with pytest.raises(BadResponse, match="assets.1.path"):
            await scope.list_assets()


# -- secrets ---------------------------------------------------------------------------------


async def test_api_key_appears_in_no_error_text_or_log(loopback, caplog):
    caplog.set_level(logging.DEBUG)

    def echo_in_detail(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        send_json(handler, 422, {"detail": f"Invalid cloud app id in {body.decode()}"})

    server = loopback(
        {
            "/api/v1/cloud/connect": echo_in_detail,
            # a load that fails with the key in its log line
            "/api/v1/pipeline/status": answer(200, {"status": "error"}),
            "/api/v1/logs/tail": answer(200, {"lines": [f"ERROR bad key {API_KEY}"], "offset": 1}),
        }
    )
    key = SecretStr(API_KEY)
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(ScopeHTTPError) as connect_error:
            await scope.cloud_connect(app_id="nope", api_key=key, user_id="u1")
        with pytest.raises(PhaseFailed) as load_error:
            await scope.wait_until_loaded(timeout_s=2.0)
        texts = [repr(scope), repr(key)]
    assert json.loads(server.received[0])["api_key"] == API_KEY  # the key did travel
    for error in (connect_error.value, load_error.value):
        texts += [str(error), repr(error), error.message, str(getattr(error, "detail", "")), str(error.args)]
    assert "**********" in connect_error.value.message and "bad key" in load_error.value.message
    texts.append(caplog.text)
    assert not [text for text in texts if API_KEY in text]


async def test_missing_cloud_credentials(loopback):
    detail = "Failed to connect: 400: Cloud credentials not configured (set app_id and api_key)"
    server = loopback({"/api/v1/cloud/connect": answer(500, {"detail": detail})})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(CloudCredentialsMissing) as caught:
            await scope.cloud_connect()
    assert caught.value.category == Category.HARNESS and caught.value.status == 500
    assert json.loads(server.received[0]) == {}


# -- wait_until_loaded, scripted ---------------------------------------------------------


def status_sequence(*states: str) -> Route:
    """Answer the given states in order, then the last one for ever."""
    remaining = list(states)

    def route(handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        state = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        send_json(handler, 200, {"status": state, "loading_stage": "weights"})

    return route


async def test_wait_until_loaded_tolerates_a_late_start(loopback):
    server = loopback({"/api/v1/pipeline/status": status_sequence("not_loaded", "loading", "loaded")})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        status = await scope.wait_until_loaded(timeout_s=5.0, poll_s=0.01)
    assert status.status == "loaded"


async def test_wait_until_loaded_fails_when_loading_never_starts(loopback):
    log = {"lines": ["INFO x", "ERROR Unknown pipeline: nosuch"], "offset": 2}
    server = loopback(
        {"/api/v1/pipeline/status": status_sequence("not_loaded"), "/api/v1/logs/tail": answer(200, log)}
    )
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(PhaseFailed, match="never loading.*Unknown pipeline: nosuch") as caught:
            await scope.wait_until_loaded(timeout_s=5.0, poll_s=0.01, not_loaded_grace_s=0.1)
    assert (caught.value.category, caught.value.phase) == (Category.RUNNER, Phase.LOAD)


async def test_wait_until_loaded_fails_when_loading_falls_back_and_the_log_is_gone(loopback):
    server = loopback({"/api/v1/pipeline/status": status_sequence("loading", "loading", "not_loaded")})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(PhaseFailed, match="back from loading.*log tail unreadable"):
            await scope.wait_until_loaded(timeout_s=5.0, poll_s=0.01)


async def test_wait_until_loaded_times_out_while_loading(loopback):
    server = loopback({"/api/v1/pipeline/status": status_sequence("loading")})
    async with ScopeClient(server.url, timeouts=FAST) as scope:
        with pytest.raises(PhaseTimeout, match="stage weights") as caught:
            await scope.wait_until_loaded(timeout_s=0.2, poll_s=0.05)
    assert (caught.value.category, caught.value.phase) == (Category.RUNNER, Phase.LOAD)
