"""POST /api/post_stats in process (a stand-in board, a fixed clock): the order of its checks and its answers."""

from __future__ import annotations

import json

import httpx
import pytest

from analytics.lake import Lake
from analytics.leaderboard.ingest import TABLE
from api.app import create_app
from config.settings import load_settings
from tests.api.conftest import NOW_S, ROOT, SECRET, FakeBoard, body_of, lake_listing, signed, stat

SETTINGS = load_settings(ROOT / "config" / "default.yaml", environ={})
API = SETTINGS.leaderboard.api


@pytest.fixture
def board() -> FakeBoard:
    return FakeBoard()


def client_of(lake: Lake, board: FakeBoard, secret: str | None = SECRET) -> httpx.AsyncClient:
    """An in-process client of the API at NOW_S."""
    app = create_app(lake, SETTINGS, secret=secret, clock=lambda: NOW_S, board=board)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test", timeout=10)


async def post(lake: Lake, board: FakeBoard, body: bytes, headers: dict[str, str] | None = None,
               secret: str | None = SECRET) -> httpx.Response:
    """Post `body` (signed unless headers are given) and return the answer."""
    async with client_of(lake, board, secret) as client:
        return await client.post("/api/post_stats", content=body, headers=signed(body) if headers is None else headers)


def now_stat(**overrides) -> bytes:
    return body_of(stat(**{"timestamp": int(NOW_S)} | overrides))


async def test_a_signed_valid_stat_lands_once_and_answers_ok(lake, board):
    body = now_stat()
    first = await post(lake, board, body)
    assert (first.status_code, first.text) == (200, "ok")
    rows = lake.query(f"SELECT region, orchestrator, job_type, poster FROM {TABLE}").rows
    assert len(rows) == 1 and rows[0][:3] == ("FRA", "0xabc0000000000000000000000000000000000001", "ai")
    listing = lake_listing(lake.root)
    second = await post(lake, board, body)
    assert second.status_code == 409 and second.json()["error"].startswith("duplicate: ")
    assert lake_listing(lake.root) == listing


@pytest.mark.parametrize("secret", [None, ""])
async def test_without_a_secret_posting_is_disabled_naming_the_variable(lake, board, secret):
    answer = await post(lake, board, now_stat(), secret=secret)
    assert answer.status_code == 503
    assert answer.json() == {"error": f"posting is disabled: set {API.secret_env}"}


@pytest.mark.parametrize("authorization", [None, "", "0" * 64, "zz" * 32, "not hex at all", "sha256=abc"])
async def test_a_missing_wrong_or_non_hex_signature_is_401(lake, board, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = await post(lake, board, now_stat(), headers=headers)
    assert answer.status_code == 401 and SECRET not in answer.text
    assert lake_listing(lake.root) == {}


async def test_a_signature_under_another_secret_is_401(lake, board):
    body = now_stat()
    assert (await post(lake, board, body, headers=signed(body, "other"))).status_code == 401


async def test_the_signature_is_checked_before_the_body_is_parsed(lake, board):
    answer = await post(lake, board, b"not json", headers={"Authorization": "0" * 64})
    assert answer.status_code == 401


async def test_a_body_over_the_limit_is_413(lake, board):
    answer = await post(lake, board, now_stat(input_parameters="x" * API.body_limit_bytes))
    assert answer.status_code == 413 and str(API.body_limit_bytes) in answer.json()["error"]


async def test_a_streamed_body_over_the_limit_is_413_without_a_content_length(lake, board):
    async def chunks():
        for _ in range(API.body_limit_bytes // 1024 + 2):
            yield b"x" * 1024

    async with client_of(lake, board) as client:
        answer = await client.post("/api/post_stats", content=chunks(), headers={"Authorization": "0" * 64})
    assert answer.status_code == 413


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"[]", "body"),
    (b"", "body"),
    ("success_rate", "success_rate"),
    ("timestamp", "timestamp"),
    ("round_trip_time", "round_trip_time"),
    ("errors", "errors.0.error_code"),
    ("region", "region"),
])
async def test_a_body_that_is_not_a_stats_object_is_400_naming_the_field(lake, board, body, field):
    wrong = {"success_rate": "1", "timestamp": NOW_S + 0.5, "round_trip_time": True,
             "errors": [{"error_code": 5}], "region": "' OR 1=1 --"}
    if isinstance(body, str):
        body = now_stat(**{body: wrong[body]})
    answer = await post(lake, board, body)
    assert answer.status_code == 400 and answer.json()["error"].startswith(f"{field}: ")
    assert lake_listing(lake.root) == {}


async def test_an_unknown_region_is_400_naming_it(lake, board):
    answer = await post(lake, board, now_stat(region="MARS"))
    assert answer.status_code == 400 and "MARS" in answer.json()["error"]


@pytest.mark.parametrize(("offset_s", "says"), [(-API.replay_window_s - 1, "replay window"),
                                                 (API.future_skew_s + 1, "future")])
async def test_a_stale_or_future_timestamp_is_400(lake, board, offset_s, says):
    answer = await post(lake, board, body_of(stat(timestamp=int(NOW_S + offset_s))))
    error = answer.json()["error"]
    assert answer.status_code == 400 and error.startswith("timestamp") and says in error


async def test_timestamps_at_the_window_edges_are_accepted(lake, board):
    for offset_s in (-API.replay_window_s, API.future_skew_s):
        answer = await post(lake, board, body_of(stat(timestamp=int(NOW_S + offset_s))))
        assert answer.status_code == 200


async def test_refusals_never_echo_the_body(lake, board):
    marker = "ECHO-MARKER-4242"
    answer = await post(lake, board, now_stat(region=marker + "!"))
    assert answer.status_code == 400 and marker not in answer.text


async def test_the_poster_is_the_peer_and_its_user_agent(lake, board):
    body = now_stat()
    headers = signed(body) | {"User-Agent": "tester/1\x7f" + "a" * 500}
    assert (await post(lake, board, body, headers=headers)).status_code == 200
    poster = lake.query(f"SELECT poster FROM {TABLE}").rows[0][0]
    assert poster.startswith("127.0.0.1 tester/1?") and len(poster) < 260


async def test_an_unexpected_failure_is_a_500_without_internals(lake):
    class BrokenBoard(FakeBoard):
        def region_known(self, region):
            raise RuntimeError("secret internals /etc/passwd")

    app = create_app(lake, SETTINGS, secret=SECRET, clock=lambda: NOW_S, board=BrokenBoard())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=10) as client:
        body = now_stat()
        answer = await client.post("/api/post_stats", content=body, headers=signed(body))
    assert answer.status_code == 500 and json.loads(answer.text) == {"error": "internal error"}
