"""Chunk writers: one run's rows of one table, landed as numbered files while the run goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING

from analytics.lake_errors import LakeError
from analytics.records import LakeRecord

if TYPE_CHECKING:
    from analytics.lake import Lake


class ChunkWriter:
    """Buffers one run's rows of one table and lands them as numbered chunk files during the run.

    A chunk lands every `flush_every_rows` rows or, at the next `add`, once `flush_every_s` passed
    since the last one, so a crash loses at most one chunk. Numbering continues after chunks an
    earlier writer of the same run landed, so a retried task never overwrites them.
    """

    def __init__(self, lake: Lake, table: str, run_id: str, *, tag: str, flush_every_s: float,
                 flush_every_rows: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._lake, self.table, self.run_id, self._tag = lake, table, run_id, tag
        self._flush_every_s, self._flush_every_rows, self._clock = flush_every_s, max(1, flush_every_rows), clock
        self._lock = threading.RLock()
        self._rows: list[LakeRecord] = []
        self._next_chunk = lake._next_chunk_number(table, run_id, tag)
        self._last_flush = clock()
        self._closed = False
        self.chunks_landed = 0
        self.rows_landed = 0

    def add(self, row: LakeRecord) -> PurePath | None:
        """Buffer a row; land the buffer when a chunk is due (returns its path then)."""
        if getattr(row, "run_id", self.run_id) != self.run_id:
            raise LakeError(f"row of run {row.run_id!r} given to the writer of run {self.run_id!r}")
        with self._lock:
            if self._closed:
                raise LakeError(f"{self.table} writer of run {self.run_id} is closed")
            self._rows.append(row)
            due = (len(self._rows) >= self._flush_every_rows
                   or self._clock() - self._last_flush >= self._flush_every_s)
            return self.flush() if due else None

    def flush(self) -> PurePath | None:
        """Land the buffered rows as the next chunk now; None when there were none."""
        with self._lock:
            self._last_flush = self._clock()
            if not self._rows:
                return None
            stem = f"{self.run_id}-{self._tag}{self._next_chunk:04d}"
            path = self._lake.land(self.table, self._rows, file_stem=stem)  # on error the rows stay buffered
            self.rows_landed += len(self._rows)
            self.chunks_landed += 1
            self._next_chunk += 1
            self._rows = []
            return path

    def close(self) -> None:
        """Land what is buffered; later `add` calls are refused."""
        with self._lock:
            if not self._closed:
                self.flush()
                self._closed = True

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
