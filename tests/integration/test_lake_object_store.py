"""The lake on an S3-compatible store (moto over loopback) behaves as on a local folder; compaction at scale.

Each behaviour runs on both kinds of root. The scale test lands 10,000 chunk files (fewer on S3) of many
runs over a few days and checks that compaction leaves one file per table-day with identical answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analytics.lake import AlreadyLanded, Lake, LakeError
from analytics.records import FrameSample
from tests.analytics.test_lake import DAY, make_frame, make_run
from tests.integration.s3_server import S3Server, running_s3_server

pytestmark = pytest.mark.integration
UTC = dt.timezone.utc
CHECK_SQL = ("SELECT count(*), count(DISTINCT run_id), sum(hash(run_id, seq, captured_at, decode_ms, fps_out)) "
             "FROM frames")
DAILY_SQL = ("SELECT date, count(*), sum(hash(run_id, seq, captured_at, decode_ms, fps_out)), "
             "quantile_cont(decode_ms, 0.95), quantile_cont(fps_out, 0.95) FROM frames GROUP BY date ORDER BY date")
LATER = dt.datetime.now(UTC) + dt.timedelta(days=30)  # past every grace period


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    if request.param == "local":
        yield Lake(tmp_path / "data")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    with server.bucket() as url, pytest.MonkeyPatch.context() as env:
        env.setenv("LOADTEST_LOCAL_DIR", str(tmp_path / "local"))
        yield Lake(url)


def test_landing_queries_and_the_runs_view(lake: Lake) -> None:
    now = dt.datetime.now(UTC)
    lake.land_run(make_run("running", started_at=now - dt.timedelta(minutes=1), hard_cap_s=3600))
    lake.land_run(make_run("finished", started_at=now - dt.timedelta(hours=2)))
    lake.land_run(make_run("finished", "final", started_at=now - dt.timedelta(hours=2), outcome="failed"))
    runs = {r["run_id"]: (r["state"], r["outcome"]) for r in lake.runs_frame().to_dicts()}
    assert runs == {"running": ("started", None), "finished": ("final", "failed")}
    assert lake.query("SELECT count(*) FROM run_states WHERE run_id = ?", ["finished"]).rows == [(2,)]


def test_exclusive_landing_lands_once(lake: Lake) -> None:
    lake.land("runs", [make_run("run-x")], file_stem="only-once", exclusive=True)
    with pytest.raises(AlreadyLanded, match="only-once"):
        lake.land("runs", [make_run("run-y")], file_stem="only-once", exclusive=True)
    assert lake.query("SELECT run_id FROM run_states").rows == [("run-x",)]


def test_chunk_writers_number_on_after_each_other(lake: Lake) -> None:
    for attempt in range(2):
        with lake.frame_writer("run-1", flush_every_rows=2) as writer:
            for seq in range(4):
                writer.add(make_frame("run-1", attempt * 4 + seq))
    assert [f.name for f in lake.files("frames")] == [f"run-1-f000{n}.parquet" for n in (1, 2, 3, 4)]
    assert lake.query("SELECT count(DISTINCT seq) FROM frames").rows == [(8,)]


def test_the_sweep_finds_orphans_once(lake: Lake) -> None:
    lake.land_run(make_run("orphan", hard_cap_s=600))
    with lake.frame_writer("orphan") as writer:
        for seq in range(3):
            writer.add(make_frame("orphan", seq))
    now = DAY + dt.timedelta(hours=3)
    assert lake.sweep_orphans(now=now) == ["orphan"]
    assert lake.sweep_orphans(now=now) == []
    (orphan,) = lake.runs_frame().to_dicts()
    assert (orphan["outcome"], orphan["frames_sampled"]) == ("aborted", 3)


def test_evidence_is_kept_beside_the_lake(lake: Lake) -> None:
    where = lake.keep_artifacts("run-1", DAY, {"summary.json": b"{}", "first-bad.jpg": b"\xff\xd8"})
    keys = [f.key for f in lake.store.list("artifacts/")]
    assert keys == ["artifacts/2026-03-01/run-1/first-bad.jpg", "artifacts/2026-03-01/run-1/summary.json"]
    assert where.endswith("2026-03-01/run-1")
    assert lake.store.read("artifacts/2026-03-01/run-1/summary.json") == b"{}"


def test_compaction_keeps_answers_for_readers_before_during_and_after(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    land_many(lake, files=40, runs=10, days=2)
    before, listed_before = lake.query(CHECK_SQL).rows, lake.files("frames")
    results = lake.compact_all(before=DAY.date() + dt.timedelta(days=2), tables=["frames"])
    assert [(r.files_before, r.files_after) for r in results] == [(20, 1), (20, 1)]
    assert lake.query(CHECK_SQL).rows == before and len(lake.files("frames")) == 2
    real = lake.files
    with monkeypatch.context() as patch:  # a reader that listed before the manifests landed
        patch.setattr(lake, "files", lambda table: listed_before if table == "frames" else real(table))
        assert lake.query(CHECK_SQL).rows == before
    deleted = sum(r.deleted for r in lake.compact_all(before=DAY.date() + dt.timedelta(days=2), tables=["frames"],
                                                       grace_s=3600))
    assert deleted == 0
    cleaned = lake.compact_all(before=DAY.date() + dt.timedelta(days=2), tables=["frames"], grace_s=0.0)
    assert sum(r.deleted for r in cleaned) == 40
    assert lake.query(CHECK_SQL).rows == before


def test_refresh_catalog_is_local_only(lake: Lake) -> None:
    lake.land_run(make_run("run-1"))
    if lake.store.is_local:
        assert lake.refresh_catalog().is_file()
    else:
        with pytest.raises(LakeError, match="object-store"):
            lake.refresh_catalog()


def test_from_env_takes_an_object_store_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with s3_server.bucket("deep/prefix") as url:
        monkeypatch.setenv("LOADTEST_DATA_DIR", url)
        lake = Lake.from_env()
        lake.land_run(make_run("run-1"))
        assert lake.url == url and [f.key for f in lake.store.list("lake/")] == [
            "lake/runs/date=2026-03-01/run-1-started.parquet"]
        assert Lake(url).query("SELECT run_id FROM runs").rows == [("run-1",)]  # another process, same lake


# --- at scale ----------------------------------------------------------------------------------


def frame_rows(run: str, chunk: int, day: int, rows: int) -> list[FrameSample]:
    """One chunk's frames of a run on day `day` after DAY, with varied decode times and fps."""
    start = DAY + dt.timedelta(days=day, seconds=chunk * rows)
    return [FrameSample(run_id=run, seq=chunk * rows + n, t_s=float(chunk * rows + n), verdict="valid",
                        captured_at=start + dt.timedelta(seconds=n), decode_ms=(hash((run, chunk, n)) % 997) / 10,
                        fps_out=10 + (chunk * 7 + n) % 13, frames_out=chunk * rows + n) for n in range(rows)]


