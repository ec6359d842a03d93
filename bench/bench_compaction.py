"""Compaction: a 7-day P95 query over 10,000 chunk files, before and after compacting them to one file a day.

Run: ``uv run python bench/bench_compaction.py [--files 10000] [--s3-files 1000] [--repeat 3]``

Frames of 50 runs a day over 7 UTC days land as chunk files named as chunk writers name them
(``<run_id>-fNNNN``, 5 rows each), through ``Lake.land`` (so with every landing's checks), on a
local lake and, with ``--s3-files`` > 0, on an S3 store (moto in server mode on loopback, a dev
dependency). Measured, warm (after one unmeasured pass), median of ``--repeat``: the P95 of
``decode_ms`` and ``fps_out`` by day through ``Lake.query``; then ``Lake.compact_all`` and the same
query again. File counts, landing and compaction times and the load average are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.lake import Lake  # noqa: E402
from analytics.records import FrameSample  # noqa: E402

DAYS, RUNS_A_DAY, ROWS = 7, 50, 5
START = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
P95_SQL = ("SELECT date, quantile_cont(decode_ms, 0.95) AS decode_ms_p95, quantile_cont(fps_out, 0.95) AS fps_out_p95 "
           "FROM frames WHERE date >= ? AND date < ? GROUP BY date ORDER BY date")
# Proof that compaction lost and doubled nothing: rows and a checksum of every row, per day.
IDENTITY_SQL = ("SELECT date, count(*) AS rows, sum(hash(run_id, seq, captured_at, decode_ms, fps_out)) AS checksum "
                "FROM frames GROUP BY date ORDER BY date")


def chunk(day: int, run: int, number: int) -> list[FrameSample]:
    """One chunk of frames of one run."""
    at = START + dt.timedelta(days=day, hours=run % 20, seconds=number * ROWS)
    return [FrameSample(run_id=f"d{day}-r{run}", seq=number * ROWS + n, t_s=float(number * ROWS + n),
                        captured_at=at + dt.timedelta(seconds=n), verdict="valid",
                        decode_ms=5 + (run * 31 + number * 7 + n) % 40, fps_out=8 + (run + n) % 12)
            for n in range(ROWS)]


def land(lake: Lake, files: int) -> float:
    """Land `files` chunk files over DAYS days; seconds taken."""
    per_run = -(-files // (DAYS * RUNS_A_DAY))
    specs = [(d, r, c) for d in range(DAYS) for r in range(RUNS_A_DAY) for c in range(per_run)][:files]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda s: lake.land("frames", chunk(*s), file_stem=f"d{s[0]}-r{s[1]}-f{s[2] + 1:04d}"), specs))
    return time.perf_counter() - started


def warm_median(action: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls after one unmeasured call."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, lake: Lake, files: int, repeat: int) -> None:
    """Land, query, compact, query; print one block."""
    landed_s = land(lake, files)
    params = [START.date(), START.date() + dt.timedelta(days=DAYS)]
    query = lambda: lake.query(P95_SQL, params).rows  # noqa: E731
    before_files, answer, identity = len(lake.files("frames")), query(), lake.query(IDENTITY_SQL).rows
    before_s = warm_median(query, repeat)
    started = time.perf_counter()
    results = lake.compact_all(before=START.date() + dt.timedelta(days=DAYS), tables=["frames"])
    compact_s = time.perf_counter() - started
    after_s = warm_median(query, repeat)
    assert query() == answer, "compaction changed the answer"
    assert lake.query(IDENTITY_SQL).rows == identity, "compaction lost or doubled rows"
    print(f"{name}: {before_files} files landed in {landed_s:.1f} s ({sum(r.rows for r in results)} rows)")
    print(f"  after compaction: the same rows and checksum on each of {len(identity)} days, the same P95s")
    print(f"  7-day P95 by day, warm median: {before_s * 1000:.0f} ms over {before_files} files")
    print(f"  compact_all: {compact_s:.1f} s -> {len(lake.files('frames'))} files")
    print(f"  7-day P95 by day, warm median: {after_s * 1000:.0f} ms over {len(lake.files('frames'))} files "
          f"({before_s / after_s:.0f}x faster)")


def main() -> None:
    """Run the bench on a local lake and, if asked, on moto's S3."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--s3-files", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        measure("local", Lake(Path(folder) / "data"), args.files, args.repeat)
    if args.s3_files > 0:
        from tests.integration.s3_server import running_s3_server

        with running_s3_server() as server, server.bucket() as url:
            measure(f"s3 (moto on loopback, {url})", Lake(url), args.s3_files, args.repeat)


if __name__ == "__main__":
    main()
