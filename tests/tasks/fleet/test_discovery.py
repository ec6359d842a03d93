"""Discovery sources: parsing literal payloads, merging, and reading sources over a mock transport."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from analytics.lake import Lake
from analytics.records import OrchestratorSnapshot
from config.settings import Discovery, StaticOrchestrator
from tasks.fleet.discovery import (
    DiscoveryError, Excluded, MalformedEntry, discover_orchestrators, discovery_markdown, endpoint_url,
    entries_of, land_discovery, merge_snapshots, parse_gateway_entry, parse_listed_entry,
    parse_registered_entry, redact_url,
)
from errors import Category

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
CAP = "live-video-to-video"
GIB = 1024**3


def gateway_entry(address: str = "0xAbC0000000000000000000000000000000000001", *, model: str = "scope",
                  constraint: dict | None = None, cap_id: str = "35", pipeline: str = CAP,
                  gpu: dict | None = None) -> dict[str, Any]:
    """One /getNetworkCapabilities orchestrator in go-livepeer's shape."""
    constraint = {"warm": True, "capacity": 2, "capacityInUse": 1, "runnerVersion": "0.2.4"} if constraint is None \
        else constraint
    return {
        "address": address,
        "orch_uri": f"https://{address[-4:]}.example:8935",
        "capabilities": {
            "bitstring": [1 << 35], "capacities": {cap_id: 3},
            "constraints": {"minVersion": "", "PerCapability": {cap_id: {"models": {model: constraint}}}},
        },
        "hardware": [{"pipeline": pipeline, "model_id": model,
                      "gpu_info": {"0": gpu or {"name": "NVIDIA L40S", "memory_total": 48 * GIB}}}],
    }


def parse(entry: Any, **kwargs: Any) -> OrchestratorSnapshot | Excluded:
    options = {"capability": CAP, "model_ids": ("scope",)} | kwargs
    return parse_gateway_entry(entry, AT, **options)


# --- gateway entries -----------------------------------------------------------------------------


def test_gateway_entry_fills_capacity_hardware_and_models() -> None:
    entry = gateway_entry()
    snapshot = parse(entry)
    assert isinstance(snapshot, OrchestratorSnapshot)
    assert snapshot.address == entry["address"].lower() and snapshot.uri == entry["orch_uri"]
    assert (snapshot.capacity, snapshot.capacity_in_use, snapshot.warm) == (2, 1, True)
    assert snapshot.gpu_name == "NVIDIA L40S" and snapshot.gpu_vram_mb == 48 * 1024
    assert snapshot.source == "gateway" and snapshot.offers_scope is True
    assert snapshot.pipelines == (CAP,) and snapshot.models == ("scope",)
    assert snapshot.snapshot_at == AT and snapshot.date == AT.date()


@pytest.mark.parametrize("in_use_key", ["capacityInUse", "capacity_in_use"])
def test_both_spellings_of_capacity_in_use(in_use_key: str) -> None:
    snapshot = parse(gateway_entry(constraint={"warm": False, "capacity": 3, in_use_key: 4}))
    assert (snapshot.capacity, snapshot.capacity_in_use, snapshot.warm) == (3, 4, False)


def test_busy_orchestrator_keeps_zero_capacity_and_its_sessions_in_use() -> None:
    snapshot = parse(gateway_entry(constraint={"warm": True, "capacity": 0, "capacityInUse": 2}))
    assert (snapshot.capacity, snapshot.capacity_in_use) == (0, 2)


def test_fields_go_livepeer_omits_when_zero_read_as_zero() -> None:
    # protobuf's omitempty drops capacity 0 and warm false: a busy, cold orchestrator looks like this
    snapshot = parse(gateway_entry(constraint={"capacityInUse": 1}))
    assert (snapshot.capacity, snapshot.capacity_in_use, snapshot.warm) == (0, 1, False)


@pytest.mark.parametrize("entry", [
    gateway_entry(model="streamdiffusion"),  # another model of the same capability
    gateway_entry(cap_id="27", pipeline="text-to-image"),  # "scope" under another capability
    {"address": "0x1", "capabilities": {}, "hardware": []},
    {"address": "0x1"},
])
def test_orchestrators_without_the_scope_capability_are_excluded(entry: dict) -> None:
    result = parse(entry)
    assert isinstance(result, Excluded) and result.address == entry["address"]


def test_capability_and_model_names_come_from_config() -> None:
    entry = gateway_entry(model="scope-next", cap_id="99", pipeline="scope-video")
    assert isinstance(parse(entry), Excluded)
    snapshot = parse(entry, capability="99", model_ids=("scope", "scope-next"))
    assert isinstance(snapshot, OrchestratorSnapshot) and snapshot.capacity == 2
    by_hardware = parse(entry, capability="scope-video", model_ids=("scope-next",))
    assert isinstance(by_hardware, OrchestratorSnapshot)


