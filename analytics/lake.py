"""The Parquet lake: atomic append-only landing, chunk writers, the orphan sweep and the DuckDB views.

    <root>/lake/<table>/date=YYYY-MM-DD/<file_stem>.parquet   immutable: temp file, fsync, os.replace
    <root>/artifacts/<date>/<run_id>/                        evidence kept beside a run
    <root>/catalog.duckdb                                    views only, rebuilt whole by refresh_catalog

Nothing here takes a lock. `query` and `runs_frame` define the same views in a private in-memory
DuckDB, so any number of processes read while others land. `refresh_catalog` builds the catalog in
a temp file and renames it over the old one: concurrent refreshes from several processes, or a
client that keeps the catalog open, never block it (that client keeps reading its old copy).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from analytics.catalog import BASE_VIEWS, CatalogView, base_view, create_views, derived_views
from analytics.records import TABLES, LakeRecord, RunRecord, as_utc, polars_schema
from errors import HarnessError

DATA_DIR_ENV = "LOADTEST_DATA_DIR"
DEFAULT_DATA_DIR = "data"
DEFAULT_BUDGET_S = 0.2 * 86_400  # test time per orchestrator per day: 20 % of it
STALE_TEMP_AGE_S = 3600.0  # a temp file this old belongs to a writer that died mid-write
TEMP_SUFFIX = ".tmp"  # temp files never end in .parquet, so no view ever reads one
SWEPT_REASON = "run did not finish (harness crashed or was killed); swept at {at}"
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_ONLY = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
class LakeError(HarnessError):
    """A lake operation was refused or failed: unknown table, wrong rows, a bad or writing query."""


class AlreadyLanded(LakeError):
    """An exclusive landing found its file already there: those rows landed before."""


@dataclass(frozen=True)
class QueryResult:
    """Answer of `Lake.query`: column names and rows as tuples."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]


@cache
def _schema(model: type[LakeRecord]) -> dict[str, pl.DataType]:
    """The model's Polars schema, computed once per model."""
    return polars_schema(model)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(frame: pl.DataFrame, path: Path, *, exclusive: bool = False) -> None:
    """Write `frame` to `path` so that readers see either no file or the whole file.

    `exclusive`: create the file only if no file has that name (a hard link is atomic and refuses
    an existing target), else raise AlreadyLanded; two writers racing on one name land it once.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            frame.write_parquet(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AlreadyLanded(f"{path.parent.name}/{path.name} has landed before") from None
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _aborted_record(started: dict[str, Any], now: dt.datetime) -> RunRecord:
    """The final `aborted` row the sweeper lands for an orphaned started row."""
    fields = {name: started[name] for name in RunRecord.model_fields}
    fields.update(
        state="final", outcome="aborted", failure_category="harness", failure_phase=None,
        failure_reason=SWEPT_REASON.format(at=now.isoformat()), swept_at=now,
        ended_at=started["last_frame_at"],  # the last sign of life that landed, if any
        frames_sampled=started["frames_landed"],
    )
    return RunRecord.model_validate(fields)


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

    def add(self, row: LakeRecord) -> Path | None:
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

    def flush(self) -> Path | None:
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


def _require_read_only(sql: str) -> None:
    """Refuse anything but exactly one SELECT or EXPLAIN statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise LakeError(f"cannot parse query: {exc}") from exc
    if len(statements) != 1 or statements[0].type not in _READ_ONLY:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise LakeError(f"lake queries are read-only: one SELECT statement expected, got {kinds}")


