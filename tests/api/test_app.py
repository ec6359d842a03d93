"""The read endpoints in process, against a stand-in board: what reaches the board and what comes back."""

from __future__ import annotations

import datetime as dt

import httpx

from api.app import create_app
from config.settings import load_settings
from tests.api.conftest import NOW_S, ROOT, FakeBoard

SETTINGS = load_settings(ROOT / "config" / "default.yaml", environ={})


async def get(board: FakeBoard, lake, path: str, **params: str) -> httpx.Response:
    app = create_app(lake, SETTINGS, secret=None, clock=lambda: NOW_S, board=board)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test",
                                 timeout=10) as client:
        return await client.get(path, params=params)


async def test_the_board_gets_the_parsed_query_at_the_clocks_time(lake):
    board = FakeBoard()
    answer = await get(board, lake, "/api/aggregated_stats", orchestrator="0xAB", region="fra", model="m",
                       pipeline="p", job_type="ai")
    assert answer.status_code == 200 and answer.json() == {}
    [query] = board.queries
    now = dt.datetime.fromtimestamp(NOW_S, tz=dt.timezone.utc)
    parsed = (query.orchestrator, query.region, query.model, query.pipeline, query.kind)
    assert parsed == ("0xab", "FRA", "m", "p", "ai")
    assert query.until == now and now - query.since == dt.timedelta(hours=SETTINGS.leaderboard.api.window_hours)


async def test_pipelines_and_regions_are_wrapped_as_the_reference_does(lake):
    board = FakeBoard(regions=("FRA",))
    assert (await get(board, lake, "/api/pipelines")).json() == {"pipelines": []}
    assert (await get(board, lake, "/api/regions")).json() == {"regions": [{"id": "FRA", "name": "Fra", "type": "ai"}]}


async def test_unknown_routes_and_methods_are_json_errors(lake):
    missing = await get(FakeBoard(), lake, "/api/nothing")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
