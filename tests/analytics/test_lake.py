"""The lake: atomic landing, chunk writers, views, the orphan sweep and the catalog."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import types
import typing
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from analytics import lake as lake_module
from analytics.catalog import BASE_VIEWS, VIEW_NAMES
from analytics.lake import DEFAULT_BUDGET_S, AlreadyLanded, Lake, LakeError
from analytics.records import (
    TABLES, FrameSample, LakeRecord, PromptSwitchRecord, RunRecord, column_specs, polars_schema,
)

UTC = dt.timezone.utc
DAY = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "data")


def make_run(run_id: str, state: str = "started", *, started_at: dt.datetime = DAY, **fields: Any) -> RunRecord:
    """A run row with plausible required fields."""
    base: dict[str, Any] = dict(
        run_id=run_id, state=state, scenario="longlive_t2v_5m", pipeline="longlive", mode="t2v",
        duration_class="5m", planned_duration_s=300.0, hard_cap_s=900.0, scope_instance="http://127.0.0.1:8000",
        harness_version="0.1.0", started_at=started_at, orchestrator="0xorch-a",
    )
    if state == "final":
        base |= dict(outcome="passed", ended_at=started_at + dt.timedelta(seconds=400))
    return RunRecord(**(base | fields))


def make_frame(run_id: str, seq: int, *, captured_at: dt.datetime | None = None) -> FrameSample:
    """A valid frame sample, half a second apart."""
    at = captured_at or DAY + dt.timedelta(seconds=seq * 0.5)
    return FrameSample(run_id=run_id, seq=seq, t_s=seq * 0.5, captured_at=at, verdict="valid", frames_out=seq * 6)


def parquet_files(lake: Lake) -> list[Path]:
    return sorted(lake.lake_dir.rglob("*.parquet"))


def count(lake: Lake, sql: str) -> int:
    return lake.query(sql).rows[0][0]


# --- landing ------------------------------------------------------------------------------------


def test_landing_is_atomic_the_file_appears_whole(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [make_frame("run-1", seq) for seq in range(5)]
    seen: list[tuple[int, bool]] = []
    real_replace = os.replace

    def checking_replace(src: Any, dst: Any) -> None:
        seen.append((pq.read_metadata(src).num_rows, Path(dst).exists()))  # complete before it is named
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    path = lake.land("frames", rows, file_stem="run-1-f0001")
    assert seen == [(5, False)]
    assert path == lake.lake_dir / "frames" / "date=2026-03-01" / "run-1-f0001.parquet"
    assert not list(lake.lake_dir.rglob("*.tmp"))
    assert pl.read_parquet(path).height == 5


def test_a_failed_write_leaves_neither_a_file_nor_a_temp_file(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_write(self: pl.DataFrame, file: Any, **kwargs: Any) -> None:
        file.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", failing_write)
    with pytest.raises(OSError, match="disk full"):
        lake.land("runs", [make_run("run-1")], file_stem="run-1-started")
    assert [p for p in lake.lake_dir.rglob("*") if p.is_file()] == []


def test_a_leftover_temp_file_is_never_read_and_is_swept_when_stale(lake: Lake) -> None:
    lake.land_run(make_run("run-1"))
    partition = lake.table_dir("runs") / "date=2026-03-01"
    stale, fresh = partition / ".run-2-started.1.dead.tmp", partition / ".run-3-started.2.live.tmp"
    for tmp in (stale, fresh):
        tmp.write_bytes(b"PAR1 truncated by a crash")
    os.utime(stale, (0, 0))
    assert count(lake, "SELECT count(*) FROM run_states") == 1
    assert lake.remove_stale_temp_files() == 1
    assert not stale.exists() and fresh.exists()


def test_two_runs_landing_the_same_day_do_not_overwrite_each_other(lake: Lake) -> None:
    for run_id in ("run-a", "run-b"):
        lake.land_run(make_run(run_id))
        lake.land_run(make_run(run_id, "final"))
        with lake.frame_writer(run_id, flush_every_rows=100) as writer:
            for seq in range(3):
                writer.add(make_frame(run_id, seq))
    assert len(parquet_files(lake)) == 6
    assert lake.query("SELECT run_id, count(*) FROM frames GROUP BY run_id ORDER BY run_id").rows == [
        ("run-a", 3), ("run-b", 3)]
    assert sorted(lake.runs_frame()["run_id"]) == ["run-a", "run-b"]


def test_land_refuses_wrong_rows_tables_and_stems(lake: Lake) -> None:
    with pytest.raises(LakeError, match="takes RunRecord rows"):
        lake.land("runs", [make_frame("run-1", 0)], file_stem="x")
    with pytest.raises(LakeError, match="unknown lake table"):
        lake.land("runz", [make_run("run-1")], file_stem="x")
    with pytest.raises(LakeError, match="safe file name"):
        lake.land("runs", [make_run("run-1")], file_stem="../x")
    assert lake.land("runs", [], file_stem="run-1-started") is None


# --- chunk writers ------------------------------------------------------------------------------


def test_chunks_land_during_the_run_and_are_queryable_before_close(lake: Lake) -> None:
    writer = lake.frame_writer("run-1", flush_every_s=3600, flush_every_rows=3)
    landed = [writer.add(make_frame("run-1", seq)) for seq in range(7)]
    assert [p.name for p in landed if p] == ["run-1-f0001.parquet", "run-1-f0002.parquet"]
    assert count(lake, "SELECT count(*) FROM frames WHERE run_id = 'run-1'") == 6
    writer.close()
    assert count(lake, "SELECT count(*) FROM frames WHERE run_id = 'run-1'") == 7
    assert (writer.chunks_landed, writer.rows_landed) == (3, 7)
    with pytest.raises(LakeError, match="closed"):
        writer.add(make_frame("run-1", 8))


def test_a_chunk_lands_when_its_time_is_due(lake: Lake) -> None:
    now = [100.0]
    writer = lake_module.ChunkWriter(lake, "frames", "run-1", tag="f", flush_every_s=2.0,
                                     flush_every_rows=1000, clock=lambda: now[0])
    assert writer.add(make_frame("run-1", 0)) is None
    now[0] = 101.9
    assert writer.add(make_frame("run-1", 1)) is None
    now[0] = 102.0
    assert writer.add(make_frame("run-1", 2)) is not None
    assert count(lake, "SELECT count(*) FROM frames") == 3


def test_a_second_writer_of_a_run_continues_the_numbering(lake: Lake) -> None:
    for attempt in range(2):
        with lake.frame_writer("run-1", flush_every_rows=2) as writer:
            for seq in range(4):
                writer.add(make_frame("run-1", attempt * 4 + seq))
    assert [p.name for p in parquet_files(lake)] == [f"run-1-f000{n}.parquet" for n in (1, 2, 3, 4)]
    assert count(lake, "SELECT count(DISTINCT seq) FROM frames") == 8


def test_prompt_switches_have_their_own_writer(lake: Lake) -> None:
    with lake.prompt_switch_writer("run-1") as writer:
        writer.add(PromptSwitchRecord(run_id="run-1", seq=0, t_s=30.0, switched_at=DAY, prompt_from="a cat",
                                      prompt_to="a dog", noise_p95=0.02, response_diff=0.3, responded=True,
                                      prompt_latency_s=1.5))
    assert lake.query("SELECT prompt_to, responded, prompt_latency_s FROM prompt_switches").rows == [
        ("a dog", True, 1.5)]
    assert parquet_files(lake)[0].name == "run-1-p0001.parquet"


def test_a_chunk_crossing_midnight_lands_in_both_partitions(lake: Lake) -> None:
    midnight = dt.datetime(2026, 3, 2, tzinfo=UTC)
    with lake.frame_writer("run-1") as writer:
        for seq, offset_s in enumerate((-1.0, -0.5, 0.0, 0.5)):
            writer.add(make_frame("run-1", seq, captured_at=midnight + dt.timedelta(seconds=offset_s)))
    assert [p.parent.name for p in parquet_files(lake)] == ["date=2026-03-01", "date=2026-03-02"]
    assert lake.query("SELECT date, count(*) FROM frames GROUP BY date ORDER BY date").rows == [
        (dt.date(2026, 3, 1), 2), (dt.date(2026, 3, 2), 2)]


def test_a_writer_refuses_rows_of_another_run(lake: Lake) -> None:
    with pytest.raises(LakeError, match="run-2"):
        lake.frame_writer("run-1").add(make_frame("run-2", 0))


# --- schemas ------------------------------------------------------------------------------------


def sample_value(name: str, annotation: Any) -> Any:
    """A non-default value for a field, derived from its annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return args[-1]
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return sample_value(name, args[0])
    if origin is tuple:
        return ("first", "second")
    samples = {bool: True, int: 7, float: 1.25, dt.datetime: dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)}
    patterned = {"run_id": "run-7", "body_sha256": "ab" * 32}  # fields whose strings have a pattern
    return patterned.get(name) or samples.get(annotation, f"{name} value")