def test_hardware_alone_marks_scope_without_capacity_figures() -> None:
    entry = gateway_entry()
    entry["capabilities"] = {"constraints": {}}
    snapshot = parse(entry)
    assert snapshot.offers_scope is True
    assert (snapshot.capacity, snapshot.capacity_in_use, snapshot.warm) == (None, None, None)
    assert snapshot.gpu_name == "NVIDIA L40S"


def test_off_chain_orchestrator_is_named_by_its_uri() -> None:
    entry = gateway_entry(address="")
    assert parse(entry).address == entry["orch_uri"]


def test_odd_hardware_is_tolerated() -> None:
    entry = gateway_entry(gpu={"name": 7, "memory_total": "lots"})
    snapshot = parse(entry)
    assert (snapshot.gpu_name, snapshot.gpu_vram_mb) == (None, None)
    entry["hardware"] = "none"
    assert parse(entry).gpu_name is None


@pytest.mark.parametrize("entry", [
    "0xabc", None, [], {"orch_uri": None},
    {"address": 12},
    {"address": "0x1", "capabilities": ["35"]},
    {"address": "0x1", "capabilities": {"constraints": {"PerCapability": {"35": {"models": {"scope": 1}}}}}},
    gateway_entry(constraint={"capacity": "two"}),
    gateway_entry(constraint={"capacity": -1}),
    gateway_entry(constraint={"capacity": True}),
    gateway_entry(constraint={"capacity": 1.5}),
])
def test_malformed_gateway_entries_are_refused(entry: Any) -> None:
    with pytest.raises(MalformedEntry):
        parse(entry)


JUNK = (None, True, 3, -2, 1.5, "", "scope", CAP, [], {}, [{"model_id": ["scope"]}], {"35": None}, {"scope": 1})


def mutated(entry: Any, rng: random.Random) -> Any:
    """`entry` with one value somewhere inside replaced by junk."""
    if not isinstance(entry, (dict, list)) or not entry or rng.random() < 0.3:
        return rng.choice(JUNK)
    keys = list(entry) if isinstance(entry, dict) else list(range(len(entry)))
    key = rng.choice(keys)
    copy = dict(entry) if isinstance(entry, dict) else list(entry)
    copy[key] = mutated(entry[key], rng)
    return copy


def test_any_mangled_entry_parses_or_is_malformed_never_crashes() -> None:
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        entry = gateway_entry()
        for _ in range(rng.randrange(1, 4)):
            entry = mutated(entry, rng)
        try:
            outcomes.add(type(parse(entry)).__name__)
        except MalformedEntry:
            outcomes.add("MalformedEntry")
    assert outcomes == {"OrchestratorSnapshot", "Excluded", "MalformedEntry"}


# --- registry and plain lists ------------------------------------------------------------------


def test_registered_entries() -> None:
    snapshot = parse_registered_entry({"Address": "0xA", "ServiceURI": "https://a:8935", "Active": True}, AT)
    assert (snapshot.address, snapshot.uri, snapshot.source, snapshot.offers_scope) == \
        ("0xa", "https://a:8935", "registered", None)
    assert parse_registered_entry({"Address": "0xB", "ServiceURI": "https://b", "Active": False}, AT) == \
        Excluded("0xB", "inactive")
    for bad in ({"ServiceURI": "https://c"}, {"Address": "0xC", "Active": "yes"}, ["0xC"]):
        with pytest.raises(MalformedEntry):
            parse_registered_entry(bad, AT)


def test_plain_list_entries() -> None:
    full = parse_listed_entry({"id": "orch-1", "address": "0xA", "uri": "https://a", "region": "eu"}, AT)
    assert (full.address, full.uri, full.region, full.source) == ("0xa", "https://a", "eu", "json_url")
    legacy = parse_listed_entry({"id": "orch-2", "address": "https://b:8935", "region": "us"}, AT)
    assert (legacy.address, legacy.uri) == ("orch-2", "https://b:8935")
    assert parse_listed_entry({"id": "orch-3", "uri": "https://c"}, AT).address == "orch-3"
    for bad in ({"uri": "https://d"}, {"address": "0xD", "region": 5}, "0xD"):
        with pytest.raises(MalformedEntry):
            parse_listed_entry(bad, AT)


