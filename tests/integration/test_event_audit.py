"""The event audit end to end: real relay sessions on the simulator, its events through a real
Kafka-protocol broker (Tansu), read, joined and audited by the run itself.

Each of the simulator's event profiles brings back one defect the cloud parity fix removed; the
run must name it. A healthy relay run is complete, and a run whose broker is down still finishes,
its audit marked "no events source".
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from config.settings import Settings
from tasks.scope.client import ScopeTimeouts
from tests.integration.kafka_broker import KafkaBroker, free_port, running_kafka
from tests.integration.sessions import run_on_simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
HEARTBEAT_S = 0.3
STREAM_S = 2.5  # long enough for the 2 heartbeats the parity contract asks for
FAST_TIMEOUTS = ScopeTimeouts(connect_s=2.0, read_s=2.0, frame_s=2.0, upload_s=30.0)
SCENARIO = "longlive_v2v_15s"  # video mode: heartbeats are only emitted while input frames arrive
# profile -> the finding kind the run must report (None: complete)
EXPECTED = {
    "healthy": None,
    "events_null_ids": "null_ids",
    "events_no_heartbeats": "missing",
    "events_no_session_events": "missing",
    "events_cloud_connection_id": "mismatched_ids",
}
DETAIL = {"events_no_heartbeats": "stream_heartbeat", "events_no_session_events": "session_created"}


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with running_kafka() as running:
        yield running


def events_settings(settings: Settings, **changes: object) -> Settings:
    """The demo settings with the events section changed."""
    return settings.model_copy(update={"events": settings.events.model_copy(update=changes)})


@pytest.fixture
def publishing(broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> str:
    """The simulator (served in this process) publishes to a fresh topic, heartbeats every HEARTBEAT_S."""
    topic = f"scope-events-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC", topic)
    monkeypatch.setenv("SCOPE_SIM_HEARTBEAT_S", str(HEARTBEAT_S))
    return topic


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_each_event_profile_is_named_by_the_runs_audit(profile, demo_settings, lake, broker, publishing):
    settings = events_settings(demo_settings, bootstrap_servers=broker.bootstrap, topic=publishing,
                               heartbeat_interval_s=HEARTBEAT_S, grace_s=1.0)
    record, _ = asyncio.run(run_on_simulator(settings, lake, profile=profile, scenario=SCENARIO,
                                             duration_s=STREAM_S, timeouts=FAST_TIMEOUTS))
    assert record.outcome == "passed", record.failure_reason  # the audit never changes the verdict by default
    assert (record.media_path, record.events_source) == ("relay", "kafka")
    kinds = {finding.split(":")[0] for finding in record.events_findings}
    expected = EXPECTED[profile]
    if expected is None:
        assert record.events_complete is True and record.events_findings == ()
    else:
        assert record.events_complete is False and expected in kinds, record.events_findings
        detail = DETAIL.get(profile)
        assert detail is None or any(detail in f for f in record.events_findings), record.events_findings
    landed = lake.query("SELECT count(*), count(DISTINCT type) FROM events WHERE run_id = ?", [record.run_id]).rows
    assert landed[0][0] == record.events_seen and landed[0][0] > 0


def test_a_run_whose_broker_is_down_finishes_without_an_events_source(demo_settings, lake):
    settings = events_settings(demo_settings, bootstrap_servers=f"127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    record, _ = asyncio.run(run_on_simulator(settings, lake, scenario=SCENARIO, duration_s=2.0,
                                             timeouts=FAST_TIMEOUTS))
    assert record.outcome == "passed" and record.events_source == "none" and record.events_complete is None


def test_required_events_fail_a_run_whose_events_are_incomplete(demo_settings, lake, broker, publishing):
    settings = events_settings(demo_settings, bootstrap_servers=broker.bootstrap, topic=publishing,
                               heartbeat_interval_s=HEARTBEAT_S, grace_s=1.0, required=True)
    record, _ = asyncio.run(run_on_simulator(settings, lake, profile="events_no_session_events", scenario=SCENARIO,
                                             duration_s=STREAM_S, timeouts=FAST_TIMEOUTS))
    assert record.outcome == "failed" and record.checks_failed == ("events",)
    assert record.failure_category == "protocol" and "missing" in record.failure_reason