def full_row(model: type[LakeRecord]) -> LakeRecord:
    return model(**{n: sample_value(n, f.annotation) for n, f in model.model_fields.items() if n != "date"})


def minimal_row(model: type[LakeRecord]) -> LakeRecord:
    required = {n: sample_value(n, f.annotation) for n, f in model.model_fields.items() if f.is_required()}
    required["date"] = dt.date(2026, 3, 1)  # derived when the partition timestamp is given, else needed
    if model is RunRecord:
        required["state"] = "started"
    return model(**required)


@pytest.mark.parametrize("table", TABLES)
def test_schemas_round_trip_through_parquet_and_views(lake: Lake, table: str) -> None:
    model = TABLES[table]
    rows = [full_row(model), minimal_row(model)]
    path = lake.land(table, rows, file_stem="round-trip")
    assert path is not None
    frame = pl.read_parquet(path)
    assert dict(frame.schema) == polars_schema(model)
    assert [model.model_validate(row) for row in frame.to_dicts()] == rows
    base_view = BASE_VIEWS[table]
    viewed = lake.query_frame(f"SELECT * FROM {base_view}")
    assert [model.model_validate(row) for row in viewed.to_dicts()] == rows


# --- views --------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_views_exist_and_answer_on_an_empty_lake(lake: Lake, view: str) -> None:
    result = lake.query(f"SELECT * FROM {view}")
    assert result.rows == []
    model_of = {v: TABLES[t] for t, v in BASE_VIEWS.items()} | {
        name: TABLES[name] for name in ("runs", "orchestrators", "baselines", "drift", "scores")}
    if view in model_of:
        assert result.columns == tuple(c.name for c in column_specs(model_of[view]))
    else:
        assert {"orchestrator", "date", "runs", "stream_s", "budget_s", "scenarios_covered"} <= set(result.columns)