class Lake:
    """The Parquet lake under `root`: landing, sweeping, views and queries."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.lake_dir = self.root / "lake"
        self.catalog_path = self.root / "catalog.duckdb"
        self.artifacts_root = self.root / "artifacts"
        # Queries share one in-memory DuckDB whose views are set up once (each query gets its own
        # cursor); views re-read their globs at query time, so only a table's first file, which turns
        # its empty typed view into a file view, calls for new views.
        self._shared: tuple[tuple, duckdb.DuckDBPyConnection] | None = None
        self._retired: list[duckdb.DuckDBPyConnection] = []
        self._shared_lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Lake:
        """The lake at $LOADTEST_DATA_DIR (default ./data)."""
        return cls(Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)))

    def table_dir(self, table: str) -> Path:
        """Directory of a table's date partitions."""
        if table not in TABLES:
            raise LakeError(f"unknown lake table {table!r}; tables: {', '.join(TABLES)}")
        return self.lake_dir / table

    # --- landing -------------------------------------------------------------------------------

    def land(self, table: str, rows: Sequence[LakeRecord], *, file_stem: str,
             exclusive: bool = False) -> Path | None:
        """Land rows atomically as <table>/date=<row date>/<file_stem>.parquet; None when no rows.

        Rows of several dates (a chunk crossing midnight UTC) land as one file per date, all
        named `file_stem`; the path of the latest date is returned. `exclusive` refuses (raises
        AlreadyLanded) when that file exists, instead of replacing it.
        """
        table_dir, model = self.table_dir(table), TABLES[table]
        if not _STEM.match(file_stem):
            raise LakeError(f"file stem {file_stem!r} is not a safe file name")
        wrong = [type(r).__name__ for r in rows if type(r) is not model]
        if wrong:
            raise LakeError(f"table {table} takes {model.__name__} rows, got {sorted(set(wrong))}")
        by_date: dict[dt.date, list[LakeRecord]] = {}
        for row in rows:
            by_date.setdefault(row.date, []).append(row)
        path = None
        for day in sorted(by_date):
            partition = table_dir / f"date={day.isoformat()}"
            partition.mkdir(parents=True, exist_ok=True)
            path = partition / f"{file_stem}.parquet"
            frame = pl.DataFrame([r.model_dump() for r in by_date[day]], schema=_schema(model))
            _write_atomically(frame, path, exclusive=exclusive)
        return path

    def land_run(self, record: RunRecord) -> Path:
        """Land one run state as <run_id>-started, <run_id>-final (or <run_id>-swept by the sweeper)."""
        suffix = "swept" if record.swept_at is not None else record.state
        path = self.land("runs", [record], file_stem=f"{record.run_id}-{suffix}")
        assert path is not None  # one row always lands one file
        return path

    def frame_writer(self, run_id: str, *, flush_every_s: float = 2.0, flush_every_rows: int = 50) -> ChunkWriter:
        """A chunk writer of FrameSample rows: files <run_id>-f0001, -f0002, ..."""
        return ChunkWriter(self, "frames", run_id, tag="f", flush_every_s=flush_every_s,
                           flush_every_rows=flush_every_rows)

    def prompt_switch_writer(self, run_id: str, *, flush_every_s: float = 2.0,
                             flush_every_rows: int = 10) -> ChunkWriter:
        """A chunk writer of PromptSwitchRecord rows: files <run_id>-p0001, -p0002, ..."""
        return ChunkWriter(self, "prompt_switches", run_id, tag="p", flush_every_s=flush_every_s,
                           flush_every_rows=flush_every_rows)

    def _next_chunk_number(self, table: str, run_id: str, tag: str) -> int:
        """One past the highest chunk number already landed for this run and table."""
        pattern = re.compile(rf"^{re.escape(run_id)}-{tag}(\d+)\.parquet$")
        landed = (pattern.match(p.name) for p in self.table_dir(table).glob(f"date=*/{run_id}-{tag}*.parquet"))
        return max((int(m.group(1)) for m in landed if m), default=0) + 1

    def artifacts_dir(self, run_id: str, started_at: dt.datetime) -> Path:
        """Directory (created) for a run's evidence: artifacts/<UTC date>/<run_id>/."""
        if not _STEM.match(run_id):
            raise LakeError(f"run id {run_id!r} is not a safe directory name")
        path = self.artifacts_root / as_utc(started_at).date().isoformat() / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- sweeping --------------------------------------------------------------------------------

    def sweep_orphans(self, *, now: dt.datetime | None = None) -> list[str]:
        """Land a final `aborted` row for every run with only a started row older than its hard cap.

        Returns the run ids swept; running it again sweeps nothing new. Also deletes temp files
        left by writers that died mid-write.
        """
        now = as_utc(now or dt.datetime.now(dt.timezone.utc))
        self.remove_stale_temp_files()
        orphans = self._orphans(now)
        for started in orphans:
            self.land_run(_aborted_record(started, now))
        return [o["run_id"] for o in orphans]

    def _orphans(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Started rows of runs without a final row whose hard cap passed by `now`."""
        sql = """
            SELECT s.*, f.last_frame_at, coalesce(f.frames_landed, 0) AS frames_landed
            FROM (SELECT * FROM run_states WHERE state = 'started'
                  QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY started_at) = 1) AS s
            LEFT JOIN (SELECT run_id, max(captured_at) AS last_frame_at, count(*) AS frames_landed
                       FROM frames GROUP BY run_id) AS f USING (run_id)
            WHERE s.run_id NOT IN (SELECT run_id FROM run_states WHERE state = 'final')
              AND epoch(s.started_at) + s.hard_cap_s < epoch(CAST(? AS TIMESTAMPTZ))
            ORDER BY s.started_at, s.run_id"""
        with self._connect(("run_states", "frames")) as con:
            cursor = con.execute(sql, [now])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def remove_stale_temp_files(self, *, older_than_s: float = STALE_TEMP_AGE_S) -> int:
        """Delete temp files older than `older_than_s` (their writer died); returns how many."""
        removed, cutoff = 0, time.time() - older_than_s
        leftovers = [*self.lake_dir.glob(f"*/date=*/.*{TEMP_SUFFIX}"), *self.root.glob(f".catalog.*{TEMP_SUFFIX}*")]
        for tmp in leftovers:
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # another sweeper got there first
                continue
        return removed

    # --- views and queries -----------------------------------------------------------------------

    def views(self, *, budget_seconds: float = DEFAULT_BUDGET_S) -> list[CatalogView]:
        """Every catalog view in creation order (a view comes after the views it reads)."""
        base = [base_view(name, TABLES[table], self._glob(table)) for table, name in BASE_VIEWS.items()]
        return base + derived_views(budget_seconds)

    def _glob(self, table: str) -> str | None:
        """The Parquet glob of a table, or None while it has no file (DuckDB refuses empty globs)."""
        table_dir = self.table_dir(table)
        if next(table_dir.glob("date=*/*.parquet"), None) is None:
            return None
        return str(table_dir.resolve() / "date=*" / "*.parquet")

    @contextmanager
    def _connect(self, names: Sequence[str] | None, *, budget_seconds: float = DEFAULT_BUDGET_S,
                 path: Path | None = None, comments: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection (private in-memory unless `path`) with the views `names` need (None: all).

        The one place DuckDB errors are turned into LakeError.
        """
        try:
            con = duckdb.connect(str(path) if path else ":memory:")
            try:
                con.execute("SET TimeZone = 'UTC'")
                create_views(con, self.views(budget_seconds=budget_seconds), names, comments=comments)
                yield con
            finally:
                con.close()
        except duckdb.Error as exc:
            raise LakeError(f"lake query failed: {exc}") from exc

    @contextmanager
    def _cursor(self, budget_seconds: float) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the shared in-memory DuckDB holding every view (rebuilt when a table got its first file)."""
        key = (budget_seconds, tuple(self._glob(table) is not None for table in BASE_VIEWS))
        try:
            with self._shared_lock:
                if self._shared is None or self._shared[0] != key:
                    if self._shared is not None:
                        # Not closed: other threads may be querying through cursors of it. Retired
                        # connections are few (a table's first file changes the key once).
                        self._retired.append(self._shared[1])
                    con = duckdb.connect(":memory:")
                    create_views(con, self.views(budget_seconds=budget_seconds), None, comments=False)
                    self._shared = (key, con)
                cursor = self._shared[1].cursor()
            try:
                cursor.execute("SET TimeZone = 'UTC'")
                yield cursor
            finally:
                cursor.close()
        except duckdb.Error as exc:
            raise LakeError(f"lake query failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
              budget_seconds: float = DEFAULT_BUDGET_S) -> QueryResult:
        """Run one read-only statement (SELECT/EXPLAIN) over the lake's views; returns columns and rows.

        `params` are bound to the statement's `?` (or `$name`) placeholders, never pasted into it.
        """
        _require_read_only(sql)
        with self._cursor(budget_seconds) as con:
            cursor = con.execute(sql, params) if params is not None else con.execute(sql)
            return QueryResult(tuple(d[0] for d in cursor.description), cursor.fetchall())

    def query_frame(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
                    budget_seconds: float = DEFAULT_BUDGET_S) -> pl.DataFrame:
        """Like `query`, as a Polars DataFrame."""
        _require_read_only(sql)
        with self._cursor(budget_seconds) as con:
            return con.sql(sql, params=params).pl()

    def runs_frame(self) -> pl.DataFrame:
        """The `runs` view as a Polars DataFrame: the final (or current) state of every run."""
        return self.query_frame("SELECT * FROM runs ORDER BY started_at, run_id")

    def refresh_catalog(self, *, budget_seconds: float = DEFAULT_BUDGET_S) -> Path:
        """Rebuild catalog.duckdb (views only) in a temp file and rename it into place; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".catalog.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        try:
            with self._connect(None, budget_seconds=budget_seconds, path=tmp, comments=True) as con:
                con.execute("CHECKPOINT")
            os.replace(tmp, self.catalog_path)
            # A write-ahead log beside the new file would belong to the old one: never replay it.
            Path(f"{self.catalog_path}.wal").unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        _fsync_dir(self.root)
        return self.catalog_path