def test_entry_lists() -> None:
    assert entries_of([1], "u") == [1]
    assert entries_of({"orchestrators": [2]}, "u") == [2]
    assert entries_of({"orchestrators": None}, "u") == []  # Go encodes an empty slice as null
    for bad in ({"nodes": []}, "x", 3):
        with pytest.raises(DiscoveryError):
            entries_of(bad, "u")


# --- merging -----------------------------------------------------------------------------------


def snap(address: str, source: str, **fields: Any) -> OrchestratorSnapshot:
    return OrchestratorSnapshot(snapshot_at=AT, address=address, source=source, **fields)


def test_merge_combines_sources_with_gateway_data_winning() -> None:
    merged = merge_snapshots([
        snap("0xabc", "json_url", uri="https://from-list", region="eu"),
        snap("0xABC", "gateway", uri="https://from-gateway", capacity=1, capacity_in_use=0, gpu_name="L40S",
             pipelines=(CAP,), models=("scope",), offers_scope=True),
        snap("0xAbc", "static", uri="https://from-config", region="us", capacity=9),
        snap("0xother", "static"),
    ])
    assert [m.address for m in merged] == ["0xabc", "0xother"]  # one orchestrator, stored lowercase
    one = merged[0]
    assert one.source == "gateway+json_url+static"
    assert (one.uri, one.region, one.capacity, one.gpu_name) == ("https://from-gateway", "eu", 1, "L40S")
    assert (one.pipelines, one.models, one.offers_scope) == ((CAP,), ("scope",), True)


def test_merge_stores_one_lowercase_address_and_names_a_source_once() -> None:
    merged = merge_snapshots([snap("0xDEF", "json_url", region="eu"), snap("0xdef", "json_url", uri="https://d")])
    assert len(merged) == 1
    one = merged[0]
    assert (one.address, one.source, one.uri, one.region) == ("0xdef", "json_url", "https://d", "eu")


def test_addresses_a_gateway_saw_without_scope_are_left_out() -> None:
    snapshots = [snap("0xNoScope", "registered"), snap("0xscope", "json_url"),
                 snap("0xBoth", "registered"), snap("0xboth", "gateway", offers_scope=True)]
    merged = merge_snapshots(snapshots, not_scope={"0xnoscope", "0xBOTH"})
    assert sorted(m.address.lower() for m in merged) == ["0xboth", "0xscope"]


# --- URLs --------------------------------------------------------------------------------------


def test_urls_are_redacted_and_joined() -> None:
    redacted = redact_url("https://user:pw@gw.example:8935/caps?token=s3cret&x=1")
    assert redacted == "https://gw.example:8935/caps?token=***&x=***"
    assert endpoint_url("http://gw:8935", "/getNetworkCapabilities") == "http://gw:8935/getNetworkCapabilities"
    assert endpoint_url("http://gw:8935/api/?k=v", "/x") == "http://gw:8935/api/x?k=v"
    assert endpoint_url("http://gw/x/", "/x") == "http://gw/x/"


# --- reading sources over HTTP -------------------------------------------------------------------

GW = "http://gw.test"
SECRET = "tok-7f3e-not-for-logs"


def routes(mapping: dict[str, Any]) -> httpx.MockTransport:
    """A transport answering each path from `mapping`: a payload (JSON), an httpx.Response, or an exception."""

    async def handler(request: httpx.Request) -> httpx.Response:
        answer = mapping[request.url.path]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    return httpx.MockTransport(handler)


def discovery(**fields: Any) -> Discovery:
    return Discovery(**({"timeout_s": 2.0} | fields))


def run(config: Discovery, transport: httpx.MockTransport, **kwargs: Any):
    return asyncio.run(discover_orchestrators(config, now=AT, transport=transport, **kwargs))


def test_sources_are_merged_and_malformed_entries_counted() -> None:
    first, second = gateway_entry("0xB1"), gateway_entry("0xF2")
    other = gateway_entry("0x03", model="streamdiffusion")
    transport = routes({
        "/getNetworkCapabilities": {"orchestrators": [first, second, other, "junk", {"capabilities": {}}]},
        "/registeredOrchestrators": [{"Address": "0xb1", "ServiceURI": "https://b1", "Active": True},
                                     {"Address": "0x03", "ServiceURI": "https://03", "Active": True},
                                     {"Address": "0xIN", "ServiceURI": "https://in", "Active": False}],
        "/list": [{"address": "0xf2", "region": "eu"}, {"address": "0xL1", "uri": "https://l1"}, {"region": "x"}],
    })
    config = discovery(gateway_urls=[GW], registered_orchestrators_urls=[GW], json_list_urls=[f"{GW}/list"],
                       orchestrators=[StaticOrchestrator(address="0xS1", uri="https://s1")])
    result = run(config, transport)
    by_address = {s.address: s for s in result.snapshots}
    assert set(by_address) == {"0xb1", "0xf2", "0xl1", "0xs1"}
    assert by_address["0xb1"].source == "gateway+registered" and by_address["0xf2"].region == "eu"
    assert result.not_scope == ("0x03",)
    stats = {s.source: s for s in result.sources}
    assert (stats["gateway"].entries, stats["gateway"].skipped, stats["gateway"].excluded) == (2, 2, 1)
    assert (stats["registered"].entries, stats["registered"].excluded) == (2, 1)
    assert (stats["json_url"].entries, stats["json_url"].skipped) == (2, 1)
    assert stats["static"].ok and stats["static"].url is None
    counts = result.counts()
    assert (counts["orchestrators"], counts["skipped_malformed"], counts["sources_failed"]) == (4, 3, 0)
    assert result.snapshot_id.startswith("discovery-20250304T050607")