def test_view_columns_keep_their_types_when_every_value_is_null(lake: Lake) -> None:
    lake.land_run(make_run("run-1"))
    types = dict(lake.query("SELECT column_name, column_type FROM (DESCRIBE runs)").rows)
    assert types["ended_at"] == "TIMESTAMP WITH TIME ZONE" and types["frames_valid"] == "BIGINT"
    assert types["checks_failed"] == "VARCHAR[]" and types["cold_start"] == "BOOLEAN"
    assert types["date"] == "DATE" and types["connect_s"] == "DOUBLE"


def test_runs_view_shows_final_state_running_and_aborted(lake: Lake) -> None:
    now = dt.datetime.now(UTC)
    lake.land_run(make_run("running", started_at=now - dt.timedelta(minutes=1), hard_cap_s=3600))
    lake.land_run(make_run("overdue", started_at=now - dt.timedelta(hours=2), hard_cap_s=600))
    lake.land_run(make_run("finished", started_at=now - dt.timedelta(hours=2)))
    lake.land_run(make_run("finished", "final", started_at=now - dt.timedelta(hours=2), outcome="failed",
                           checks_failed=["fps"], failure_category="validation", failure_phase="stream"))
    runs = {r["run_id"]: r for r in lake.runs_frame().to_dicts()}
    assert (runs["running"]["state"], runs["running"]["outcome"]) == ("started", None)
    assert (runs["overdue"]["outcome"], runs["overdue"]["failure_category"]) == ("aborted", "harness")
    assert "hard cap" in runs["overdue"]["failure_reason"]
    assert (runs["finished"]["state"], runs["finished"]["outcome"]) == ("final", "failed")
    assert runs["finished"]["checks_failed"] == ["fps"]
    assert lake.runs_frame().schema["started_at"] == pl.Datetime("us", "UTC")


def test_a_real_final_row_wins_over_a_swept_one(lake: Lake) -> None:
    lake.land_run(make_run("late", started_at=DAY, hard_cap_s=60))
    assert lake.sweep_orphans(now=DAY + dt.timedelta(seconds=61)) == ["late"]
    lake.land_run(make_run("late", "final", started_at=DAY, hard_cap_s=60))  # it did finish after all
    assert lake.query("SELECT outcome FROM runs").rows == [("passed",)]
    assert len(parquet_files(lake)) == 3  # the swept row was not overwritten


def test_orchestrators_view_keeps_the_latest_snapshot_per_address(lake: Lake) -> None:
    snapshot = TABLES["orchestrators"]
    rows = [snapshot(snapshot_at=DAY + dt.timedelta(hours=h), address=a, source="static", capacity=h)
            for h, a in ((0, "0xa"), (1, "0xa"), (0, "0xb"))]
    lake.land("orchestrators", rows, file_stem="discovery-1")
    assert lake.query("SELECT address, capacity FROM orchestrators ORDER BY address").rows == [("0xa", 1), ("0xb", 0)]


