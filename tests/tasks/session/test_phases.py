"""TickClock: ticks on schedule, the harness's own lateness measured, missed ticks skipped and counted."""

from __future__ import annotations

import time

import pytest

from errors import BadResponse, ScopeUnreachable
from tasks.session.phases import TickClock, retry_network_blips

INTERVAL_S = 0.05


async def test_ticks_on_schedule_have_no_missed_ticks():
    clock = TickClock(INTERVAL_S)
    clock.begin(time.monotonic())
    for _ in range(4):
        await clock.wait_next()
    assert clock.missed == 0 and len(clock.lags_ms) == 4


async def test_a_blocked_harness_skips_the_ticks_it_missed_and_records_its_lag():
    clock = TickClock(INTERVAL_S)
    first_at = time.monotonic()
    clock.begin(first_at)
    await clock.wait_next()
    time.sleep(INTERVAL_S * 4.5)  # the event loop is blocked: the harness, not Scope, is late
    await clock.wait_next()
    assert clock.missed >= 3
    assert clock.lags_ms[-1] >= INTERVAL_S * 3 * 1000
    assert clock.lag_p95_ms >= clock.lags_ms[0]
    # The missed ticks are skipped, not run as a burst: the schedule stays on its grid.
    intervals = (clock.next_at - first_at) / INTERVAL_S
    assert intervals == pytest.approx(round(intervals)) and round(intervals) == 2 + clock.missed + 1


def _failing_for(seconds: float, error: Exception):
    """A read that fails with `error` until `seconds` have passed since its first call."""
    started: list[float] = []

    async def read() -> str:
        started.append(started[0] if started else time.monotonic())
        if time.monotonic() - started[0] < seconds:
            raise error
        return "tick"
    return read


async def test_a_network_blip_shorter_than_the_grace_is_recorded_not_fatal():
    clock = TickClock(INTERVAL_S)
    blip = ScopeUnreachable("connection reset", route="/api/v1/session/metrics")
    assert await retry_network_blips(_failing_for(0.4, blip), grace_s=1.0, clock=clock) == "tick"
    assert 2 <= clock.errors <= 5  # retried with back-off (0.1, 0.2, ...), not hammered in a tight loop


async def test_a_network_outage_longer_than_the_grace_fails_the_tick():
    clock = TickClock(INTERVAL_S)
    outage = ScopeUnreachable("connection refused", route="/api/v1/session/frame")
    started = time.monotonic()
    with pytest.raises(ScopeUnreachable):
        await retry_network_blips(_failing_for(60.0, outage), grace_s=0.5, clock=clock)
    assert time.monotonic() - started >= 0.5 and clock.errors >= 2


async def test_a_failure_that_is_not_the_network_is_not_retried():
    clock = TickClock(INTERVAL_S)
    with pytest.raises(BadResponse):
        await retry_network_blips(_failing_for(60.0, BadResponse("no frames_out", route="/x")), grace_s=5.0,
                                  clock=clock)
    assert clock.errors == 0
