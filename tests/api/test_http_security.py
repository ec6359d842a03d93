"""The API's security over real loopback HTTP: hostile parameters and bodies get 4xx, never 5xx, and
refused posts leave the lake's files exactly as they were."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.api.conftest import HTTP_TIMEOUT_S, SECRET, ApiServer, body_of, lake_listing, signed, stat

pytestmark = pytest.mark.integration
HOSTILE = ("' OR 1=1 --", '"; DROP TABLE leaderboard_stats; --', "../../etc/passwd", "a\x00b", "x" * 5000,
           "%00%27", "\u202e\ufeff", "1; SELECT * FROM runs", "0xABC' UNION SELECT 1 --", "\\x00\r\nX-Header: 1")
ORCH = "0xabc0000000000000000000000000000000000001"
PARAMS = ("orchestrator", "region", "since", "until", "model", "pipeline", "job_type")
ENDPOINTS = ("/api/aggregated_stats", "/api/raw_stats", "/api/pipelines", "/api/regions")
EMPTY = {"/api/aggregated_stats": {}, "/api/raw_stats": {}}


def post(server: ApiServer, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + "/api/post_stats", content=body, headers=headers, timeout=HTTP_TIMEOUT_S)


def params_with(name: str, value: str) -> dict[str, str]:
    """The query with one hostile value; its companions valid so that the hostile one is what is judged."""
    params = {"orchestrator": ORCH, name: value}
    if name == "model":
        params["pipeline"] = "live-video-to-video"
    if name == "pipeline":
        params["model"] = "streamdiffusion"
    return params


@pytest.mark.parametrize("path", ENDPOINTS)
def test_hostile_values_in_every_query_parameter_are_refused_or_find_nothing(api_server, path):
    before, wrong = lake_listing(api_server.data_dir), []
    with httpx.Client(base_url=api_server.url, timeout=HTTP_TIMEOUT_S) as client:  # one connection: fast
        answers = [(name, value, client.get(path, params=params_with(name, value)))
                   for name in PARAMS for value in HOSTILE]
    for name, value, answer in answers:
        harmless = answer.status_code == 200 and (path not in EMPTY or answer.json() == EMPTY[path])
        refused = answer.status_code == 400 and set(answer.json()) == {"error"}
        if not (harmless or refused):
            wrong.append((name, value[:40], answer.status_code, answer.text[:200]))
    assert wrong == []
    assert lake_listing(api_server.data_dir) == before


@pytest.mark.parametrize("authorization", [None, "", "0" * 64, "g" * 64, "not-hex", SECRET, "Bearer " + "a" * 64])
def test_a_missing_wrong_or_non_hex_signature_is_401(api_server, authorization):
    body, before = body_of(stat()), lake_listing(api_server.data_dir)
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = post(api_server, body, headers)
    assert answer.status_code == 401 and SECRET not in answer.text
    assert lake_listing(api_server.data_dir) == before


def test_a_replayed_body_is_409_and_the_lake_unchanged(api_server):
    body = body_of(stat(orchestrator="0xfeed000000000000000000000000000000000001", timestamp=int(time.time()) - 5))
    assert post(api_server, body, signed(body)).text == "ok"
    before = lake_listing(api_server.data_dir)
    for _ in range(3):
        answer = post(api_server, body, signed(body))
        assert answer.status_code == 409 and answer.json()["error"].startswith("duplicate: ")
    assert lake_listing(api_server.data_dir) == before


def test_a_body_over_the_limit_is_413_before_it_is_sent(api_server):
    """Content-Length alone decides: the answer comes while the client has sent 1 KB of a declared 10 MB."""
    before = lake_listing(api_server.data_dir)
    host, port = api_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT_S) as connection:
        connection.sendall(b"POST /api/post_stats HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                           b"Authorization: " + b"0" * 64 + b"\r\nContent-Type: application/json\r\n\r\n" + b"{" * 1024)
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413")
    assert lake_listing(api_server.data_dir) == before


def test_a_chunked_body_over_the_limit_is_413(api_server):
    def chunks():
        for _ in range(65):
            yield b" " * 1024 + b"\n"

    answer = httpx.post(api_server.url + "/api/post_stats", content=chunks(), headers={"Authorization": "0" * 64},
                        timeout=HTTP_TIMEOUT_S)
    assert answer.status_code == 413


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"), (b"", "body"), (b"null", "body"), (b'"\x00"', "body"), (b"\xff\xfe", "body"),
    (body_of(stat(success_rate="1")), "success_rate"), (body_of(stat(timestamp=time.time())), "timestamp"),
    (body_of(stat(round_trip_time=False)), "round_trip_time"), (body_of(stat(errors="boom")), "errors"),
    (body_of(stat(success_rate=2)), "success_rate"), (body_of(stat(round_trip_time=-1)), "round_trip_time"),
])
def test_malformed_bodies_are_400_naming_the_field(api_server, body, field):
    before = lake_listing(api_server.data_dir)
    answer = post(api_server, body, signed(body))
    assert answer.status_code == 400 and answer.json()["error"].startswith(f"{field}: ")
    assert lake_listing(api_server.data_dir) == before


@pytest.mark.parametrize(("offset_s", "says"), [(-2 * 86_400, "timestamp is older"), (3600, "timestamp is more")])
def test_stale_and_future_timestamps_are_400(api_server, offset_s, says):
    body, before = body_of(stat(timestamp=int(time.time()) + offset_s)), lake_listing(api_server.data_dir)
    answer = post(api_server, body, signed(body))
    assert answer.status_code == 400 and answer.json()["error"].startswith(says)
    assert lake_listing(api_server.data_dir) == before


def test_an_unknown_region_is_400_naming_it(api_server):
    body, before = body_of(stat(region="ATLANTIS")), lake_listing(api_server.data_dir)
    answer = post(api_server, body, signed(body))
    assert answer.status_code == 400 and "ATLANTIS" in answer.json()["error"]
    assert lake_listing(api_server.data_dir) == before


@pytest.mark.parametrize("field", ["region", "orchestrator", "model", "pipeline", "input_parameters",
                                   "response_payload", "error_code"])
def test_hostile_strings_in_the_body_are_refused_or_stored_as_plain_data(api_server, field):
    """A hostile value is either a 400 (and the lake unchanged) or data read back verbatim."""
    for i, value in enumerate(HOSTILE + ("y" * 20_000,)):
        orchestrator = f"0xbad-{field}-{i}"
        value_stat = stat(orchestrator=orchestrator, timestamp=int(time.time()) - i, model="hostile")
        value_stat |= {"errors": [{"error_code": value}]} if field == "error_code" else {field: value}
        body, before = body_of(value_stat), lake_listing(api_server.data_dir)
        answer = post(api_server, body, signed(body))
        assert answer.status_code in (200, 400, 409), (field, value[:40], answer.text)
        if answer.status_code != 200:
            assert lake_listing(api_server.data_dir) == before
            continue
        query = {"orchestrator": orchestrator, "job_type": "ai"}  # a hostile model is no valid filter
        raw = httpx.get(api_server.url + "/api/raw_stats", params=query, timeout=HTTP_TIMEOUT_S).json()
        [read_back] = raw[value_stat["region"]]
        assert (read_back["errors"][0]["error_code"] if field == "error_code" else read_back[field]) == value


def test_the_server_never_logs_the_secret_or_a_signature(api_server):
    body = body_of(stat(orchestrator="0xlog0000000000000000000000000000000000001"))
    headers = signed(body)
    post(api_server, body, headers)
    post(api_server, body, {"Authorization": "f" * 64})
    output = api_server.output()
    assert SECRET not in output and headers["Authorization"] not in output and "f" * 64 not in output
