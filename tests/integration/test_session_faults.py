"""Every simulator profile judged by a real session over loopback HTTP: outcome, check, category, phase."""

from __future__ import annotations

import asyncio

import pytest

from tasks.scope.client import ScopeTimeouts
from tests.integration.sessions import run_on_simulator
from tests.conftest import with_thresholds

pytestmark = pytest.mark.integration

FAST_TIMEOUTS = ScopeTimeouts(connect_s=2.0, read_s=1.5, frame_s=1.5, upload_s=30.0)
FAULT_AFTER_S = 1.5
CONCURRENT_RUNS = 7

# profile, overrides, expected (outcome, failed check, category, phase)
CASES = [
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
    ("corrupt", {"fault_after_s": FAULT_AFTER_S}, ("failed", "corrupt", "validation", "stream")),
    ("wrong_size", None, ("failed", "frame_size", "validation", "start")),
    ("prompt_insensitive", None, ("failed", "prompt_response", "validation", "stream")),
    ("low_fps", None, ("failed", "fps", "validation", "stream")),
    ("vram_leak", None, ("failed", "vram_leak", "validation", "stream")),
    ("vram_ceiling", None, ("failed", "vram_ceiling", "validation", "stream")),
    ("hang_http", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "network", "stream")),
    ("conn_reset", {"fault_after_s": FAULT_AFTER_S}, ("failed", "stream", "network", "stream")),
]


@pytest.fixture(scope="module")
def fault_settings(demo_settings):
    """Short limits so faults that wait for a limit (connect timeout, stall) end quickly."""
    return with_thresholds(demo_settings, connect_timeout_s=3.0, stall_timeout_s=4.0, cleanup_timeout_s=5.0)


async def _run(profile, overrides, settings, lake):
    return await run_on_simulator(settings, lake, profile=profile, overrides=overrides, duration_s=12.0,
                                  timeouts=FAST_TIMEOUTS)


@pytest.fixture(scope="module")
async def verdicts(fault_settings, tmp_path_factory):
    """Every case run once, several at a time (each on its own simulated instance)."""
    from analytics.lake import Lake

    lake = Lake(tmp_path_factory.mktemp("faults"))
    gate = asyncio.Semaphore(CONCURRENT_RUNS)

    async def one(profile, overrides):
        async with gate:
            return profile, await _run(profile, overrides, fault_settings, lake)

    results = await asyncio.gather(*(one(p, o) for p, o, _ in CASES))
    return dict(results)


@pytest.mark.parametrize(("profile", "expected"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_profile_gets_the_intended_verdict(profile, expected, verdicts):
    record, truth = verdicts[profile]
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
    # cleanup always ran: nothing is left running on the instance, nothing leaked
    assert truth["active_session"] is False
    assert truth["leaked_sessions"] == 0
