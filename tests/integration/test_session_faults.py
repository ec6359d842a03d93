"""Every simulator profile judged by a real session over loopback: outcome, check, category, phase.

The main table drives the WebRTC relay (the default on a cloud-connected instance: the only path
through the orchestrator), with the media-path faults among the profiles; a second table drives a
headless session on a local (unconnected) Scope for the faults of its REST sampling routes.
"""

from __future__ import annotations

import asyncio

import pytest

from tasks.scope.client import ScopeTimeouts
from tests.integration.sessions import run_on_simulator, until_measured, void_measurement
from tests.conftest import with_thresholds

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_TIMEOUTS = ScopeTimeouts(connect_s=2.0, read_s=1.5, frame_s=1.5, upload_s=30.0)
FAULT_AFTER_S = 1.5
CONCURRENT_RUNS = 6  # WebRTC sessions and their simulators share this process: keep its tick lag low

# profile, overrides, expected (outcome, failed check, category, phase)
RELAY_CASES = [
    ("healthy", None, ("passed", None, None, None)),
    ("slow", None, ("passed", None, None, None)),
    ("slow_http", None, ("passed", None, None, None)),
    ("connect_fail", None, ("failed", "connect", "orchestrator", "connect")),
    ("connect_timeout", None, ("failed", "connect", "orchestrator", "connect")),
    ("load_error", None, ("failed", "load", "runner", "load")),
    ("no_capacity", None, ("unavailable", None, "orchestrator", "connect")),
    ("crash", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "runner", "stream")),
    ("stall", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stall", "runner", "stream")),
    ("frozen", {"fault_after_s": FAULT_AFTER_S}, ("failed", "freeze", "validation", "stream")),
    ("black", {"fault_after_s": FAULT_AFTER_S}, ("failed", "black", "validation", "stream")),
    # Undecodable video never reaches the receiver's frames: it shows as output missing its rate.
    ("corrupt", {"fault_after_s": FAULT_AFTER_S}, ("failed", "fps", "validation", "stream")),
    ("wrong_size", None, ("failed", "frame_size", "validation", "start")),
    ("prompt_insensitive", None, ("failed", "prompt_response", "validation", "stream")),
    ("low_fps", None, ("failed", "fps", "validation", "stream")),
    ("vram_leak", None, ("failed", "vram_leak", "validation", "stream")),
    ("vram_ceiling", None, ("failed", "vram_ceiling", "validation", "stream")),
    # The REST sampling routes hang or reset; a relay session does not use them for its media.
    ("hang_http", {"fault_after_s": FAULT_AFTER_S}, ("passed", None, None, None)),
    ("conn_reset", {"fault_after_s": FAULT_AFTER_S}, ("passed", None, None, None)),
    # Media-path faults of the relay.
    ("packet_loss", {"packet_loss_pct": 5.0}, ("passed", None, None, None)),
    ("added_latency", {"added_latency_ms": 300.0}, ("passed", None, None, None)),
    ("freeze_bursts", {"fault_after_s": FAULT_AFTER_S}, ("passed", None, None, None)),
    ("relay_drop", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "runner", "stream")),
]
HEADLESS_CASES = [
    ("healthy", None, ("passed", None, None, None)),
    ("stall", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stall", "runner", "stream")),
    ("corrupt", {"fault_after_s": FAULT_AFTER_S}, ("failed", "corrupt", "validation", "stream")),
    ("hang_http", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "network", "stream")),
    ("conn_reset", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "network", "stream")),
]
CASES = [("webrtc", *case) for case in RELAY_CASES] + [("headless", *case) for case in HEADLESS_CASES]


def _settings_for(driver: str, settings):
    """webrtc: the demo's cloud-connected instance; headless: a local Scope (its session never uses the cloud)."""
    if driver == "webrtc":
        return settings.model_copy(update={"media_driver": "webrtc"})
    cloud = settings.cloud.model_copy(update={"enabled": False})
    return settings.model_copy(update={"media_driver": "headless", "cloud": cloud})


@pytest.fixture(scope="module")
def fault_settings(demo_settings):
    """Short limits so faults that wait for a limit (connect timeout, stall) end quickly."""
    return with_thresholds(demo_settings, connect_timeout_s=3.0, stall_timeout_s=4.0, cleanup_timeout_s=5.0)


async def _run(driver, profile, overrides, settings, lake):
    """The case's run; again when the harness declared it void (each attempt on a fresh simulator)."""
    return await until_measured(
        lambda: run_on_simulator(_settings_for(driver, settings), lake, profile=profile, overrides=overrides,
                                 duration_s=8.0, timeouts=FAST_TIMEOUTS),
        lambda result: void_measurement(result[0]))


@pytest.fixture(scope="module")
async def verdicts(fault_settings, tmp_path_factory):
    """Every case run once, several at a time (each on its own simulated instance)."""
    from analytics.lake import Lake

    lake = Lake(tmp_path_factory.mktemp("faults"))
    gate = asyncio.Semaphore(CONCURRENT_RUNS)

    async def one(driver, profile, overrides):
        async with gate:
            return (driver, profile), await _run(driver, profile, overrides, fault_settings, lake)

    results = await asyncio.gather(*(one(d, p, o) for d, p, o, _ in CASES))
    return dict(results)


@pytest.mark.parametrize(("driver", "profile", "expected"), [(c[0], c[1], c[3]) for c in CASES],
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_profile_gets_the_intended_verdict(driver, profile, expected, verdicts):
    record, truth = verdicts[(driver, profile)]
    outcome, check, category, phase = expected
    got = (record.outcome, record.failure_category, record.failure_phase)
    assert got == (outcome, category, phase), record.failure_reason
    if check is None:
        assert record.checks_failed == ()
    else:
        assert record.checks_failed[0] == check, record.checks_failed
        assert record.failure_reason
    if outcome == "failed":
        assert record.artifacts_path is not None
    reached_the_stream = record.first_frame_s is not None
    if driver == "webrtc" and reached_the_stream:
        assert record.media_path == "relay" and record.media_driver == "webrtc"
    if driver == "headless" and reached_the_stream:
        assert record.media_path == "headless"
    # cleanup always ran: nothing is left running on the instance, nothing leaked
    assert truth["active_session"] is False
    assert truth["live_webrtc_sessions"] == 0
    assert truth["leaked_sessions"] == 0
