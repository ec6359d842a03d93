"""What each lifecycle phase returns, and the run's results as they come in.

Phases return frozen values; `PhaseResults` gathers them (and the first failure, or what
interrupted the run) for the verdict and the final row. `TickClock` paces the stream's ticks
and measures how late the harness itself ran them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from errors import Category, HarnessError, Phase
from tasks.session.checks import CheckResult
from tasks.session.driver import MediaPath
from tasks.session.inputs import InputPaths
from tasks.session.interrupts import interruption_name

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """The instance answers and can run the scenario."""

    scope_version: str | None
    prompts_unsupported: str | None  # why the prompt check cannot run (the schema says so), else None
    leftovers_removed: int = 0


@dataclass(frozen=True)
class Connected:
    """The cloud connection (None figures when the run does not use the cloud)."""

    connect_s: float | None
    connection_id: str | None


@dataclass(frozen=True)
class Loaded:
    """The pipelines are loaded, with the inputs uploaded for this connection."""

    load_s: float
    inputs: InputPaths


@dataclass(frozen=True)
class Started:
    """The first output frame passed the frame checks."""

    first_frame_s: float


@dataclass(frozen=True)
class Streamed:
    """The monitored stream ended (its length, and the check that ended it early, if any)."""

    stream_s: float
    stopped_early: CheckResult | None


@dataclass(frozen=True)
class PhaseResults:
    """Everything the phases returned, the first failure and what interrupted the run."""

    prepared: Prepared | None = None
    connected: Connected | None = None
    loaded: Loaded | None = None
    started: Started | None = None
    streamed: Streamed | None = None
    failure: HarnessError | None = None
    interruption: BaseException | None = field(default=None, compare=False)
    interrupted_by: str | None = None
    interrupted_in: Phase | None = None
    media_path: MediaPath | None = None
    cleanup_error: HarnessError | None = None

    def with_(self, **changes: object) -> PhaseResults:
        """A copy with some results added."""
        return dataclasses.replace(self, **changes)

    def failed(self, error: HarnessError) -> PhaseResults:
        """The results with the run's (first) failure."""
        return self if self.failure is not None else self.with_(failure=error)

    def interrupted(self, error: BaseException, phase: Phase) -> PhaseResults:
        """The results of a run interrupted by a signal or a cancellation (re-raised once landed)."""
        return self.with_(interruption=error, interrupted_by=interruption_name(error), interrupted_in=phase)

    def interrupted_by_cap(self, hard_cap_s: float, phase: Phase) -> PhaseResults:
        """The results of a run stopped by its hard cap (the harness stopped it: aborted)."""
        return self.with_(interrupted_by=f"its hard cap of {hard_cap_s:.0f} s", interrupted_in=phase)


class TickClock:
    """Paces the stream's ticks every interval and measures how late the harness ran them.

    A tick more than one interval late is not run twice: the missed ones are skipped and
    counted. Lateness is the harness's own (event loop, CPU), never Scope's."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.next_at: float | None = None
        self.lags_ms: list[float] = []
        self.missed = 0
        self.errors = 0

    def begin(self, first_at: float) -> None:
        """The first tick is due one interval after `first_at` (monotonic seconds)."""
        self.next_at = first_at + self.interval_s

    async def wait_next(self) -> None:
        """Sleep until the next tick is due; record how late it starts."""
        assert self.next_at is not None
        await asyncio.sleep(max(0.0, self.next_at - time.monotonic()))
        late_s = max(0.0, time.monotonic() - self.next_at)
        self.lags_ms.append(late_s * 1000.0)
        skipped = int(late_s // self.interval_s)
        self.missed += skipped
        self.next_at += self.interval_s * (skipped + 1)

    @property
    def lag_p95_ms(self) -> float | None:
        """95th percentile of tick lateness, ms (None before any tick)."""
        return float(np.percentile(self.lags_ms, 95)) if self.lags_ms else None


BACKOFF_FIRST_S = 0.1


async def retry_network_blips(read: Callable[[], Awaitable[T]], *, grace_s: float, clock: TickClock) -> T:
    """`read()`, retried with doubling back-off while it fails with a network error for less than
    `grace_s` (timed from the first failing attempt's start); each failure is counted on `clock`."""
    first_failed_at: float | None = None
    backoff_s = BACKOFF_FIRST_S
    while True:
        sent_at = time.monotonic()
        try:
            return await read()
        except HarnessError as error:
            if error.category != Category.NETWORK:
                raise
            clock.errors += 1
            first_failed_at = sent_at if first_failed_at is None else first_failed_at
            left_s = grace_s - (time.monotonic() - first_failed_at)
            if left_s <= 0:
                raise
            await asyncio.sleep(min(backoff_s, left_s))
            backoff_s *= 2
