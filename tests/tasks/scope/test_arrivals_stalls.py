"""A receiver's own event-loop stall is not the stream's freeze; a real gap still is."""

from __future__ import annotations

import asyncio
import time

import pytest

from tasks.scope.arrivals import FrameArrivals
from tasks.scope.loop_stalls import MIN_STALL_S, LoopStalls, loop_stalls

FRAME_S = 1 / 12


def steady(arrivals: FrameArrivals, start: float, count: int) -> float:
    at = start
    for _ in range(count):
        at += FRAME_S
        arrivals.add(at)
    return at


def test_a_gap_the_harness_spent_stalled_is_no_freeze_but_a_gap_in_the_stream_is():
    harness_stall, stream_freeze = FrameArrivals(), FrameArrivals()
    for arrivals, stalled_s in ((harness_stall, 0.45), (stream_freeze, 0.0)):
        at = steady(arrivals, 0.0, 40)
        arrivals.add(at + 0.5, harness_stalled_s=stalled_s)  # a 500 ms gap, 450 ms of it the loop's own
        steady(arrivals, at + 0.5, 20)
    assert harness_stall.freeze_count == 0
    assert stream_freeze.freeze_count == 1 and stream_freeze.freeze_total_s == pytest.approx(0.5)


def test_stalls_overlap_only_the_gap_they_fall_in():
    stalls = LoopStalls()
    stalls.note(10.0, 10.3)  # due at 10.0, woke 300 ms late: a stall
    stalls.note(11.0, 11.0 + MIN_STALL_S / 2)  # a little late: scheduling, not a stall
    assert stalls.overlap(9.9, 10.2) == pytest.approx(0.2)
    assert stalls.overlap(10.5, 12.0) == 0.0


async def test_a_blocked_loop_is_measured_as_a_stall():
    stalls = loop_stalls()
    stalls.acquire()
    try:
        await asyncio.sleep(0.05)
        before = time.monotonic()
        time.sleep(0.3)  # the loop is blocked, as by a busy harness
        await asyncio.sleep(0.05)
        assert stalls.overlap(before, time.monotonic()) >= 0.2
    finally:
        stalls.release()
