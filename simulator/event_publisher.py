"""Publishing Scope's event envelopes to Kafka from a background queue, as Scope's kafka_publisher does.

Enabled by `KAFKA_BOOTSTRAP_SERVERS` in the simulator's environment (topic `$KAFKA_TOPIC`,
default `scope-events`; SASL_SSL with PLAIN when `KAFKA_SASL_USERNAME`/`KAFKA_SASL_PASSWORD`
are both set, as Scope does). `publish` only builds the envelope and queues it: a session is
never slowed or broken by the broker. A broker that is down, slow or refusing means the event
is dropped and counted (`/_sim/truth` → `events`); connecting is retried every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

BOOTSTRAP_ENV, TOPIC_ENV = "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC"
USERNAME_ENV, PASSWORD_ENV = "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"
DEFAULT_TOPIC = "scope-events"
QUEUE_LIMIT = 10_000
CONNECT_TIMEOUT_S = 3.0
SEND_TIMEOUT_S = 3.0
RETRY_CONNECT_S = 3.0  # after a failed connect, events are dropped at once for this long
CLOSE_FLUSH_S = 2.0  # at shutdown, queued events get this long to go out


def envelope(event_type: str, data: Mapping[str, Any], *, timestamp_ms: int) -> dict:
    """Scope's envelope: `{"id", "type": "stream_trace", "timestamp": "<ms>", "data": {...}}`."""
    stamp = str(timestamp_ms)
    body = {"type": event_type, "client_source": "scope", "timestamp": stamp, **data}
    return {"id": str(uuid.uuid4()), "type": "stream_trace", "timestamp": stamp, "data": body}


class KafkaPublisher:
    """Queues envelopes and sends them from one background task on the server's event loop."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.bootstrap = env.get(BOOTSTRAP_ENV) or None
        self.topic = env.get(TOPIC_ENV) or DEFAULT_TOPIC
        self._sasl = (env.get(USERNAME_ENV), env.get(PASSWORD_ENV))
        self.published = self.dropped = 0
        self._queue: asyncio.Queue[dict] | None = None
        self._task: asyncio.Task | None = None
        self._producer: AIOKafkaProducer | None = None
        self._retry_at = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaPublisher(topic={self.topic!r}, published={self.published}, dropped={self.dropped})"

    @property
    def enabled(self) -> bool:
        """True when a bootstrap server is configured."""
        return self.bootstrap is not None

    def publish(self, message: dict) -> None:
        """Queue one envelope (must be called on the server's loop); a full queue or a closed publisher drops it."""
        if not self.enabled:
            return
        if self._closed:
            self.dropped += 1
            return
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="scope-sim-kafka")
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    def truth(self) -> dict:
        """Counts for `/_sim/truth`."""
        pending = self._queue.qsize() if self._queue is not None else 0
        return {"enabled": self.enabled, "topic": self.topic, "published": self.published,
                "dropped": self.dropped, "pending": pending}

    def reset_counts(self) -> None:
        """Forget the counts (a simulator reset); queued events still go out."""
        self.published = self.dropped = 0

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            message = await self._queue.get()
            try:
                await self._send(message)
            finally:
                self._queue.task_done()

    async def _send(self, message: dict) -> None:
        if self._producer is None and not await self._connect():
            self.dropped += 1
            return
        assert self._producer is not None
        value = json.dumps(message).encode()
        try:
            await asyncio.wait_for(self._producer.send_and_wait(self.topic, value, key=message["id"].encode()),
                                   SEND_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            self.dropped += 1
            await self._drop_producer()
            return
        self.published += 1

    async def _connect(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        producer = AIOKafkaProducer(**self._options())
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            self._retry_at = time.monotonic() + RETRY_CONNECT_S
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), CONNECT_TIMEOUT_S)
            return False
        self._producer = producer
        return True

    def _options(self) -> dict[str, Any]:
        timeout_ms = int(SEND_TIMEOUT_S * 1000)
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "request_timeout_ms": timeout_ms,
                                   "client_id": "scope-sim"}
        username, password = self._sasl
        if username and password:  # as Scope: SASL_SSL + PLAIN only when both are set
            options |= {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": username,
                        "sasl_plain_password": password, "ssl_context": ssl.create_default_context()}
        return options

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), CONNECT_TIMEOUT_S)

    async def close(self) -> None:
        """Send what is queued (bounded), then stop the producer; later events are dropped (never raises)."""
        self._closed = True
        queue, task = self._queue, self._task
        if queue is not None and task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.join(), CLOSE_FLUSH_S)
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, CONNECT_TIMEOUT_S)
            self.dropped += queue.qsize()
        await self._drop_producer()
