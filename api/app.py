"""The FastAPI app of the leaderboard API: four read endpoints, the signed POST, and /docs."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException

from analytics.lake import Lake
from analytics.leaderboard.board import Leaderboard, StatsQuery
from api.answers import INTERNAL_ERROR, ApiError, error_answer, read_answer
from api.params import ParamError, stats_query
from api.posting import PostingRules, accept_post

logger = logging.getLogger(__name__)
DESCRIPTION = ("A drop-in replacement of livepeer/leaderboard-serverless's API, computed from this harness's "
               "lake: our relay runs plus the stats other testers post. Refusals are `{\"error\": message}`.")


def _refusals(app: FastAPI) -> None:
    """Every refusal is `{"error": ...}`; an unexpected failure is a 500 without internals."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> Response:
        return error_answer(error.status, error.message)

    @app.exception_handler(ParamError)
    async def param_error(_request: Request, error: ParamError) -> Response:
        return error_answer(400, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> Response:
        return error_answer(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        logger.error("%s %s failed: %s", request.method, request.url.path, type(error).__name__)
        return error_answer(500, INTERNAL_ERROR)


def _read_routes(app: FastAPI, board: Leaderboard, window_hours: float, clock: Callable[[], float]) -> None:
    """The four GET endpoints; sync handlers, so the board's queries run in the thread pool."""

    def query(request: Request, *, orchestrator_required: bool = False) -> StatsQuery:
        now = dt.datetime.fromtimestamp(clock(), tz=dt.timezone.utc)
        return stats_query(request.query_params.multi_items(), now=now, window_hours=window_hours,
                           orchestrator_required=orchestrator_required)

    @app.get("/api/aggregated_stats", summary="Scores per orchestrator and region over the window")
    def aggregated_stats(request: Request) -> Any:
        """`{orchestrator: {REGION: {success_rate, round_trip_score, score, ...}}}`. Parameters: orchestrator,
        region, since, until (unix s), model and pipeline (together), job_type (ai|transcoding)."""
        return read_answer(board.aggregated_stats(query(request)))

    @app.get("/api/raw_stats", summary="One orchestrator's stats per region, newest first")
    def raw_stats(request: Request) -> Any:
        """`{REGION: [Stats, ...]}`. orchestrator is required; region, since, until, model, pipeline, job_type."""
        return read_answer(board.raw_stats(query(request, orchestrator_required=True)))

    @app.get("/api/pipelines", summary="AI pipelines with their models and regions in the window")
    def pipelines(request: Request) -> Any:
        """`{"pipelines": [{id, models, regions}]}`. Parameters: region, since, until."""
        return read_answer({"pipelines": board.pipelines(query(request))})

    @app.get("/api/regions", summary="The regions a stat may be posted under")
    def regions() -> Any:
        """`{"regions": [{id, name, type}]}`."""
        return read_answer({"regions": board.regions()})


def create_app(lake: Lake, settings: Any, *, secret: str | None, clock: Callable[[], float] = time.time,
               board: Leaderboard | None = None) -> FastAPI:
    """The API over `lake` and `settings`; `secret` None or empty disables POST; `clock` gives unix seconds."""
    api = settings.leaderboard.api
    board = board if board is not None else Leaderboard(lake, settings)
    rules = PostingRules.of(api, secret, clock)
    app = FastAPI(title="Leaderboard API", description=DESCRIPTION, version="1")
    _refusals(app)
    _read_routes(app, board, api.window_hours, clock)

    @app.post("/api/post_stats", summary="Post one signed Stats object (one test job)",
              response_class=PlainTextResponse)
    async def post_stats(request: Request) -> Response:
        """The body is a Stats object; `Authorization` is the hex HMAC-SHA256 of its exact bytes. Answers `ok`."""
        await accept_post(request, lake, board, rules)
        return PlainTextResponse("ok")

    return app
