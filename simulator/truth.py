"""Ground-truth records: what really happened inside a simulated instance (`GET /_sim/truth`)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field

MAX_RECORDS = 1000  # per list: a long-running demo instance keeps the recent past only


class Clock:
    """Monotonic time for durations, mapped onto the wall clock for timestamps."""

    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    @staticmethod
    def now() -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def wall(self, mono: float) -> float:
        """The unix time of monotonic instant `mono`."""
        return self._wall0 + (mono - self._mono0)


@dataclass
class LoadRecord:
    """One pipeline load as the instance performed it."""

    pipeline_ids: list[str]
    load_s: float
    cold: bool
    failed: bool
    requested_at: float  # unix
    reason: str | None = None
    superseded: bool = False  # a later load replaced it before it finished


@dataclass
class ConnectRecord:
    """One cloud connect attempt and how it ended."""

    connect_s: float | None  # None when it never ends or never started
    result: str  # connected / failed / busy / timeout / invalid_app_id / no_credentials
    requested_at: float  # unix
    error: str | None = None


@dataclass
class FaultRecord:
    """A fault of the active profile, from when it became observable to when it ended (None: ongoing)."""

    kind: str
    started_at: float  # unix
    ended_at: float | None = None
    session_id: str | None = None

    def close(self, wall_s: float) -> None:
        """End the fault at `wall_s` unless it already ended."""
        if self.ended_at is None:
            self.ended_at = max(wall_s, self.started_at)


@dataclass
class TruthLog:
    """Every load, connect and fault of an instance, in order."""

    loads: deque[LoadRecord] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    connects: deque[ConnectRecord] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    faults: deque[FaultRecord] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))

    def open_fault(self, kind: str, started_at: float, session_id: str | None = None) -> FaultRecord:
        """Record a fault that started at `started_at` and has not ended."""
        record = FaultRecord(kind, started_at, None, session_id)
        self.faults.append(record)
        return record

    def instant_fault(self, kind: str, at: float) -> None:
        """Record a fault that happened at one moment (a failed connect or load)."""
        self.faults.append(FaultRecord(kind, at, at))

    def open_faults(self) -> list[FaultRecord]:
        """The faults that have not ended."""
        return [f for f in self.faults if f.ended_at is None]

    def as_dict(self) -> dict:
        """Plain JSON-ready lists."""
        return {
            "loads": [asdict(r) for r in self.loads],
            "connects": [asdict(r) for r in self.connects],
            "faults": [asdict(r) for r in self.faults],
        }
