"""Instance back-off on literal runs, and the bounded managed-instance logs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from tasks.fleet.instance_failures import INSTANCE_FAILURE_MEMORY, instance_backoff_until
from tasks.fleet.instance_log import InstanceLog

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
FIRST_S, MAX_S = 10.0, 600.0
SCHEMA = {"scope_instance": pl.String(), "outcome": pl.String(), "failure_phase": pl.String(),
          "started_at": pl.Datetime("us", "UTC"), "ended_at": pl.Datetime("us", "UTC")}


def row(ended: datetime, *, phase: str | None = "prepare", outcome: str = "aborted", instance: str = "m1") -> dict:
    """A run on ``instance`` that ended at ``ended`` (in ``phase`` when it failed)."""
    return dict(scope_instance=instance, outcome=outcome, failure_phase=phase, started_at=ended - timedelta(seconds=1),
                ended_at=ended)


def until(*rows: dict, now: datetime = NOW, instances: tuple[str, ...] = ("m1", "m2")) -> dict[str, datetime]:
    """instance_backoff_until over the rows."""
    return instance_backoff_until(pl.DataFrame(list(rows), schema=SCHEMA), instances, now=now, first_s=FIRST_S,
                                  max_s=MAX_S)


def test_each_failed_start_doubles_the_wait_up_to_the_maximum() -> None:
    last = NOW - timedelta(seconds=1)
    for failures, wait_s in [(1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (40, 600)]:
        rows = [row(last - timedelta(seconds=i)) for i in range(failures)]
        assert until(*rows) == {"m1": last + timedelta(seconds=wait_s)}, failures


def test_the_wait_ends_and_only_failed_starts_of_that_instance_count() -> None:
    assert until(row(NOW - timedelta(seconds=10))) == {}
    assert until(row(NOW - timedelta(seconds=1), phase="connect", outcome="failed")) == {}
    assert until(row(NOW - timedelta(seconds=1), instance="static-1")) == {}
    assert until(row(NOW - timedelta(seconds=1), outcome="failed", instance="m2")).keys() == {"m2"}


def test_a_run_past_prepare_and_the_memory_window_forget_earlier_failures() -> None:
    old = [row(NOW - timedelta(minutes=5, seconds=i)) for i in range(6)]
    good = row(NOW - timedelta(minutes=4), phase=None, outcome="passed")
    assert until(*old, good, row(NOW - timedelta(seconds=1))) == {"m1": NOW + timedelta(seconds=9)}
    forgotten = [row(NOW - INSTANCE_FAILURE_MEMORY - timedelta(seconds=i + 1)) for i in range(6)]
    assert until(*forgotten, row(NOW - timedelta(seconds=1))) == {"m1": NOW + timedelta(seconds=9)}


def test_instance_logs_rotate_per_start_and_by_size_within_a_fixed_count(tmp_path: Path) -> None:
    log = InstanceLog(tmp_path, "m1", files=3, max_bytes=1000)
    for start in range(50):
        log.start()
        for _ in range(5):
            log.write(f"start {start}\n".encode() + b"x" * 400 + b"\n")
    log.write(b"Error: CUDA out of memory\n\n")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m1.1.log", "m1.2.log", "m1.log"]
    assert all((tmp_path / name).stat().st_size <= 1000 for name in files)
    assert log.tail() == "Error: CUDA out of memory"
    huge = InstanceLog(tmp_path / "huge", "m2", files=2, max_bytes=1000)
    huge.write(b"y" * 10_000 + b"\nlast line\n")
    huge.close()
    assert huge.path.stat().st_size == 1000 and huge.tail() == "last line"
