"""The Parquet lake: atomic append-only landing, chunk writers, the orphan sweep, compaction and the views.

    <root>/lake/<table>/date=YYYY-MM-DD/<file_stem>.parquet   immutable: one atomic put each
    <root>/lake/<table>/date=YYYY-MM-DD/compact-*             compacted files and manifests (compaction.py)
    <root>/artifacts/<date>/<run_id>/                        evidence kept beside a run
    <local>/catalog.duckdb                                    views only, rebuilt whole by refresh_catalog

The root is a local folder or an object store (`s3://bucket/prefix`, see storage.py): every machine
can land into one lake. Nothing here takes a lock. Each query lists the files of the tables it reads,
keeps those compaction manifests say to read (`visible_files`), and hands them to DuckDB as pyarrow
datasets registered on its own cursor, under views that are the same for either kind of root; so any
number of processes read while others land or compact. `refresh_catalog` builds the catalog of a
local lake in a temp file and renames it over the old one: concurrent refreshes, or a client that
keeps the catalog open, never block it (that client keeps reading its old copy).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from analytics.catalog import (
    BASE_VIEWS, CatalogView, base_view, catalog_views, create_views, derived_views, files_relation, sql_literal,
    tables_read,
)
from analytics.chunks import ChunkWriter
from analytics.compaction import (
    DEFAULT_GRACE_S, CompactionResult, Manifest, compact_folder, is_manifest, taken_names, visible_files,
)
from analytics.lake_errors import AlreadyLanded, LakeError
from analytics.records import TABLES, LakeRecord, RunRecord, as_utc, polars_schema
from analytics.storage import TEMP_SUFFIX, LocalStore, Store, StoredFile, fsync_dir, open_store, parquet_dataset

DATA_DIR_ENV = "LOADTEST_DATA_DIR"
LOCAL_DIR_ENV = "LOADTEST_LOCAL_DIR"  # an object-store lake's local folder (catalog, scratch); default ./data
DEFAULT_DATA_DIR = "data"
DEFAULT_BUDGET_S = 0.2 * 86_400  # test time per orchestrator per day: 20 % of it
STALE_TEMP_AGE_S = 3600.0  # a temp file this old belongs to a writer that died mid-write
SWEPT_REASON = "run did not finish (harness crashed or was killed); swept at {at}"
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_ONLY = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
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
    """The Parquet lake under `root` (a folder or s3://bucket/prefix): landing, sweeping, compaction, queries."""

    def __init__(self, root: Path | str) -> None:
        self.store: Store = open_store(root)
        local = isinstance(self.store, LocalStore)
        # Process-local files (catalog, instance logs, inputs, metrics) need a folder even when the lake is remote.
        self.root = Path(root) if local else Path(os.environ.get(LOCAL_DIR_ENV, DEFAULT_DATA_DIR))
        self.url = self.store.url
        self.lake_dir = self.root / "lake"  # where a local lake's files are
        self.catalog_path = self.root / "catalog.duckdb"
        self.artifacts_root = self.root / "artifacts"
        # Queries share one in-memory DuckDB whose views are set up once per budget; each query gets its
        # own cursor, on which the files it reads are registered as pyarrow datasets.
        self._shared: tuple[float, duckdb.DuckDBPyConnection] | None = None
        self._retired: list[duckdb.DuckDBPyConnection] = []
        self._shared_lock = threading.Lock()
        self._manifests: dict[tuple[str, int, float], Manifest | None] = {}

    @classmethod
    def from_env(cls) -> Lake:
        """The lake at $LOADTEST_DATA_DIR (default ./data; s3://bucket/prefix for an object store)."""
        root = os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)
        return cls(root if root.startswith("s3://") else Path(root))

    def table_dir(self, table: str) -> Path:
        """Directory of a local lake table's date partitions."""
        return self.lake_dir / self._table_key(table)

    @staticmethod
    def _table_key(table: str) -> str:
        """The key folder of a table's date partitions, relative to the lake's `lake/` folder."""
        if table not in TABLES:
            raise LakeError(f"unknown lake table {table!r}; tables: {', '.join(TABLES)}")
        return table

    def _where(self, key: str) -> PurePath:
        """A key as a local path, or as bucket/prefix/key on an object store."""
        if isinstance(self.store, LocalStore):
            return self.store.path(key)
        return PurePosixPath(self.store.dataset_path(key))

    # --- landing -------------------------------------------------------------------------------

    def land(self, table: str, rows: Sequence[LakeRecord], *, file_stem: str,
             exclusive: bool = False) -> PurePath | None:
        """Land rows atomically as <table>/date=<row date>/<file_stem>.parquet; None when no rows.

        Rows of several dates (a chunk crossing midnight UTC) land as one file per date, all
        named `file_stem`; the path of the latest date is returned. `exclusive` refuses (raises
        AlreadyLanded) when that file exists or was compacted, instead of replacing it. A file a
        compaction replaced is never landed again (it would be hidden): LakeError.
        """
        model = TABLES[self._table_key(table)]
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
            folder, name = f"lake/{table}/date={day.isoformat()}", f"{file_stem}.parquet"
            self._refuse_compacted(folder, name, exclusive=exclusive)
            buffer = io.BytesIO()
            pl.DataFrame([r.model_dump() for r in by_date[day]], schema=_schema(model)).write_parquet(buffer)
            try:
                self.store.put(f"{folder}/{name}", buffer.getvalue(), exclusive=exclusive)
            except FileExistsError:
                raise AlreadyLanded(f"{folder.rsplit('/', 1)[1]}/{name} has landed before") from None
            path = self._where(f"{folder}/{name}")
        return path

    def _refuse_compacted(self, folder: str, name: str, *, exclusive: bool) -> None:
        """Refuse to land a name a compaction manifest of the partition lists as a source."""
        if name not in taken_names(self._read_manifests(self.store.list(f"{folder}/compact-")).values()):
            return
        where = f"{folder.rsplit('/', 1)[1]}/{name}"
        if exclusive:
            raise AlreadyLanded(f"{where} has landed before (it was compacted since)")
        raise LakeError(f"{where} was compacted: landing it again would be hidden by the compaction")

    def land_run(self, record: RunRecord) -> PurePath:
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
        """One past the highest chunk number landed for this run and table, compacted ones included."""
        pattern = re.compile(rf"^{re.escape(run_id)}-{tag}(\d+)\.parquet$")
        files, manifests = self._list(table)
        names = {f.name for f in files} | taken_names(manifests.values())
        landed = (pattern.match(name) for name in names)
        return max((int(m.group(1)) for m in landed if m), default=0) + 1

    def artifacts_dir(self, run_id: str, started_at: dt.datetime) -> Path:
        """Local directory (created) for a run's evidence: artifacts/<UTC date>/<run_id>/ under `root`."""
        path = self.artifacts_root / self._artifacts_key(run_id, started_at)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _artifacts_key(self, run_id: str, started_at: dt.datetime) -> str:
        """<UTC date>/<run_id> of a run's evidence."""
        if not _STEM.match(run_id):
            raise LakeError(f"run id {run_id!r} is not a safe directory name")
        return f"{as_utc(started_at).date().isoformat()}/{run_id}"

    def keep_artifacts(self, run_id: str, started_at: dt.datetime, files: Mapping[str, bytes]) -> str:
        """Store a run's evidence files beside the lake (artifacts/<date>/<run_id>/<name>); returns where."""
        folder = f"artifacts/{self._artifacts_key(run_id, started_at)}"
        for name, data in files.items():
            if not _STEM.match(name):
                raise LakeError(f"evidence name {name!r} is not a safe file name")
            self.store.put(f"{folder}/{name}", data)
        if isinstance(self.store, LocalStore):
            return str(self.artifacts_dir(run_id, started_at))
        return f"{self.url}/{folder}"

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
        return self.query(sql, [now]).dicts()

    def remove_stale_temp_files(self, *, older_than_s: float = STALE_TEMP_AGE_S) -> int:
        """Delete temp files older than `older_than_s` (their writer died); returns how many.

        Only local files have temp files: an object PUT is atomic and leaves none.
        """
        removed = 0
        leftovers = [*self.root.glob(f".catalog.*{TEMP_SUFFIX}*")]
        if isinstance(self.store, LocalStore):
            leftovers += self.store.stale_temp_files("lake", older_than_s)
        cutoff = time.time() - older_than_s
        for tmp in leftovers:
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # another sweeper got there first
                continue
        return removed

    # --- compaction ------------------------------------------------------------------------------

    def compact(self, table: str, day: dt.date, *, grace_s: float = DEFAULT_GRACE_S,
                now: dt.datetime | None = None) -> CompactionResult:
        """Merge a table-day's files into one, committed by a manifest; delete what older compactions replaced.

        Readers never lose or double-count a row (see compaction.py): the merged file counts only once its
        manifest exists, and the files it replaces are deleted by a later call, `grace_s` after that.
        """
        folder = f"lake/{self._table_key(table)}/date={day.isoformat()}"
        before, after, rows, output, deleted = compact_folder(
            self.store, folder, _arrow_schema(TABLES[table]), self._read_manifest, grace_s=grace_s,
            now=as_utc(now).timestamp() if now else None)
        return CompactionResult(table, day, before, after, rows, output, deleted)

    def compact_all(self, *, before: dt.date | None = None, tables: Sequence[str] | None = None,
                    grace_s: float = DEFAULT_GRACE_S) -> list[CompactionResult]:
        """Compact every table-day before `before` (default: today UTC, which is still being landed)."""
        before = before or dt.datetime.now(dt.timezone.utc).date()
        results = []
        for table in tables or list(TABLES):
            days = sorted({_day_of(f) for f in self._list(table)[0]} - {None})
            results += [self.compact(table, day, grace_s=grace_s) for day in days if day is not None and day < before]
        return results

    def _read_manifest(self, listed: StoredFile) -> Manifest | None:
        """A manifest's contents, read once per version (manifests are immutable); None if it went away."""
        version = (listed.key, listed.size, listed.modified_at)
        if version not in self._manifests:
            try:
                self._manifests[version] = Manifest.from_json(self.store.read(listed.key))
            except FileNotFoundError:  # deleted as spent between the listing and now
                return None
        return self._manifests[version]

    def _read_manifests(self, files: Sequence[StoredFile]) -> dict[str, Manifest]:
        """The manifests among listed files, by key."""
        found = {f.key: self._read_manifest(f) for f in files if is_manifest(f.name)}
        return {key: m for key, m in found.items() if m is not None}

    def _list(self, table: str) -> tuple[list[StoredFile], dict[str, Manifest]]:
        """Every file of a table and its manifests."""
        files = [f for f in self.store.list(f"lake/{self._table_key(table)}/") if _day_of(f) is not None]
        return files, self._read_manifests(files)

    def files(self, table: str) -> list[StoredFile]:
        """The data files a reader of `table` reads now (compactions applied)."""
        files, manifests = self._list(table)
        return visible_files(files, manifests, self.store.stat)
    # --- views and queries -----------------------------------------------------------------------

    def views(self, *, budget_seconds: float = DEFAULT_BUDGET_S) -> list[CatalogView]:
        """Every query view in creation order; a base view reads the files registered on the query's cursor."""
        base = [base_view(name, TABLES[table], files_relation(table)) for table, name in BASE_VIEWS.items()]
        return base + derived_views(budget_seconds)

    def _register_files(self, cursor: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
        """Give `cursor` each table's visible files: DuckDB's own Parquet reader over the listed paths for a
        local lake (its pushdown and parallel scan: about twice as fast as an Arrow dataset here), a pyarrow
        dataset for an object store (DuckDB reads S3 only through its httpfs extension, a download)."""
        for table in tables:
            files, schema = self.files(table), _arrow_schema(TABLES[table])
            if files and isinstance(self.store, LocalStore):
                paths = ", ".join(sql_literal(str(self.store.path(f.key))) for f in files)
                cursor.execute(f"CREATE OR REPLACE TEMP VIEW {files_relation(table)} AS SELECT * FROM read_parquet("
                               f"[{paths}], hive_partitioning = true, union_by_name = true, "
                               "hive_types = {'date': DATE})")
                continue
            data = parquet_dataset(self.store, files, schema) if files else schema.empty_table()
            cursor.register(files_relation(table), data)

    @contextmanager
    def _cursor(self, budget_seconds: float, tables: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the shared in-memory DuckDB holding every view, with the files of `tables` (None: all).

        The one place DuckDB errors are turned into LakeError.
        """
        try:
            with self._shared_lock:
                if self._shared is None or self._shared[0] != budget_seconds:
                    if self._shared is not None:
                        # Not closed: other threads may be querying through cursors of it.
                        self._retired.append(self._shared[1])
                    con = duckdb.connect(":memory:")
                    for table, model in TABLES.items():  # views bind at creation: give them empty files first
                        con.register(files_relation(table), _arrow_schema(model).empty_table())
                    create_views(con, self.views(budget_seconds=budget_seconds), None, comments=False)
                    self._shared = (budget_seconds, con)
                cursor = self._shared[1].cursor()
            try:
                cursor.execute("SET TimeZone = 'UTC'")
                self._register_files(cursor, list(TABLES) if tables is None else tables)
                yield cursor
            finally:
                cursor.close()
        except duckdb.Error as exc:
            raise LakeError(f"lake query failed: {exc}") from exc

    def _tables_read(self, sql: str) -> list[str]:
        """The tables whose files a statement may read (a superset: any view name it mentions counts)."""
        return tables_read(sql, self.views())

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
              budget_seconds: float = DEFAULT_BUDGET_S) -> QueryResult:
        """Run one read-only statement (SELECT/EXPLAIN) over the lake's views; returns columns and rows.

        `params` are bound to the statement's `?` (or `$name`) placeholders, never pasted into it.
        """
        _require_read_only(sql)
        with self._cursor(budget_seconds, self._tables_read(sql)) as con:
            cursor = con.execute(sql, params) if params is not None else con.execute(sql)
            return QueryResult(tuple(d[0] for d in cursor.description), cursor.fetchall())

    def query_frame(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
                    budget_seconds: float = DEFAULT_BUDGET_S) -> pl.DataFrame:
        """Like `query`, as a Polars DataFrame."""
        _require_read_only(sql)
        with self._cursor(budget_seconds, self._tables_read(sql)) as con:
            return con.sql(sql, params=params).pl()

    def runs_frame(self) -> pl.DataFrame:
        """The `runs` view as a Polars DataFrame: the final (or current) state of every run."""
        return self.query_frame("SELECT * FROM runs ORDER BY started_at, run_id")

    def refresh_catalog(self, *, budget_seconds: float = DEFAULT_BUDGET_S) -> Path:
        """Rebuild <root>/catalog.duckdb (views only) in a temp file and rename it into place; returns its path.

        Local lakes only: the catalog's views read the files themselves (globs that follow new files and
        apply compaction manifests), which DuckDB cannot do in an object store without its httpfs
        extension; for an object-store lake use `loadtest sql` or `Lake.query`.
        """
        if not isinstance(self.store, LocalStore):
            raise LakeError(f"no catalog file for an object-store lake ({self.url}): query it with `loadtest sql`")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".catalog.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        try:
            con = duckdb.connect(str(tmp))
            try:
                create_views(con, catalog_views(self.lake_dir, budget_seconds), None, comments=True)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, self.catalog_path)
            # A write-ahead log beside the new file would belong to the old one: never replay it.
            Path(f"{self.catalog_path}.wal").unlink(missing_ok=True)
        except duckdb.Error as exc:
            raise LakeError(f"catalog refresh failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        fsync_dir(self.root)
        return self.catalog_path


@cache
def _arrow_schema(model: type[LakeRecord]) -> pa.Schema:
    """The Arrow schema of a table's files, from its model (the same one Polars writes)."""
    return pl.DataFrame(schema=_schema(model)).to_arrow().schema


def _day_of(listed: StoredFile) -> dt.date | None:
    """The UTC date of a file's `date=YYYY-MM-DD` partition folder, None outside one."""
    folder = listed.folder.rsplit("/", 1)[-1]
    if not folder.startswith("date="):
        return None
    try:
        return dt.date.fromisoformat(folder[len("date="):])
    except ValueError:
        return None
