"""Scope's lifecycle events read from Kafka, as one run's EventSource.

Every run reads the whole topic on its own: no consumer group, the topic's partitions are
assigned by hand and each is read from its end offset at `start()` (a topic that did not exist
then is read from its beginning once it appears: everything in it came later). Any number of
concurrent runs therefore see every event, and nothing is committed to the broker.

Scope creates the topic with its first publish, so a missing topic is not an error: the reader
asks for the cluster's metadata (all topics, which never auto-creates one) until it appears.
Partitions added to the topic after it was assigned are not read.

Kafka errors are caught here and nowhere else: a broker that does not answer within
`connect_timeout_s` raises EventSourceUnavailable from `start()`; a failure while reading is
counted (`read_errors`) and retried, never raised into the run. SASL credentials come from the
environment variables the config names and go straight to aiokafka: they are not kept on this
object, logged, or shown in its repr.

Tansu (the Kafka-protocol broker the tests run) differs from Apache Kafka where this module
would notice, so the module does not rely on these: ListOffsets by timestamp answers
`offset 0, timestamp -1` for an empty partition where Kafka answers -1 (aiokafka: None), which
is why start positions come from end offsets and not from `offsets_for_times`; an auto-created
topic gets 4 partitions (Kafka's default `num.partitions` is 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from config.events import EventsSettings
from errors import Category, HarnessError
from tasks.events.envelope import EnvelopeError, parse_envelope
from tasks.events.sources import ReceivedEvent

logger = logging.getLogger(__name__)

SOURCE_NAME = "kafka"
CLIENT_ID = "scope-loadtest-events"
FETCH_WAIT_MS = 100  # how long a fetch waits for data: bounds the read latency
POLL_MS = 200  # one getmany call
TOPIC_POLL_S = 0.25  # metadata poll while the topic does not exist yet
ERROR_BACKOFF_S = 0.5
STOP_TIMEOUT_S = 3.0
MAX_EVENTS_KEPT = 100_000  # a run keeps this many events; later ones are counted in `dropped`


class EventSourceUnavailable(HarnessError):
    """The event source could not be reached (no broker configured, or none answered in time)."""

    default_category = Category.HARNESS


def client_options(settings: EventsSettings, environ: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap, security and timeouts (EventSourceUnavailable without a bootstrap)."""
    bootstrap = settings.bootstrap_servers or environ.get(settings.bootstrap_env)
    if not bootstrap:
        raise EventSourceUnavailable(f"no Kafka bootstrap servers (config events.bootstrap_servers or "
                                     f"${settings.bootstrap_env})")
    timeout_ms = max(int(timeout_s * 1000), 1000)
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": CLIENT_ID,
                               "request_timeout_ms": timeout_ms, "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        options |= {"sasl_mechanism": settings.sasl_mechanism,
                    "sasl_plain_username": environ.get(settings.sasl_username_env),
                    "sasl_plain_password": environ.get(settings.sasl_password_env)}
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context()
    return options


class KafkaEventSource:
    """Reads Scope's event topic from the moment `start()` returns until `stop()`."""

    name = SOURCE_NAME

    def __init__(self, settings: EventsSettings, *, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = os.environ if environ is None else environ
        self.topic = settings.topic
        self.skipped = 0  # malformed messages (not an envelope): counted, never kept
        self.dropped = 0  # well-formed events beyond MAX_EVENTS_KEPT
        self.read_errors = 0  # Kafka errors while reading (each retried)
        self._events: list[ReceivedEvent] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"KafkaEventSource(topic={self.topic!r}, received={len(self._events)}, skipped={self.skipped})"

    async def start(self) -> None:
        """Connect and remember the topic's end offsets; EventSourceUnavailable when no broker answers in time."""
        timeout_s = self._settings.connect_timeout_s
        options = client_options(self._settings, self._environ, timeout_s)
        self._admin = AIOKafkaAdminClient(**options)
        self._consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS)
        try:
            async with asyncio.timeout(timeout_s):
                await self._admin.start()
                await self._consumer.start()
                partitions = await self._partitions()
                if partitions:
                    await self._assign(partitions, at_end=True)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._close_clients()
            reason = "did not answer" if isinstance(exc, TimeoutError) else f"failed: {type(exc).__name__}: {exc}"
            raise EventSourceUnavailable(f"Kafka at {options['bootstrap_servers']} {reason} "
                                         f"within {timeout_s:g} s") from None
        self._task = asyncio.create_task(self._read(assigned=bool(partitions)), name="kafka-event-source")

    async def _partitions(self) -> list[int]:
        """The topic's partition ids from the cluster's metadata (empty while it does not exist)."""
        assert self._admin is not None
        for entry in await self._admin.describe_topics(None):  # None: all topics, never auto-creates one
            if entry.get("topic") == self.topic and entry.get("error_code", 0) == 0:
                return sorted(p["partition"] for p in entry.get("partitions", []))
        return []

    async def _assign(self, partitions: list[int], *, at_end: bool) -> None:
        assert self._consumer is not None
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(tps)
        if at_end:
            for tp, offset in (await self._consumer.end_offsets(tps)).items():
                self._consumer.seek(tp, offset)
        else:
            for tp in tps:
                self._consumer.seek(tp, 0)  # the topic appeared after start: all of it is new

    async def _read(self, *, assigned: bool) -> None:
        while not assigned:
            assigned = await self._try_assign_new_topic()
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS)
            except KafkaError as exc:
                self._note_error("reading", exc)
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            for tp, records in batches.items():
                for record in records:
                    self._keep(record.value, tp, record.offset)

    async def _try_assign_new_topic(self) -> bool:
        try:
            partitions = await self._partitions()
            if partitions:
                await self._assign(partitions, at_end=False)
                return True
        except KafkaError as exc:
            self._note_error("reading metadata", exc)
        await asyncio.sleep(TOPIC_POLL_S)
        return False

    def _note_error(self, doing: str, exc: Exception) -> None:
        self.read_errors += 1
        logger.warning("Kafka event source: error %s topic %s: %s: %s", doing, self.topic, type(exc).__name__, exc)

    def _keep(self, value: bytes | None, tp: TopicPartition, offset: int) -> None:
        try:
            event = parse_envelope(value if value is not None else b"")
        except EnvelopeError:
            self.skipped += 1
            return
        if len(self._events) >= MAX_EVENTS_KEPT:
            self.dropped += 1
            return
        self._events.append(ReceivedEvent(event=event, received_at=dt.datetime.now(dt.timezone.utc),
                                          source=SOURCE_NAME, topic=tp.topic, partition=tp.partition, offset=offset))

    def received(self) -> list[ReceivedEvent]:
        """Every event read so far, in the order read (per partition in offset order)."""
        return list(self._events)

    async def stop(self) -> None:
        """Stop reading and close the connections (idempotent, bounded in time, never raises)."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
        await self._close_clients()

    async def _close_clients(self) -> None:
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        for client in (consumer, admin):
            if client is None:
                continue
            try:
                await asyncio.wait_for(client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop(),
                                       STOP_TIMEOUT_S)
            except Exception as exc:  # closing must never fail a run
                logger.warning("Kafka event source: closing %s failed: %s", type(client).__name__, exc)
