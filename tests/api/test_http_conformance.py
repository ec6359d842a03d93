"""The API over real loopback HTTP (`python -m api`): the reference's shapes, parameter rules and scores."""

from __future__ import annotations

import math
import signal
import sys
import time

import httpx
import pytest

from tests.api.conftest import HTTP_TIMEOUT_S, SECRET, ApiServer, body_of, signed, start_api, stat

pytestmark = pytest.mark.integration
READ_ENDPOINTS = ("/api/aggregated_stats", "/api/raw_stats", "/api/pipelines", "/api/regions")
ORCH = "0xabc0000000000000000000000000000000000001"


def get(server: ApiServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=HTTP_TIMEOUT_S)


def post(server: ApiServer, value: dict) -> httpx.Response:
    body = body_of(value)
    return httpx.post(server.url + "/api/post_stats", content=body, headers=signed(body), timeout=HTTP_TIMEOUT_S)


def assert_refused(answer: httpx.Response, names: str) -> None:
    """A 400 `{"error": ...}` in JSON naming `names`."""
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error"} and names in answer.json()["error"]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_read_endpoints_answer_json_with_the_reference_headers(api_server, path):
    answer = get(api_server, path, orchestrator=ORCH)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["access-control-allow-origin"] == "*"
    assert isinstance(answer.json(), dict)


def test_regions_are_the_reference_shape(api_server):
    regions = get(api_server, "/api/regions").json()["regions"]
    assert {"FRA", "GLOBAL"} <= {r["id"] for r in regions}
    assert all(set(r) == {"id", "name", "type"} for r in regions)


@pytest.mark.parametrize("path", READ_ENDPOINTS[:3])
@pytest.mark.parametrize(("params", "names"), [
    ({"model": "m"}, "pipeline"), ({"pipeline": "p"}, "model"), ({"since": "nan"}, "since"),
    ({"until": "inf"}, "until"), ({"since": "-5"}, "since"), ({"until": "yesterday"}, "until"),
    ({"since": "200", "until": "100"}, "since"), ({"job_type": "video"}, "job_type"),
    ({"region": "x" * 257}, "region"),
])
def test_bad_parameters_are_400_naming_them(api_server, path, params, names):
    assert_refused(get(api_server, path, orchestrator=ORCH, **params), names)


def test_raw_stats_requires_the_orchestrator(api_server):
    assert_refused(get(api_server, "/api/raw_stats"), "orchestrator")


def test_unknown_parameters_are_ignored(api_server):
    assert get(api_server, "/api/aggregated_stats", colour="blue", limit="x" * 1000).status_code == 200


def test_posting_is_disabled_without_a_secret(api_server_without_secret):
    answer = post(api_server_without_secret, stat())
    assert answer.status_code == 503
    assert answer.json() == {"error": "posting is disabled: set LEADERBOARD_SECRET"}
    assert "POST /api/post_stats disabled (set LEADERBOARD_SECRET)" in api_server_without_secret.output()


def test_the_start_line_names_the_url_and_never_the_secret(api_server):
    output = api_server.output()
    assert f"leaderboard API on {api_server.url}" in output and "POST /api/post_stats enabled" in output
    assert SECRET not in output


def test_docs_list_every_endpoint_with_a_summary(api_server):
    spec = httpx.get(api_server.url + "/openapi.json", timeout=HTTP_TIMEOUT_S).json()
    assert set(spec["paths"]) == {*READ_ENDPOINTS, "/api/post_stats"}
    assert all(op.get("summary") for path in spec["paths"].values() for op in path.values())
    assert httpx.get(api_server.url + "/docs", timeout=HTTP_TIMEOUT_S).status_code == 200


def test_posted_stats_appear_in_raw_stats_and_aggregated_stats(api_server):
    posted = stat(orchestrator=ORCH.replace("1", "2"), region="LAX", model="raw-model", timestamp=int(time.time()) - 30)
    assert post(api_server, posted).text == "ok"
    window = {"model": "raw-model", "pipeline": "live-video-to-video"}
    raw = get(api_server, "/api/raw_stats", orchestrator=posted["orchestrator"].upper(), **window).json()
    assert list(raw) == ["LAX"] and len(raw["LAX"]) == 1
    assert {k: raw["LAX"][0][k] for k in posted} == posted
    aggregated = get(api_server, "/api/aggregated_stats", region="lax", **window).json()
    assert set(aggregated) == {posted["orchestrator"]}
    assert {"success_rate", "round_trip_score", "score"} <= set(aggregated[posted["orchestrator"]]["LAX"])
    until_before = get(api_server, "/api/raw_stats", orchestrator=posted["orchestrator"],
                       until=str(posted["timestamp"] - 1), **window).json()
    assert until_before == {}
    pipelines = get(api_server, "/api/pipelines").json()["pipelines"]
    assert any(p["id"] == "live-video-to-video" and "raw-model" in p["models"] for p in pipelines)


def test_the_reference_score_example_recomputed_from_posted_stats(api_server):
    """Succeeded rtts 2, 5 and 8 s (median 5 s; a failed 1 s job does not count): the 2 s orchestrator's scores."""
    now, model = int(time.time()), "score-model"
    rtts = {"0xa000000000000000000000000000000000000002": (2.0, 1.0), "0xa000000000000000000000000000000000000005":
            (5.0, 1.0), "0xa000000000000000000000000000000000000008": (8.0, 1.0),
            "0xa000000000000000000000000000000000000001": (1.0, 0.0)}
    for i, (orchestrator, (rtt, success)) in enumerate(rtts.items()):
        value = stat(orchestrator=orchestrator, round_trip_time=rtt, success_rate=success, model=model,
                     timestamp=now - 60 - i)
        assert post(api_server, value).status_code == 200
    median = 5.0
    round_trip_score = math.exp(math.log(0.8) / median * 2.0)
    score = 0.65 * 1.0 + 0.35 * round_trip_score
    assert abs(round_trip_score - 0.91461) < 1e-5 and abs(score - 0.97011) < 1e-5  # leaderboard.md's example
    fast = "0xa000000000000000000000000000000000000002"
    answer = get(api_server, "/api/aggregated_stats", orchestrator=fast, model=model,
                 pipeline="live-video-to-video").json()
    assert list(answer) == [fast]  # the median still spans every orchestrator (the reference's rule)
    group = answer[fast]["FRA"]
    assert abs(group["round_trip_score"] - round_trip_score) < 1e-5 and abs(group["score"] - score) < 1e-5
    assert group["success_rate"] == 1.0
    everyone = get(api_server, "/api/aggregated_stats", model=model, pipeline="live-video-to-video").json()
    assert everyone["0xa000000000000000000000000000000000000001"]["FRA"]["score"] == 0


def test_sigterm_stops_the_server_cleanly(tmp_path):
    server = start_api(tmp_path, secret=None)
    assert server.stop(signal.SIGTERM) in (0, 130)
    assert "Traceback" not in server.output()


def test_loadtest_api_serves_the_same_api_and_stops_on_sigint(tmp_path):
    server = start_api(tmp_path, secret=SECRET, command=(sys.executable, "-m", "deployments.cli", "api"))
    try:
        assert get(server, "/api/regions").status_code == 200
    finally:
        assert server.stop(signal.SIGINT) == 130
