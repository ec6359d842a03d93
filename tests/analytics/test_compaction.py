"""Compaction of a local lake: one file per table-day, no row lost or counted twice, for any reader at any time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics.compaction import Manifest, visible_files
from analytics.lake import AlreadyLanded, Lake, LakeError
from analytics.storage import StoredFile
from tests.analytics.test_lake import DAY, make_frame, make_run

D1 = DAY.date()
CHECK_SQL = "SELECT count(*), sum(hash(run_id, seq, captured_at, frames_out)) FROM frames"
LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10)  # a `now` past every grace period


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "data")


def land_chunks(lake: Lake, runs: int = 3, chunks: int = 4, rows: int = 5) -> None:
    """Land `runs` runs of `chunks` frame chunks each on DAY."""
    for run in range(runs):
        with lake.frame_writer(f"run-{run}", flush_every_rows=rows, flush_every_s=3600) as writer:
            for seq in range(chunks * rows):
                writer.add(make_frame(f"run-{run}", seq))


def names(lake: Lake, table: str = "frames") -> list[str]:
    return [f.name for f in lake.files(table)]


def stored(lake: Lake) -> list[str]:
    return sorted(p.name for p in lake.table_dir("frames").rglob("*") if p.is_file())


def test_a_day_compacts_to_one_file_with_the_same_rows(lake: Lake) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    result = lake.compact("frames", D1)
    assert (result.files_before, result.files_after, result.rows) == (12, 1, 60)
    assert names(lake) == [result.output]
    assert lake.query(CHECK_SQL).rows == before
    assert lake.compact("frames", D1).output is None  # nothing left to merge
    assert lake.query(CHECK_SQL).rows == before


def test_sources_outlive_the_manifest_by_the_grace_then_go(lake: Lake) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    output = lake.compact("frames", D1).output
    assert len(stored(lake)) == 12 + 2  # sources kept for readers that listed before the manifest
    cleanup = lake.compact("frames", D1, grace_s=3600)
    assert cleanup.deleted == 0
    assert lake.compact("frames", D1, now=LATER).deleted == 12
    assert stored(lake) == sorted(["compact-000001.json", output])
    assert lake.query(CHECK_SQL).rows == before


def test_a_reader_that_listed_before_the_manifest_reads_exactly_the_rows(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    listed_before = lake.files("frames")
    lake.compact("frames", D1)
    lake.compact("frames", D1, grace_s=0.0)  # a second pass that would delete the sources at once...
    assert lake.query(CHECK_SQL).rows == before
    real = lake.files
    monkeypatch.setattr(lake, "files", lambda table: listed_before if table == "frames" else real(table))
    with pytest.raises(LakeError):  # ...is what the grace is for: that reader's files are gone
        lake.query(CHECK_SQL)


def test_a_reader_that_listed_before_the_manifest_within_the_grace(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    listed_before = lake.files("frames")
    lake.compact("frames", D1)
    lake.compact("frames", D1)  # cleanup within the grace deletes nothing
    real = lake.files
    monkeypatch.setattr(lake, "files", lambda table: listed_before if table == "frames" else real(table))
    assert lake.query(CHECK_SQL).rows == before


def test_files_landing_during_a_compaction_stay_visible_once(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_chunks(lake, runs=1)
    real_put = lake.store.put

    def landing_meanwhile(key: str, data: bytes, *, exclusive: bool = False) -> None:
        if key.endswith(".json"):  # between the compacted file and its manifest
            real_put("lake/frames/date=2026-03-01/late-f0001.parquet",
                     lake.store.read(lake.files("frames")[0].key))
        real_put(key, data, exclusive=exclusive)

    monkeypatch.setattr(lake.store, "put", landing_meanwhile)
    result = lake.compact("frames", D1)
    assert sorted(names(lake)) == sorted([result.output, "late-f0001.parquet"])
    assert lake.query("SELECT count(*) FROM frames").rows == [(20 + 5,)]


def test_a_compaction_that_died_before_its_manifest_changes_nothing_and_is_cleaned(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    real_put = lake.store.put

    def dying(key: str, data: bytes, *, exclusive: bool = False) -> None:
        if key.endswith(".json"):
            raise OSError("killed")
        real_put(key, data, exclusive=exclusive)

    monkeypatch.setattr(lake.store, "put", dying)
    with pytest.raises(OSError):
        lake.compact("frames", D1)
    monkeypatch.undo()
    assert len(names(lake)) == 12 and lake.query(CHECK_SQL).rows == before  # the orphan output is not read
    assert any(n.startswith("compact-") for n in stored(lake))
    lake.compact("frames", D1, now=LATER)
    assert lake.query(CHECK_SQL).rows == before
    assert len([n for n in stored(lake) if n.endswith(".parquet")]) == 13  # orphan gone, new output + 12 sources


def test_a_compaction_losing_the_race_for_its_manifest_removes_its_output(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    real_put = lake.store.put

    def lost(key: str, data: bytes, *, exclusive: bool = False) -> None:
        if key.endswith(".json"):
            raise FileExistsError(key)
        real_put(key, data, exclusive=exclusive)

    monkeypatch.setattr(lake.store, "put", lost)
    assert lake.compact("frames", D1).output is None
    assert not any(n.startswith("compact-") for n in stored(lake))
    assert lake.query(CHECK_SQL).rows == before


def test_later_files_compact_into_a_new_generation(lake: Lake) -> None:
    land_chunks(lake, runs=2)
    first = lake.compact("frames", D1).output
    land_chunks(lake, runs=1)  # run-0 again: its writer continues after the compacted chunk numbers
    assert "run-0-f0005.parquet" in names(lake)
    before = lake.query(CHECK_SQL).rows
    second = lake.compact("frames", D1)
    assert (second.files_before, second.files_after, second.output.startswith("compact-000002-")) == (5, 1, True)
    assert lake.query(CHECK_SQL).rows == before
    lake.compact("frames", D1, now=LATER)
    assert stored(lake) == sorted(["compact-000002.json", second.output]) and first not in stored(lake)
    assert lake.query(CHECK_SQL).rows == before


def test_a_compacted_name_is_never_landed_again(lake: Lake) -> None:
    lake.land("runs", [make_run("r1")], file_stem="only-once", exclusive=True)
    lake.land_run(make_run("r2"))
    lake.compact("runs", D1)
    with pytest.raises(AlreadyLanded):
        lake.land("runs", [make_run("r1")], file_stem="only-once", exclusive=True)
    with pytest.raises(LakeError, match="compacted"):
        lake.land_run(make_run("r2"))
    assert lake.query("SELECT count(*) FROM run_states").rows == [(2,)]


def test_runs_view_and_sweep_keep_their_meaning_after_compaction(lake: Lake) -> None:
    lake.land_run(make_run("orphan", hard_cap_s=600))
    lake.land_run(make_run("done", hard_cap_s=600))
    lake.land_run(make_run("done", "final", hard_cap_s=600))
    land_chunks(lake, runs=1)
    lake.compact_all(before=D1 + dt.timedelta(days=1))
    assert len(lake.files("runs")) == 1
    assert lake.sweep_orphans(now=DAY + dt.timedelta(hours=3)) == ["orphan"]
    runs = {r["run_id"]: r["outcome"] for r in lake.runs_frame().to_dicts()}
    assert runs == {"orphan": "aborted", "done": "passed"}
    assert lake.sweep_orphans(now=DAY + dt.timedelta(hours=3)) == []


def test_compact_all_leaves_today_alone(lake: Lake) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for n in range(3):
        lake.land_run(make_run(f"today-{n}", started_at=now))
        lake.land_run(make_run(f"past-{n}"))
    results = lake.compact_all()
    assert [(r.table, r.day, r.files_after) for r in results] == [("runs", D1, 1)]
    assert len(lake.files("runs")) == 1 + 3


def test_the_catalog_file_follows_compactions_without_a_refresh(lake: Lake) -> None:
    land_chunks(lake)
    before = lake.query(CHECK_SQL).rows
    path = lake.refresh_catalog()

    def catalog() -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(CHECK_SQL).fetchall()
        finally:
            con.close()

    assert catalog() == before
    lake.compact("frames", D1)
    assert catalog() == before
    lake.compact("frames", D1, now=LATER)
    assert catalog() == before


def test_a_manifest_seen_before_its_output_was_listed_still_counts() -> None:
    folder = "lake/frames/date=2026-03-01"
    manifest = Manifest(1, "compact-000001-ab.parquet", ("a.parquet", "b.parquet"), 2, "2026-03-02T00:00:00+00:00")
    listing = [StoredFile(f"{folder}/{n}", 1, 0.0) for n in ("a.parquet", "b.parquet", "c.parquet", "compact-000001.json")]
    output = StoredFile(f"{folder}/compact-000001-ab.parquet", 9, 0.0)
    found = visible_files(listing, {f"{folder}/compact-000001.json": manifest}, {output.key: output}.get)
    assert [f.name for f in found] == ["c.parquet", "compact-000001-ab.parquet"]
    assert [f.name for f in visible_files(listing, {}, lambda key: None)] == ["a.parquet", "b.parquet", "c.parquet"]