def failing_answers() -> dict[str, Any]:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=[])

    async def endless(request: httpx.Request) -> httpx.Response:
        async def chunks():
            for _ in range(1000):
                yield b"[" * 1024
        return httpx.Response(200, content=chunks())  # no content-length: the cap is found while reading

    return {
        "/refused": httpx.ConnectError("connection refused"),
        "/status": httpx.Response(503, text="down"),
        "/html": httpx.Response(200, text="<html>"),
        "/declared-big": httpx.Response(200, content=b"[" + b" " * 5000 + b"]"),
        "/streamed-big": endless,
        "/slow": hang,
        "/ok": [{"address": "0xOK"}],
    }


def test_a_failing_source_is_logged_and_the_others_still_count(caplog: pytest.LogCaptureFixture) -> None:
    failing = ["/refused", "/status", "/html", "/declared-big", "/streamed-big", "/slow"]
    urls = [f"http://user:{SECRET}@gw.test{path}?token={SECRET}" for path in failing] + [f"{GW}/ok"]
    with caplog.at_level(logging.WARNING, logger="tasks.fleet.discovery"):
        config = discovery(json_list_urls=urls, timeout_s=0.2)
        result = run(config, routes(failing_answers()), max_response_bytes=4096)
    assert [s.address for s in result.snapshots] == ["0xok"]
    stats = {s.url.split("?")[0].rsplit("/", 1)[1]: s for s in result.sources}
    assert [name for name, s in stats.items() if not s.ok] == [p.strip("/") for p in failing]
    assert stats["refused"].failure_category == stats["slow"].failure_category == Category.NETWORK
    assert stats["status"].failure_category == Category.PROTOCOL and "503" in stats["status"].error
    assert "cap" in stats["declared-big"].error and "cap" in stats["streamed-big"].error
    assert not result.all_failed
    logged = caplog.text
    assert all(path in logged for path in failing)
    assert SECRET not in logged and SECRET not in json.dumps([s.__dict__ for s in result.sources], default=str)


def test_every_source_failing_is_reported() -> None:
    result = run(discovery(gateway_urls=[GW]), routes({"/getNetworkCapabilities": httpx.Response(500)}))
    assert result.all_failed and result.snapshots == ()
    assert not run(discovery(), routes({})).all_failed  # nothing configured is not a failure


def test_snapshots_land_as_one_file_per_discovery(tmp_path) -> None:
    transport = routes({"/getNetworkCapabilities": [gateway_entry("0xL4")]})
    result = run(discovery(gateway_urls=[GW]), transport)
    lake = Lake(tmp_path)
    path = land_discovery(lake, result)
    assert path is not None and path.stem == result.snapshot_id
    rows = lake.query("SELECT address, source, capacity, gpu_name FROM orchestrators").rows
    assert rows == [("0xl4", "gateway", 2, "NVIDIA L40S")]
    markdown = discovery_markdown(result)
    assert "0xl4" in markdown and "| gateway |" in markdown


CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 casing, as a gateway reports it


def test_a_checksummed_gateway_address_and_a_lowercase_listed_one_are_one_orchestrator(tmp_path) -> None:
    transport = routes({"/getNetworkCapabilities": [gateway_entry(CHECKSUMMED)],
                        "/list": [{"address": CHECKSUMMED.lower(), "uri": "https://listed", "region": "eu"}]})
    result = run(discovery(gateway_urls=[GW], json_list_urls=[f"{GW}/list"]), transport)
    (one,) = result.snapshots
    assert (one.address, one.source, one.region) == (CHECKSUMMED.lower(), "gateway+json_url", "eu")
    lake = Lake(tmp_path)
    land_discovery(lake, result)
    assert lake.query("SELECT address FROM orchestrators").rows == [(CHECKSUMMED.lower(),)]
