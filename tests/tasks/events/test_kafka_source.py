"""KafkaEventSource through a real Kafka-protocol broker (Tansu): offsets, malformed messages,
independent concurrent readers, a topic that appears late, a broker that is down, a bounded stop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaProducer

from config.events import EventsSettings
from tasks.events.kafka_source import EventSourceUnavailable, KafkaEventSource
from tests.integration.kafka_broker import LOOPBACK, KafkaBroker, free_port, running_kafka

pytestmark = pytest.mark.integration
WAIT_S = 10.0


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    """One broker for the module (each test uses its own topic)."""
    with running_kafka() as running:
        yield running


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"scope-events-{uuid.uuid4().hex[:8]}"


def settings_for(bootstrap: str, topic: str, **changes: object) -> EventsSettings:
    """Events settings pointing at `bootstrap`."""
    return EventsSettings(bootstrap_servers=bootstrap, topic=topic, connect_timeout_s=3.0).model_copy(update=changes)


def envelope(event_type: str, session_id: str = "s-1", connection_id: str | None = "run-1") -> bytes:
    """A Scope envelope as Scope publishes it."""
    now = str(int(time.time() * 1000))
    data = {"type": event_type, "client_source": "scope", "timestamp": now, "session_id": session_id}
    if connection_id:
        data["connection_id"] = connection_id
    return json.dumps({"id": str(uuid.uuid4()), "type": "stream_trace", "timestamp": now, "data": data}).encode()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Publish `values` with a fresh producer, waiting for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=uuid.uuid4().hex.encode())
    finally:
        await producer.stop()


async def until(probe: Callable[[], object], *, timeout_s: float = WAIT_S, what: str) -> None:
    """Poll `probe` until truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_reads_what_is_published_after_start_with_its_offsets(broker: KafkaBroker, topic: str) -> None:
    await produce(broker.bootstrap, topic, [envelope("before_start")])
    source = KafkaEventSource(settings_for(broker.bootstrap, topic), environ={})
    await source.start()
    try:
        await produce(broker.bootstrap, topic, [envelope(f"e{i}", session_id=f"s{i}") for i in range(6)])
        await until(lambda: len(source.received()) >= 6, what="six events")
    finally:
        await source.stop()
    received = source.received()
    assert sorted(r.event.type for r in received) == [f"e{i}" for i in range(6)]  # not `before_start`
    assert all(r.source == "kafka" and r.topic == topic and r.event.connection_id == "run-1" for r in received)
    positions = {(r.partition, r.offset) for r in received}
    assert len(positions) == 6 and all(p is not None and o is not None and o >= 0 for p, o in positions)


async def test_malformed_messages_are_skipped_and_counted(broker: KafkaBroker, topic: str) -> None:
    await produce(broker.bootstrap, topic, [envelope("warm_up")])
    source = KafkaEventSource(settings_for(broker.bootstrap, topic), environ={})
    await source.start()
    try:
        await produce(broker.bootstrap, topic, [b"not json", b'{"data": {}}', b"[1]", envelope("stream_started")])
        await until(lambda: source.skipped == 3 and source.received(), what="three skipped, one kept")
    finally:
        await source.stop()
    assert [r.event.type for r in source.received()] == ["stream_started"]


async def test_concurrent_sources_each_read_everything(broker: KafkaBroker, topic: str) -> None:
    await produce(broker.bootstrap, topic, [envelope("warm_up")])
    sources = [KafkaEventSource(settings_for(broker.bootstrap, topic), environ={}) for _ in range(2)]
    await asyncio.gather(*(s.start() for s in sources))
    try:
        await produce(broker.bootstrap, topic, [envelope(f"e{i}") for i in range(20)])
        await until(lambda: all(len(s.received()) == 20 for s in sources), what="both sources read all 20")
    finally:
        await asyncio.gather(*(s.stop() for s in sources))
    ids = [sorted(r.event.event_id for r in s.received()) for s in sources]
    assert ids[0] == ids[1] and len(set(ids[0])) == 20


async def test_a_topic_created_after_start_is_read_from_its_beginning(broker: KafkaBroker, topic: str) -> None:
    source = KafkaEventSource(settings_for(broker.bootstrap, topic), environ={})
    await source.start()  # the topic does not exist yet: Scope creates it with its first publish
    try:
        await asyncio.sleep(0.3)  # let the reader find no topic at least once
        await produce(broker.bootstrap, topic, [envelope("stream_started"), envelope("stream_stopped")])
        await until(lambda: len(source.received()) == 2, what="the late topic's events")
    finally:
        await source.stop()
    assert sorted(r.event.type for r in source.received()) == ["stream_started", "stream_stopped"]


async def test_nothing_listening_is_unavailable_at_once() -> None:
    source = KafkaEventSource(settings_for(f"{LOOPBACK}:{free_port()}", "scope-events", connect_timeout_s=2.0),
                              environ={})
    started = time.monotonic()
    with pytest.raises(EventSourceUnavailable) as caught:
        await source.start()
    assert time.monotonic() - started < 2.5 and caught.value.category == "harness"
    await source.stop()  # after a failed start: still fine


async def test_a_broker_that_never_answers_is_unavailable_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) but never speaks Kafka
        silent.bind((LOOPBACK, 0))
        silent.listen(8)
        bootstrap = f"{LOOPBACK}:{silent.getsockname()[1]}"
        source = KafkaEventSource(settings_for(bootstrap, "scope-events", connect_timeout_s=1.0), environ={})
        started = time.monotonic()
        with pytest.raises(EventSourceUnavailable, match="did not answer within 1 s"):
            await source.start()
        assert 0.9 < time.monotonic() - started < 4.0  # the timeout, plus a bounded close


async def test_no_bootstrap_is_unavailable() -> None:
    source = KafkaEventSource(EventsSettings(), environ={})
    with pytest.raises(EventSourceUnavailable, match="KAFKA_BOOTSTRAP_SERVERS"):
        await source.start()


async def test_bootstrap_from_the_environment_and_stop_is_bounded_and_idempotent(broker: KafkaBroker,
                                                                                   topic: str) -> None:
    environ = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_SASL_PASSWORD": "hunter2-secret"}
    source = KafkaEventSource(EventsSettings(topic=topic, connect_timeout_s=3.0), environ=environ)
    await source.start()
    assert "hunter2" not in repr(source) and "hunter2" not in str(vars(source).get("_settings"))
    started = time.monotonic()
    await source.stop()
    await source.stop()
    assert time.monotonic() - started < 3.0 and source.received() == []
