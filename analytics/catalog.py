"""The DuckDB catalog of the lake: a view per table and the derived views, generated from the records.

Every view's columns come from the one model of its table (analytics/records.py), so a view
exists with the right types even before its table's first file lands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics.records import TABLES, ColumnSpec, LakeRecord, RunRecord, column_specs

OVERDUE_REASON = "run did not finish within its hard cap (harness crashed or was killed); not swept yet"
BASE_VIEWS = {  # table -> view of all its rows
    "runs": "run_states", "frames": "frames", "prompt_switches": "prompt_switches",
    "orchestrators": "orchestrator_snapshots", "baselines": "baselines_history",
    "drift": "drift_history", "scores": "scores_history",
    "events": "events", "leaderboard_stats": "leaderboard_stats", "leaderboard_outbox": "leaderboard_outbox",
}
_DUCK_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
               "datetime": "TIMESTAMPTZ", "date": "DATE"}


@dataclass(frozen=True)
class CatalogView:
    """One catalog view: its SQL, the views it reads and its documentation (COMMENT ON ...)."""

    name: str
    sql: str
    depends_on: tuple[str, ...] = ()
    comment: str = ""
    column_comments: tuple[tuple[str, str], ...] = ()


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _duck_type(column: ColumnSpec) -> str:
    """The DuckDB type of a column."""
    scalar = _DUCK_TYPES[column.kind]
    return f"{scalar}[]" if column.is_list else scalar


def _column_comments(model: type[LakeRecord]) -> tuple[tuple[str, str], ...]:
    """(column, description) pairs of a model, for COMMENT ON COLUMN."""
    return tuple((c.name, c.description) for c in column_specs(model))


def files_relation(table: str) -> str:
    """The name under which a query's cursor registers a table's files (see `Lake._cursor`)."""
    return f"_lake_files_{table}"


def glob_files_sql(table_dir: str) -> str:
    """A table's files read by glob, with compaction manifests applied: for the catalog file of a local lake.

    The same rule as `compaction.visible_files`, in SQL, so the catalog follows new files and compactions
    without a refresh: a landed file counts unless a manifest lists it as a source; a compacted file counts
    only once a manifest names it as its output.
    """
    data, manifests = sql_literal(f"{table_dir}/date=*/*.parquet"), sql_literal(f"{table_dir}/date=*/compact-*.json")
    committed = (f"SELECT regexp_replace(filename, '/[^/]*$', '') AS folder, "
                 f"json_extract_string(content, '$.output') AS output, "
                 f"json_extract_string(content, '$.sources[*]') AS sources FROM read_text({manifests})")
    return (f"(WITH manifests AS ({committed}) "
            f"SELECT * EXCLUDE (filename) FROM read_parquet({data}, hive_partitioning = true, union_by_name = true, "
            "hive_types = {'date': DATE}, filename = true) "
            "WHERE filename NOT IN (SELECT folder || '/' || unnest(sources) FROM manifests) "
            "AND (NOT regexp_matches(filename, '/compact-[^/]*$') "
            "OR filename IN (SELECT folder || '/' || output FROM manifests)))")


def base_view(name: str, model: type[LakeRecord], source: str | None) -> CatalogView:
    """All rows of one table from `source` (a relation or subquery; None: no file yet), typed by its model."""
    specs = column_specs(model)
    typed_empty = "SELECT " + ", ".join(f"CAST(NULL AS {_duck_type(c)}) AS {_ident(c.name)}" for c in specs)
    sql = f"{typed_empty} WHERE false"
    if source is not None:  # the typed empty select fixes every column's type, even one no file has yet
        columns = ", ".join(_ident(c.name) for c in specs)
        sql = f"SELECT {columns} FROM (({typed_empty} WHERE false) UNION ALL BY NAME (SELECT * FROM {source}))"
    doc = (model.__doc__ or "").strip().splitlines()[0]
    return CatalogView(name, sql, (), f"All rows: {doc}", _column_comments(model))


_OVERDUE = "(state = 'started' AND epoch(started_at) + hard_cap_s < epoch(now()))"
_RUNS_OVERRIDES = {
    "outcome": f"CASE WHEN {_OVERDUE} THEN 'aborted' ELSE outcome END",
    "failure_category": f"CASE WHEN {_OVERDUE} THEN 'harness' ELSE failure_category END",
    "failure_reason": f"CASE WHEN {_OVERDUE} THEN {sql_literal(OVERDUE_REASON)} ELSE failure_reason END",
    "generated": "coalesce(generated, false)",  # files landed before the column existed hold measured runs
}
_COVERAGE_COMMENTS = (
    ("runs", "Runs started that day on the orchestrator (any outcome, running included)"),
    ("runs_running", "Runs without a final row still within their hard cap"),
    ("stream_s", "Seconds of monitored stream (first frame -> end), unavailable runs excluded"),
    ("wall_s", "Seconds from start to end of the runs that ended"),
    ("budget_s", "Test seconds allowed per orchestrator per day"),
    ("budget_used_ratio", "stream_s / budget_s"),
    ("scenarios_covered", "Distinct scenarios that reached a verdict (passed or failed)"),
    ("scenarios", "Those scenarios, sorted"),
)


def _runs_view() -> CatalogView:
    """The final row of each run; a started-only run past its hard cap reads as aborted."""
    names = [c.name for c in column_specs(RunRecord)]
    select = ", ".join(f"{_RUNS_OVERRIDES[n]} AS {_ident(n)}" if n in _RUNS_OVERRIDES else _ident(n) for n in names)
    latest = ("SELECT * FROM run_states QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY "
              "state = 'final' DESC, swept_at IS NULL DESC, ended_at DESC NULLS LAST) = 1")
    doc = "Each run's final row (its current row while running; outcome aborted once past its hard cap)"
    return CatalogView("runs", f"SELECT {select} FROM ({latest})", ("run_states",), doc, _column_comments(RunRecord))


def _coverage_view(budget_s: float) -> CatalogView:
    """Orchestrator x UTC date: runs by outcome, stream and budget seconds, scenarios covered."""
    if not budget_s > 0:
        raise ValueError(f"budget_seconds must be positive, got {budget_s}")
    budget = f"CAST({float(budget_s)!r} AS DOUBLE)"
    counts = ", ".join(f"count(*) FILTER (WHERE outcome = '{o}') AS runs_{o}"
                       for o in ("passed", "failed", "unavailable", "aborted"))
    stream = "coalesce(sum(stream_s) FILTER (WHERE outcome IS DISTINCT FROM 'unavailable'), 0)"
    verdict = "WHERE outcome IN ('passed', 'failed')"
    sql = (f"SELECT orchestrator, date, count(*) AS runs, {counts}, "
           "count(*) FILTER (WHERE outcome IS NULL) AS runs_running, "
           f"{stream} AS stream_s, coalesce(sum(epoch(ended_at) - epoch(started_at)), 0) AS wall_s, "
           f"{budget} AS budget_s, {stream} / {budget} AS budget_used_ratio, "
           f"count(DISTINCT scenario) FILTER ({verdict}) AS scenarios_covered, "
           f"coalesce(list(DISTINCT scenario ORDER BY scenario) FILTER ({verdict}), []) AS scenarios "
           "FROM runs GROUP BY orchestrator, date")
    return CatalogView("coverage_daily", sql, ("runs",), _coverage_view.__doc__ or "", _COVERAGE_COMMENTS)


def derived_views(budget_s: float) -> list[CatalogView]:
    """The views over the base views: runs, orchestrators, coverage_daily, latest analytics."""
    orchestrators = CatalogView(
        "orchestrators",
        "SELECT * FROM orchestrator_snapshots QUALIFY row_number() OVER "
        "(PARTITION BY address ORDER BY snapshot_at DESC) = 1",
        ("orchestrator_snapshots",), "Latest snapshot of each orchestrator", _column_comments(TABLES["orchestrators"]))
    latest = [
        CatalogView(table, f"SELECT * FROM {history} WHERE computed_at = (SELECT max(computed_at) FROM {history})",
              (history,), f"The latest computation of {table}", _column_comments(TABLES[table]))
        for table, history in (("baselines", "baselines_history"), ("drift", "drift_history"),
                               ("scores", "scores_history"))
    ]
    return [_runs_view(), orchestrators, _coverage_view(budget_s), *latest]


def _with_dependencies(views: Sequence[CatalogView], names: Sequence[str] | None) -> list[CatalogView]:
    """The views named (all when None) and those they read, in creation order."""
    if names is None:
        return list(views)
    by_name = {v.name: v for v in views}
    wanted, todo = set(), [n for n in names if n in by_name]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].depends_on)
    return [v for v in views if v.name in wanted]


def catalog_views(lake_dir: Path, budget_s: float) -> list[CatalogView]:
    """The catalog file's views of a local lake: each base view globs its table's files once it has one."""
    base = []
    for table, name in BASE_VIEWS.items():
        table_dir = lake_dir / table
        landed = next(table_dir.glob("date=*/*.parquet"), None) is not None
        base.append(base_view(name, TABLES[table], glob_files_sql(str(table_dir.resolve())) if landed else None))
    return base + derived_views(budget_s)


def tables_read(sql: str, views: Sequence[CatalogView]) -> list[str]:
    """The tables a statement may read: those under every view it names (a superset, never fewer)."""
    named = [v.name for v in views if re.search(rf"\b{re.escape(v.name)}\b", sql, re.IGNORECASE)]
    wanted = {v.name for v in _with_dependencies(views, named)}
    return [table for table, view in BASE_VIEWS.items() if view in wanted]


def create_views(con: duckdb.DuckDBPyConnection, views: Sequence[CatalogView], names: Sequence[str] | None,
                  *, comments: bool) -> None:
    """Create the views `names` need on `con`, with their documentation when `comments`."""
    for view in _with_dependencies(views, names):
        con.execute(f"CREATE OR REPLACE VIEW {_ident(view.name)} AS {view.sql}")
        if not comments:
            continue
        con.execute(f"COMMENT ON VIEW {_ident(view.name)} IS {sql_literal(view.comment)}")
        for column, text in view.column_comments:
            con.execute(f"COMMENT ON COLUMN {_ident(view.name)}.{_ident(column)} IS {sql_literal(text)}")


VIEW_NAMES = (*BASE_VIEWS.values(), "runs", "orchestrators", "coverage_daily", "baselines", "drift", "scores")