def test_analytics_views_show_the_latest_computation(lake: Lake) -> None:
    score = TABLES["scores"]
    for hour, rate in ((1, 0.5), (2, 0.9)):
        lake.land("scores", [score(computed_at=DAY + dt.timedelta(hours=hour), orchestrator="0xa", pipeline="p",
                                   window_days=7, runs=10, passed=int(rate * 10), pass_rate=rate,
                                   sufficient_evidence=True)], file_stem=f"scores-{hour}")
    assert lake.query("SELECT pass_rate FROM scores").rows == [(0.9,)]
    assert count(lake, "SELECT count(*) FROM scores_history") == 2


def test_coverage_daily_from_literal_data(lake: Lake) -> None:
    runs = [  # (orchestrator, day, scenario, outcome, stream_s)
        ("0xa", 1, "s1", "passed", 100.0), ("0xa", 1, "s2", "failed", 50.0), ("0xa", 1, "s3", "unavailable", None),
        ("0xa", 1, "s1", "passed", 20.0), ("0xa", 2, "s1", "passed", 70.0), ("0xb", 1, "s2", "aborted", None),
    ]
    for n, (orch, day, scenario, outcome, stream_s) in enumerate(runs):
        started = dt.datetime(2026, 3, day, 8, tzinfo=UTC) + dt.timedelta(minutes=n)
        lake.land_run(make_run(f"r{n}", "final", started_at=started, orchestrator=orch, scenario=scenario,
                               outcome=outcome, stream_s=stream_s))
    budget_s = 1000.0
    rows = {(r["orchestrator"], r["date"].day): r for r in lake.query(
        "SELECT * FROM coverage_daily", budget_seconds=budget_s).dicts()}
    a1 = rows[("0xa", 1)]
    assert (a1["runs"], a1["runs_passed"], a1["runs_failed"], a1["runs_unavailable"]) == (4, 2, 1, 1)
    assert a1["stream_s"] == 170.0 and a1["budget_s"] == budget_s and a1["budget_used_ratio"] == 170.0 / budget_s
    assert (a1["scenarios_covered"], a1["scenarios"]) == (2, ["s1", "s2"])
    assert a1["wall_s"] == 4 * 400.0  # make_run ends every final run 400 s after its start
    assert (rows[("0xa", 2)]["runs"], rows[("0xa", 2)]["stream_s"]) == (1, 70.0)
    b1 = rows[("0xb", 1)]
    assert (b1["runs_aborted"], b1["stream_s"], b1["scenarios_covered"], b1["scenarios"]) == (1, 0.0, 0, [])