def land_many(lake: Lake, *, files: int, runs: int, days: int, rows: int = 3, workers: int = 16) -> None:
    """Land `files` chunk files, spread over `runs` runs a day for `days` days, named as chunk writers name them."""
    per_run = files // (runs * days)

    def land(spec: tuple[int, int, int]) -> None:
        day, run, chunk = spec
        lake.land("frames", frame_rows(f"d{day}-run-{run}", chunk, day, rows), file_stem=f"d{day}-run-{run}-f{chunk + 1:04d}")

    specs = [(d, r, c) for d in range(days) for r in range(runs) for c in range(per_run)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(land, specs))


# bench/bench_compaction.py does the same with 10,000 files (the figure) and times the queries;
# here 2,000 keep the suite's time down and prove the same property.
@pytest.mark.slow
@pytest.mark.parametrize("store, files", [("local", 2_000), ("s3", 200)])
def test_thousands_of_chunk_files_compact_to_one_per_day(store: str, files: int, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    if store == "local":
        lake = Lake(tmp_path / "data")
        compact_and_compare(lake, files)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    with server.bucket() as url:
        compact_and_compare(Lake(url), files)


def compact_and_compare(lake: Lake, files: int) -> None:
    """Land, answer, compact, clean up, and answer the same at every step."""
    days = 4
    land_many(lake, files=files, runs=50, days=days)
    assert len(lake.files("frames")) == files
    before = lake.query(DAILY_SQL).rows  # rows, checksum and P95s of each day
    results = lake.compact_all(before=DAY.date() + dt.timedelta(days=days), tables=["frames"])
    assert [(r.files_after, r.rows) for r in results] == [(1, files // days * 3)] * days
    assert len(lake.files("frames")) == days
    assert lake.query(DAILY_SQL).rows == before
    lake.compact_all(before=DAY.date() + dt.timedelta(days=days), tables=["frames"], grace_s=0.0)
    assert len(lake.store.list("lake/frames/")) == 2 * days  # one file and its manifest per day
    assert lake.query(DAILY_SQL).rows == before
