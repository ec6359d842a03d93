"""When was this process's event loop itself blocked? So a receiver never counts its own stall as a freeze.

A received frame is timestamped when the receiving coroutine gets it. If the event loop was
busy (the harness's own CPU: other sessions' decoding, frame checks, landing), frames that
arrived in time wait in aiortc's queue and then come out in a burst: the gap before them
is the harness's, not the stream's. One probe per event loop sleeps `PROBE_S` at a time and
records every wake-up later than `MIN_STALL_S` as a stall; `overlap(start, end)` tells a
receiver how much of an inter-frame gap the loop spent stalled. Honest limit: while the loop
was stalled the harness cannot see the stream either, so a real freeze hidden inside a
harness stall is not counted; a harness lagging that much is also caught by `harness_lag`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque

PROBE_S = 0.02
MIN_STALL_S = 0.05  # a wake-up this much late is a stall (timer slack and scheduling are far below it)
KEEP_S = 120.0  # stalls older than this are forgotten (no gap that long is judged against them)


class LoopStalls:
    """Stalls of one event loop, as (start, end) monotonic seconds, measured while someone needs them."""

    def __init__(self) -> None:
        self._stalls: deque[tuple[float, float]] = deque()
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    def acquire(self) -> None:
        """Start measuring (the first user starts the probe)."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe())

    def release(self) -> None:
        """Stop measuring when the last user leaves."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _probe(self) -> None:
        while True:
            due = time.monotonic() + PROBE_S
            await asyncio.sleep(PROBE_S)
            self.note(due, time.monotonic())

    def note(self, due: float, woke: float) -> None:
        """Record a wake-up at `woke` of a sleep due at `due` (a stall when late enough)."""
        if woke - due > MIN_STALL_S:
            self._stalls.append((due, woke))
        while self._stalls and self._stalls[0][1] < woke - KEEP_S:
            self._stalls.popleft()

    def overlap(self, start: float, end: float) -> float:
        """Seconds of (start, end) during which the loop was stalled."""
        return sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in self._stalls
                   if stop > start and begin < end)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopStalls] = weakref.WeakKeyDictionary()


def loop_stalls() -> LoopStalls:
    """The stalls record of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _by_loop:
        _by_loop[loop] = LoopStalls()
    return _by_loop[loop]