def test_queries_are_read_only(lake: Lake, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    for sql in (f"COPY (SELECT 1) TO '{target}'", "CREATE TABLE t AS SELECT 1", "SELECT 1; SELECT 2"):
        with pytest.raises(LakeError, match="read-only"):
            lake.query(sql)
    with pytest.raises(LakeError, match="cannot parse"):
        lake.query("SELEC 1")
    with pytest.raises(LakeError, match="no_such_view"):
        lake.query("SELECT * FROM no_such_view")
    assert not target.exists()


# --- sweep --------------------------------------------------------------------------------------


def test_sweep_turns_only_overdue_orphans_into_aborted_and_is_idempotent(lake: Lake) -> None:
    now = DAY + dt.timedelta(hours=3)
    lake.land_run(make_run("orphan", started_at=DAY, hard_cap_s=600, scenario="crashy", region="eu"))
    lake.land_run(make_run("running", started_at=now - dt.timedelta(seconds=30), hard_cap_s=600))
    lake.land_run(make_run("done", started_at=DAY, hard_cap_s=600))
    lake.land_run(make_run("done", "final", started_at=DAY, hard_cap_s=600))
    with lake.frame_writer("orphan") as writer:
        for seq in range(4):
            writer.add(make_frame("orphan", seq))
    assert lake.sweep_orphans(now=now) == ["orphan"]
    files = parquet_files(lake)
    assert lake.sweep_orphans(now=now) == []
    assert parquet_files(lake) == files
    runs = {r["run_id"]: r for r in lake.runs_frame().to_dicts()}
    orphan = runs["orphan"]
    assert (orphan["state"], orphan["outcome"], orphan["failure_category"]) == ("final", "aborted", "harness")
    assert orphan["failure_reason"].startswith("run did not finish (harness crashed or was killed); swept at")
    assert (orphan["scenario"], orphan["region"], orphan["swept_at"]) == ("crashy", "eu", now)
    assert (orphan["frames_sampled"], orphan["ended_at"]) == (4, make_frame("orphan", 3).captured_at)
    assert (runs["running"]["state"], runs["running"]["swept_at"]) == ("started", None)  # within its cap at `now`
    assert (runs["done"]["outcome"], runs["done"]["swept_at"]) == ("passed", None)


def test_sweep_waits_for_the_hard_cap(lake: Lake) -> None:
    lake.land_run(make_run("r1", started_at=DAY, hard_cap_s=600))
    assert lake.sweep_orphans(now=DAY + dt.timedelta(seconds=599)) == []
    assert lake.sweep_orphans(now=DAY + dt.timedelta(seconds=601)) == ["r1"]


# --- catalog ------------------------------------------------------------------------------------


def read_catalog(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_catalog_holds_only_documented_views_and_follows_new_files(lake: Lake) -> None:
    path = lake.refresh_catalog()
    kinds = read_catalog(path, "SELECT table_name, table_type FROM information_schema.tables")
    assert sorted(kinds) == sorted((name, "VIEW") for name in VIEW_NAMES)
    assert read_catalog(path, "SELECT count(*) FROM runs") == [(0,)]
    comments = dict(read_catalog(path, "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'runs'"))
    assert "POST /pipeline/load" in comments["load_s"]
    lake.land_run(make_run("run-1"))
    lake.refresh_catalog()
    assert read_catalog(path, "SELECT run_id FROM runs") == [("run-1",)]
    lake.land_run(make_run("run-2"))  # a view over a glob sees new files without a refresh
    assert read_catalog(path, "SELECT count(*) FROM run_states") == [(2,)]
    assert sorted(p.name for p in lake.root.iterdir()) == ["catalog.duckdb", "lake"]


def test_refresh_works_while_another_process_holds_the_catalog(lake: Lake) -> None:
    path = lake.refresh_catalog()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException):  # the lock the catalog refresh must not depend on
            duckdb.connect(str(path), read_only=True)
        lake.land_run(make_run("run-1"))
        lake.refresh_catalog()
        assert read_catalog(path, "SELECT run_id FROM runs") == [("run-1",)]
    finally:
        holder.communicate(input="", timeout=30)


def test_concurrent_refreshes_all_succeed(lake: Lake) -> None:
    lake.land_run(make_run("run-1"))
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            lake.refresh_catalog()
        except BaseException as exc:  # collected: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert read_catalog(lake.catalog_path, "SELECT run_id FROM runs") == [("run-1",)]
    assert [p.name for p in lake.root.iterdir() if p.name.startswith(".")] == []


# --- paths --------------------------------------------------------------------------------------


def test_from_env_and_artifacts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path / "elsewhere"))
    lake = Lake.from_env()
    assert lake.catalog_path == tmp_path / "elsewhere" / "catalog.duckdb"
    late = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    path = lake.artifacts_dir("run-1", late)
    assert path == tmp_path / "elsewhere" / "artifacts" / "2026-03-02" / "run-1" and path.is_dir()
    with pytest.raises(LakeError):
        lake.artifacts_dir("../run", late)


def test_an_exclusive_landing_lands_once(lake: Lake) -> None:
    first = make_run("run-x")
    lake.land("runs", [first], file_stem="only-once", exclusive=True)
    with pytest.raises(AlreadyLanded, match="only-once"):
        lake.land("runs", [make_run("run-y")], file_stem="only-once", exclusive=True)
    assert lake.query("SELECT run_id FROM run_states").rows == [("run-x",)]
    assert [p.name for p in lake.lake_dir.rglob("*")  if p.is_file()] == ["only-once.parquet"]  # no temp file left


def test_a_query_in_flight_survives_a_table_getting_its_first_file(lake: Lake) -> None:
    lake.land_run(make_run("run-a"))
    holding, landed = threading.Event(), threading.Event()
    answers: list[object] = []

    def query_across_the_rebuild() -> None:
        with lake._cursor(DEFAULT_BUDGET_S) as cursor:  # a cursor of the shared connection, as a query holds it
            holding.set()
            landed.wait(timeout=60)
            try:
                answers.append(cursor.execute("SELECT count(*) FROM run_states").fetchall())
            except Exception as exc:  # noqa: BLE001 - asserted below
                answers.append(exc)

    thread = threading.Thread(target=query_across_the_rebuild)
    thread.start()
    assert holding.wait(timeout=60)
    lake.land("frames", [make_frame("run-a", 0)], file_stem="first")  # frames' first file: the views are rebuilt
    assert lake.query("SELECT count(*) FROM frames").rows == [(1,)]
    landed.set()
    thread.join(timeout=60)
    assert answers == [[(1,)]]
