"""The simulator publishes Scope's lifecycle events to a real Kafka-protocol broker (Tansu), read back
with the harness's KafkaEventSource: the ids each event carries, and each defect profile's defect."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import pytest_asyncio
from sim_helpers import FAST
from test_sim_webrtc import RtcClient, load, session_truth, until, until_async

from config.events import EventsSettings
from simulator.testing import SimHandle, running_simulator
from tasks.events.kafka_source import KafkaEventSource
from tasks.events.sources import ReceivedEvent
from tests.integration.kafka_broker import LOOPBACK, KafkaBroker, free_port, running_kafka

pytestmark = pytest.mark.integration
HEARTBEAT_S = 0.3
VIDEO = {"pipeline_ids": ["passthrough"], "input_mode": "video", "produces_video": True}
USER, INFO = "user-7", {"gpu_type": "none", "region": "local"}
SESSION_EVENTS = ["stream_started", "session_created", "playback_ready", "stream_heartbeat", "stream_stopped",
                  "session_closed"]
Events = Callable[[], list[ReceivedEvent]]


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    """One broker for the module."""
    with running_kafka() as running:
        yield running


@pytest.fixture(scope="module")
def events_sim(broker: KafkaBroker) -> Iterator[tuple[SimHandle, str]]:
    """A simulator publishing to the broker (fast heartbeats), and its topic."""
    topic = f"scope-events-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
        patch.setenv("KAFKA_TOPIC", topic)
        patch.setenv("SCOPE_SIM_HEARTBEAT_S", str(HEARTBEAT_S))
        with running_simulator("healthy", overrides=FAST, seed=3) as sim:
            yield sim, topic


@pytest_asyncio.fixture(loop_scope="function")
async def source(broker: KafkaBroker, events_sim: tuple[SimHandle, str]) -> AsyncIterator[KafkaEventSource]:
    """The reset simulator's topic, read from now on."""
    sim, topic = events_sim
    sim.set_profile("healthy", FAST)
    sim.reset()
    reader = KafkaEventSource(EventsSettings(bootstrap_servers=broker.bootstrap, topic=topic), environ={})
    await reader.start()
    yield reader
    await reader.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def http(events_sim: tuple[SimHandle, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on the simulator."""
    async with httpx.AsyncClient(base_url=events_sim[0].url, timeout=10.0) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[RtcClient]:
    """One peer sending the synthetic clip."""
    peer = RtcClient()
    yield peer
    await peer.close()


def of(source: KafkaEventSource, **ids: str | None) -> list[dict]:
    """The data of the events whose ids match, in emission order."""
    events = sorted(source.received(), key=lambda r: (r.event.emitted_at, r.offset))
    return [r.event.data for r in events if all(r.event.data.get(k) == v for k, v in ids.items())]


def types(events: list[dict]) -> list[str]:
    """Event types, in order."""
    return [e["type"] for e in events]


async def stream(http: httpx.AsyncClient, client: RtcClient, run_id: str, *, heartbeats: int = 2) -> dict:
    """Offer as run `run_id`, stream for `heartbeats` heartbeat periods past the first frame, delete; its truth."""
    offered = await client.offer(http, VIDEO, connection_id=run_id, user_id=USER, connection_info=INFO)
    assert offered.status_code == 200, offered.text
    await until(lambda: client.frames, what="a first frame")
    await asyncio.sleep(HEARTBEAT_S * (heartbeats + 0.6))  # the period is the thing under test
    assert (await http.delete(f"/api/v1/webrtc/offer/{client.session_id}")).status_code == 204
    return await session_truth(http, client.session_id)


async def relay_connect(http: httpx.AsyncClient) -> str:
    """Connect to the cloud as USER and load passthrough there; the manifest id."""
    await http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws", "user_id": USER})

    async def manifest() -> str | None:
        return (await http.get("/api/v1/cloud/status")).json()["connection_id"]

    manifest_id = await until_async(manifest, what="connected")
    await load(http, "passthrough")
    return manifest_id


async def test_local_webrtc_and_headless_sessions(http: httpx.AsyncClient, client: RtcClient,
                                                  source: KafkaEventSource) -> None:
    await load(http, "passthrough")
    truth = await stream(http, client, "run-local")
    await until(lambda: "session_closed" in types(of(source, connection_id="run-local")), what="session_closed")
    session = of(source, connection_id="run-local")
    assert [t for t in types(session) if t != "stream_heartbeat"] == [t for t in SESSION_EVENTS if "heart" not in t]
    assert types(session).count("stream_heartbeat") >= 2
    assert all(e["user_id"] == USER and e["session_id"] == client.session_id for e in session)
    assert all(e["connection_info"] == INFO for e in session) and session[0]["mode"] == "local"
    ready = next(e for e in session if e["type"] == "playback_ready")
    assert abs(ready["ttff_ms"] - truth["first_frame_s"] * 1000) <= 1
    beat = next(e for e in session if e["type"] == "stream_heartbeat")
    assert beat["frames_in"] > 0 and beat["fps_out"] > 0 and beat["elapsed_ms"] >= HEARTBEAT_S * 1000
    loads = [e for e in of(source) if e["type"].startswith("pipeline_")]
    assert types(loads)[:2] == ["pipeline_load_start", "pipeline_loaded"]
    assert all("connection_id" not in e and "session_id" not in e and e["pipeline_ids"] for e in loads)
    await load(http, "longlive")
    started = await http.post("/api/v1/session/start", json={"pipeline_id": "longlive",
                                                             "prompts": [{"text": "a cliff", "weight": 1.0}]})
    assert started.status_code == 200, started.text
    await asyncio.sleep(0.3)
    assert (await http.post("/api/v1/session/stop")).status_code == 200
    await until(lambda: "stream_stopped" in types(of(source, mode="local", pipeline_ids=["longlive"])),
                what="the headless stream_stopped")
    headless = of(source, pipeline_ids=["longlive"], mode="local")
    assert types(headless) == ["stream_started", "stream_stopped"] and headless[1]["frames_out"] > 0
    assert all(e["session_id"].startswith("headless-") and not {"connection_id", "user_id"} & e.keys()
               for e in headless)
    assert "pipeline_unloaded" in types(of(source, pipeline_ids=["passthrough"]))


async def test_relay_session_carries_one_connection_id_from_connect_to_disconnect(
        http: httpx.AsyncClient, client: RtcClient, source: KafkaEventSource) -> None:
    await relay_connect(http)
    await stream(http, client, "run-relay")
    await http.post("/api/v1/cloud/disconnect")
    await until(lambda: "websocket_disconnected" in types(of(source, connection_id="run-relay")),
                what="websocket_disconnected")
    relay = of(source, connection_id="run-relay")
    assert types(relay)[:3] == ["websocket_connected", "pipeline_load_start", "pipeline_loaded"]
    # Events are keyed by their own ids, so they spread over partitions: only their timestamps order them.
    assert types(relay)[-3:] == ["stream_stopped", "session_closed", "websocket_disconnected"]
    assert types(relay)[3:5] == ["stream_started", "session_created"]  # Scope starts the stream first, on both paths
    assert "playback_ready" in types(relay)
    assert types(relay).count("stream_heartbeat") >= 2 and all(e["user_id"] == USER for e in relay)
    mode = {e["type"]: e.get("mode") for e in relay}
    assert mode["stream_started"] == "relay" and mode["stream_stopped"] == "cloud" and mode["session_closed"] is None


async def defect_run(http: httpx.AsyncClient, client: RtcClient, source: KafkaEventSource, sim: SimHandle,
                     profile: str) -> tuple[str, list[dict]]:
    """A relay session under `profile`, through disconnect; the manifest id and every event of the test."""
    sim.set_profile(profile, FAST)
    manifest_id = await relay_connect(http)
    await stream(http, client, f"run-{profile}")
    await http.post("/api/v1/cloud/disconnect")
    await until(lambda: "websocket_disconnected" in types(of(source)), what="websocket_disconnected")
    return manifest_id, [e for e in of(source) if e.get("session_id") in (None, client.session_id)]


async def test_events_null_ids(http, client, source, events_sim) -> None:
    _, events = await defect_run(http, client, source, events_sim[0], "events_null_ids")
    session = [e for e in events if e["type"] in SESSION_EVENTS]
    assert set(types(session)) >= {"stream_started", "session_created", "stream_stopped", "session_closed"}
    assert all(e["connection_id"] is None and e["user_id"] is None for e in events)  # present, and null


async def test_events_no_heartbeats(http, client, source, events_sim) -> None:
    _, events = await defect_run(http, client, source, events_sim[0], "events_no_heartbeats")
    truth = await session_truth(http, client.session_id)
    assert truth["frames_in"] > 0 and "session_closed" in types(events)
    assert "stream_heartbeat" not in types(events)


async def test_events_no_session_events(http, client, source, events_sim) -> None:
    _, events = await defect_run(http, client, source, events_sim[0], "events_no_session_events")
    assert {"stream_started", "stream_stopped", "stream_heartbeat"} <= set(types(events))
    assert not {"session_created", "session_closed"} & set(types(events))


async def test_events_cloud_connection_id(http, client, source, events_sim) -> None:
    manifest_id, events = await defect_run(http, client, source, events_sim[0], "events_cloud_connection_id")
    cloud = [e for e in events if e["type"].startswith(("websocket_", "pipeline_"))]
    assert {"websocket_connected", "pipeline_loaded", "websocket_disconnected"} <= set(types(cloud))
    assert {e["connection_id"] for e in cloud} == {manifest_id} != {"run-events_cloud_connection_id"}
    local = [e for e in events if e["type"] in SESSION_EVENTS]
    assert {e["connection_id"] for e in local} == {"run-events_cloud_connection_id"}


def test_a_broker_that_is_down_drops_events_without_slowing_the_server() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"{LOOPBACK}:{free_port()}")
        with running_simulator("healthy", overrides=FAST) as sim, httpx.Client(base_url=sim.url, timeout=5) as http:
            started = time.monotonic()
            assert http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["passthrough"]}).status_code == 200
            while http.get("/api/v1/pipeline/status").json()["status"] != "loaded":
                assert time.monotonic() - started < 5, "the load should finish as without Kafka"
                time.sleep(0.02)
            deadline = time.monotonic() + 5
            while (counts := sim.truth()["events"])["dropped"] < 2:
                assert time.monotonic() < deadline, counts
                time.sleep(0.05)
    assert counts["enabled"] and counts["published"] == 0 and time.monotonic() - started < 8
