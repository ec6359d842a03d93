"""Analytics speed over a generated lake: baselines and drift over 30 days, a warm 7-day frames P95.

Run: ``uv run python bench/bench_analytics.py [--runs 100000] [--frames 10000000] [--days 30] [--lake DIR]``

The runs are generated (seeded) by analytics/history.py, every one marked `generated` (40 orchestrators
x 12 scenarios, a fixed number a day each; 3 orchestrators' first frames 60 % slower on the last day),
the frames here; both land under a temporary directory, laid out like analytics/lake.py:
``lake/<table>/date=YYYY-MM-DD/*.parquet`` with each table's own schema (records.polars_schema).
Two deviations keep generation fast (about 25 s for the defaults):
- a few files per day (runs: one `started` and one `final` file; frames: 4 chunk files) instead of
  one file per run state and frame chunk. The rows are the same, the file count is not: ~200 files
  here, where per-run landing would leave hundreds of thousands, and DuckDB reads every file's
  footer whenever it binds a view, so the real layout needs compaction to approach these figures;
- files are written with Polars directly, not through Lake.land, which validates every row as a
  pydantic model (fine for one run's rows, minutes for 10 million).
With ``--lake DIR`` the lake is kept there and reused by later runs (generated when DIR is empty).

Measured:
- the analyze flow's path, in a row: ``Lake.runs_frame()`` (the `runs` view: 200,000 state rows ->
  100,000 runs), ``compute_baselines`` and ``compute_drift``;
- a 7-day P95 of ``decode_ms`` and ``fps_out`` (7 whole UTC days), by day from the `frames` view
  alone and by pipeline (frames carry no pipeline: joined to the `runs` view), warm (after one
  unmeasured pass), through ``Lake.query`` (a fresh in-memory DuckDB that binds its views on every
  call), a read-only connection to ``catalog.duckdb`` kept open, and lazy Polars over the same files.
  Wall and process CPU time (all threads) are printed: on a shared machine wall time includes
  waiting for a core, so the load average is printed too.
Goals (issue 5): baselines + drift < 10 s; the warm 7-day P95 query < 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from analytics.baselines import compute_baselines
from analytics.drift import compute_drift
from analytics.history import HistorySpec, Injection, OrchestratorShape, ScenarioShape, generate_history
from analytics.lake import Lake
from analytics.records import FrameSample, RunRecord, polars_schema

END = dt.datetime(2026, 3, 31, tzinfo=dt.timezone.utc)  # `now` of the analytics: the end of the last day
SCENARIOS, PIPELINES, ORCHESTRATORS = 12, 4, 40
REGRESSED_ORCHESTRATORS = 3  # their first frames get 60 % slower on the last day
OUTCOMES = (("passed", 0.88), ("failed", 0.07), ("unavailable", 0.04), ("aborted", 0.01))
FRAME_CHUNKS_PER_DAY = 4
TICK_S = 0.5
GOAL_ANALYTICS_S = 10.0
GOAL_QUERY_MS = 100.0


def bench_spec(rng: np.random.Generator, runs: int, days: int) -> HistorySpec:
    """About `runs` runs over `days` days before END: scenario and orchestrator effects, 3 regressed orchestrators."""
    speeds = rng.lognormal(0.0, 0.3, SCENARIOS)
    scenarios = tuple(ScenarioShape(f"scenario_{s:02d}", f"pipeline_{s % PIPELINES}", "t2v", 60.0, 14.0 / speed,
                                    duration_class="1m", speed=float(speed)) for s, speed in enumerate(speeds))
    orchestrators = tuple(OrchestratorShape(f"0x{o:040x}", connect_s=5.0 * float(f), load_s=20.0,
                                            first_frame_s=2.0 * float(f), outcomes=OUTCOMES)
                          for o, f in enumerate(rng.lognormal(0.0, 0.2, ORCHESTRATORS)))
    slower = tuple(Injection(orchestrator=o.address, metric="first_frame_s", factor=1.6)
                   for o in orchestrators[:REGRESSED_ORCHESTRATORS])
    per_day = max(1, round(runs / (days * SCENARIOS * ORCHESTRATORS)))
    return HistorySpec(orchestrators, scenarios, END, days=days, runs_per_day=per_day, injections=slower, seed=5)


def with_schema(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The frame with exactly the table's columns, missing ones null."""
    return frame.select([(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                         for c, t in schema.items()])


def write_partitioned(lake: Lake, table: str, frame: pl.DataFrame, stem: str) -> int:
    """Write `frame` as <table>/date=<date>/<stem>.parquet, one file per date; returns files written."""
    written = 0
    for (day,), rows in frame.group_by("date"):
        partition = lake.table_dir(table) / f"date={day.isoformat()}"
        partition.mkdir(parents=True, exist_ok=True)
        rows.write_parquet(partition / f"{stem}.parquet")
        written += 1
    return written


def land_runs(lake: Lake, runs: pl.DataFrame) -> None:
    """Each run's `started` row and its `final` row, one file of each per day."""
    schema = polars_schema(RunRecord)
    final = with_schema(runs, schema)
    started_only = ("ended_at", "outcome", "failure_category", "first_frame_s", "load_s", "connect_s", "fps_steady")
    started = final.with_columns(state=pl.lit("started"), **{c: pl.lit(None) for c in started_only})
    write_partitioned(lake, "runs", with_schema(started, schema), "runs-started")
    write_partitioned(lake, "runs", final, "runs-final")


def frame_rows(rng: np.random.Generator, runs: pl.DataFrame, per_run: np.ndarray) -> pl.DataFrame:
    """`per_run[i]` sampling ticks of run i: plausible figures, mostly valid frames."""
    total = int(per_run.sum())
    owner = np.repeat(np.arange(runs.height), per_run)
    seq = np.arange(total) - np.repeat(np.cumsum(per_run) - per_run, per_run)
    t_s = 2.0 + seq * TICK_S
    fps = runs["fps_steady"].fill_null(10.0).to_numpy()[owner] * rng.lognormal(0, 0.05, total)
    return pl.DataFrame({
        "run_id": runs["run_id"].gather(owner), "seq": seq, "t_s": t_s,
        "captured_at": runs["started_at"].gather(owner) + pl.Series((t_s * 1e6).astype("timedelta64[us]")),
        "frame_bytes": rng.integers(20_000, 40_000, total), "width": 512, "height": 512,
        "frame_fetch_ms": np.round(rng.lognormal(0.7, 0.3, total), 3),
        "decode_ms": np.round(rng.lognormal(0.4, 0.25, total), 3),
        "luma_mean": np.round(rng.uniform(40, 200, total), 2), "luma_std": np.round(rng.uniform(10, 60, total), 2),
        "black_fraction": np.round(rng.beta(1, 60, total), 4), "diff_prev": np.round(rng.beta(2, 40, total), 4),
        "verdict": rng.choice(["valid", "black", "frozen", "missing"], total, p=[0.97, 0.01, 0.01, 0.01]),
        "fps_out": np.round(fps, 2), "frames_out": (seq * TICK_S * fps).astype(np.int64),
        "pipeline_fps": np.round(fps * 1.02, 2), "vram_allocated_mb": np.round(rng.normal(12_000, 300, total), 1),
    }).with_columns(date=pl.col("captured_at").dt.date())


def land_frames(lake: Lake, rng: np.random.Generator, runs: pl.DataFrame, total_frames: int) -> None:
    """`total_frames` frame rows spread over the runs that streamed, a few chunk files per run day."""
    streamed = runs.filter(pl.col("outcome") != "unavailable")
    per_run = np.full(streamed.height, total_frames // streamed.height)
    per_run[: total_frames % streamed.height] += 1
    schema = polars_schema(FrameSample)
    days = streamed["date"].to_numpy()
    for day in np.unique(days):
        index = np.flatnonzero(days == day)
        for chunk, part in enumerate(np.array_split(index, FRAME_CHUNKS_PER_DAY)):
            rows = with_schema(frame_rows(rng, streamed[part], per_run[part]), schema)
            write_partitioned(lake, "frames", rows, f"frames-{day}-c{chunk}")


def generate_lake(lake: Lake, *, runs: int, frames: int, days: int) -> tuple[float, int]:
    """Generate the lake (seeded); returns the seconds it took and the runs generated."""
    began = time.perf_counter()
    rng = np.random.default_rng(5)
    generated = generate_history(bench_spec(rng, runs, days))
    land_runs(lake, generated)
    land_frames(lake, rng, generated, frames)
    return time.perf_counter() - began, generated.height


def timed(repeats: int, action: Callable[[], Any]) -> tuple[float, float]:
    """Median wall and median process CPU milliseconds (all threads) of `repeats` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def since_literals(since: dt.datetime) -> str:
    """SQL condition: frames of the 7 whole UTC days from `since` (a midnight), pruning partitions by date."""
    return f"f.date >= DATE '{since.date().isoformat()}'"


def by_day_sql(since: dt.datetime) -> str:
    """7-day P95 of decode_ms and fps_out per day, from the frames view alone."""
    return ("SELECT f.date, count(*) AS frames, quantile_cont(f.decode_ms, 0.95) AS decode_ms_p95, "
            f"quantile_cont(f.fps_out, 0.95) AS fps_out_p95 FROM frames AS f WHERE {since_literals(since)} "
            "GROUP BY f.date ORDER BY f.date")


def by_pipeline_sql(since: dt.datetime) -> str:
    """7-day P95 of decode_ms and fps_out by pipeline: frames joined to the runs view."""
    return ("SELECT r.pipeline, count(*) AS frames, quantile_cont(f.decode_ms, 0.95) AS decode_ms_p95, "
            "quantile_cont(f.fps_out, 0.95) AS fps_out_p95 FROM frames AS f JOIN runs AS r USING (run_id) "
            f"WHERE {since_literals(since)} GROUP BY r.pipeline ORDER BY r.pipeline")


def recent_frames(lake: Lake, since: dt.datetime) -> pl.LazyFrame:
    """Lazy frames of the 7 whole UTC days from `since` over the same Parquet files."""
    frames = pl.scan_parquet(lake.table_dir("frames") / "date=*" / "*.parquet", hive_partitioning=True)
    return frames.filter(pl.col("date") >= since.date())


P95_AGGREGATES = {"frames": pl.len(), "decode_ms_p95": pl.col("decode_ms").quantile(0.95, "linear"),
                  "fps_out_p95": pl.col("fps_out").quantile(0.95, "linear")}


def by_day_polars(lake: Lake, since: dt.datetime) -> pl.DataFrame:
    """by_day_sql with lazy Polars."""
    return recent_frames(lake, since).group_by("date").agg(**P95_AGGREGATES).sort("date").collect()


def by_pipeline_polars(lake: Lake, since: dt.datetime) -> pl.DataFrame:
    """by_pipeline_sql with lazy Polars (the final run rows give each run's pipeline)."""
    runs = pl.scan_parquet(lake.table_dir("runs") / "date=*" / "*.parquet", hive_partitioning=True)
    pipelines = runs.filter(pl.col("state") == "final").select("run_id", "pipeline").unique("run_id")
    joined = recent_frames(lake, since).join(pipelines, on="run_id")
    return joined.group_by("pipeline").agg(**P95_AGGREGATES).sort("pipeline").collect()


def measure_analytics(lake: Lake, repeats: int) -> float:
    """Time runs_frame + compute_baselines + compute_drift; print them; returns the median total."""
    totals = []
    for _ in range(repeats):
        began = time.perf_counter()
        runs = lake.runs_frame()
        read_s = time.perf_counter() - began
        baselines = compute_baselines(runs, now=END)
        baselines_s = time.perf_counter() - began - read_s
        drift = compute_drift(runs, now=END)
        totals.append(time.perf_counter() - began)
        print(f"  runs_frame {read_s:5.2f} s + compute_baselines {baselines_s:5.2f} s + compute_drift "
              f"{totals[-1] - read_s - baselines_s:5.2f} s = {totals[-1]:5.2f} s")
    verdicts = dict(drift.group_by("verdict").len().sort("verdict").iter_rows())
    print(f"  {runs.height:,} runs -> {baselines.height:,} baseline rows, {drift.height:,} drift rows {verdicts}")
    regressed = drift.filter(pl.col("verdict") == "regressed")
    injected = (pl.col("metric") == "first_frame_s") & pl.col("orchestrator").is_in(
        [f"0x{o:040x}" for o in range(REGRESSED_ORCHESTRATORS)])
    print(f"  regressed: {regressed.filter(injected).height} of the {REGRESSED_ORCHESTRATORS * SCENARIOS} "
          f"injected first-frame series (x1.6 on the last day), {regressed.filter(~injected).height} others "
          f"of {drift.filter(~injected & (pl.col('verdict') != 'insufficient_data')).height} judged")
    return statistics.median(totals)


def measure_queries(lake: Lake, repeats: int) -> tuple[dict[str, dict[str, tuple[float, float]]], bool]:
    """Median (wall, CPU) ms of each 7-day P95 query per engine, warm; and whether the engines agree."""
    since = END - dt.timedelta(days=7)
    catalog = duckdb.connect(str(lake.refresh_catalog()), read_only=True)
    queries = {"by day (frames only)": (by_day_sql(since), by_day_polars),
               "by pipeline (frames JOIN runs)": (by_pipeline_sql(since), by_pipeline_polars)}
    timings: dict[str, dict[str, tuple[float, float]]] = {}
    agree = True
    for name, (sql, polars_query) in queries.items():
        engines = {"Lake.query": lambda sql=sql: lake.query(sql).rows,
                   "catalog connection": lambda sql=sql: catalog.execute(sql).fetchall(),
                   "lazy Polars": lambda q=polars_query: q(lake, since).rows()}
        results = {engine: run() for engine, run in engines.items()}  # warm-up, unmeasured
        timings[name] = {engine: timed(repeats, run) for engine, run in engines.items()}
        reference = np.array([row[2:] for row in results["Lake.query"]], dtype=np.float64)
        agree &= all(np.allclose(reference, np.array([row[2:] for row in rows], dtype=np.float64))
                     for rows in results.values())
    no_rows = "SELECT * FROM frames JOIN runs USING (run_id) LIMIT 0"
    timings["setup alone (views, no rows)"] = {"Lake.query": timed(repeats, lambda: lake.query(no_rows)),
                                               "catalog connection": timed(repeats, lambda: catalog.execute(no_rows))}
    catalog.close()
    return timings, agree


def print_query_table(timings: dict[str, dict[str, tuple[float, float]]]) -> None:
    """The warm query medians as a table: wall ms (process CPU ms over all threads)."""
    engines = ("Lake.query", "catalog connection", "lazy Polars")
    print(f"  {'wall ms (cpu ms), median':<32}" + "".join(f"{e:>22}" for e in engines))
    for name, by_engine in timings.items():
        cells = [f"{by_engine[e][0]:.1f} ({by_engine[e][1]:.0f})" if e in by_engine else "" for e in engines]
        print(f"  {name:<32}" + "".join(f"{c:>22}" for c in cells))


def print_goals(analytics_s: float, timings: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Each goal, met or missed."""
    print("goals")
    print(f"  baselines + drift incl. reading the runs view: {analytics_s:.2f} s (goal < {GOAL_ANALYTICS_S:g} s): "
          f"{'met' if analytics_s < GOAL_ANALYTICS_S else 'MISSED'}")
    for name in ("by day (frames only)", "by pipeline (frames JOIN runs)"):
        for engine, (value, _) in timings[name].items():
            print(f"  warm 7-day P95 {name}, {engine}: {value:.1f} ms (goal < {GOAL_QUERY_MS:g} ms): "
                  f"{'met' if value < GOAL_QUERY_MS else 'MISSED'}")


def main() -> int:
    """Generate (or reuse) the lake, time the analytics and the queries, print numbers and goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the analytics")
    parser.add_argument("--query-repeats", type=int, default=9, help="timed passes of each query")
    parser.add_argument("--lake", type=Path, help="keep the generated lake here (reused when present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        lake = Lake(args.lake or Path(tmp))
        if next(lake.lake_dir.glob("*/date=*/*.parquet"), None) is None:
            took, runs = generate_lake(lake, runs=args.runs, frames=args.frames, days=args.days)
            print(f"generated {runs:,} runs (analytics/history.py, marked generated) and {args.frames:,} frame rows over {args.days} days "
                  f"in {took:.1f} s ({FRAME_CHUNKS_PER_DAY} frame files per day) at {lake.root}")
        else:
            print(f"reusing the lake at {lake.root}")
        print(f"baselines + drift at now={END.isoformat()} (cpu count {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}):")
        analytics_s = measure_analytics(lake, args.repeats)
        print("7-day P95 of decode_ms and fps_out, warm (after one unmeasured pass):")
        timings, agree = measure_queries(lake, args.query_repeats)
        print_query_table(timings)
        print(f"  DuckDB quantile_cont and Polars linear quantile give the same figures: {agree}")
    print_goals(analytics_s, timings)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
