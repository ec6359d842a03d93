"""Leaderboard API speed: aggregated_stats over 30 days of 100k relay runs, and POST under 50 posters.

Run: ``uv run python bench/bench_leaderboard.py [--runs 100000] [--days 30] [--posters 50] [--posts 2000]``

The lake: runs generated (seeded) by analytics/history.py as bench/bench_analytics.py generates
them (40 orchestrators x 12 scenarios, one `started` and one `final` file a day), here marked as
measured relay runs (`generated` false) in six regions, so the leaderboard counts them.

Measured, warm (after one unmeasured call), median of repeats:
- ``Leaderboard.aggregated_stats`` for one model over the default 24 h window, over all 30 days,
  and for one orchestrator over 30 days;
- the API over real loopback HTTP (``python -m api``): `POST /api/post_stats` from `--posters`
  concurrent clients, each body distinct and signed: accepted posts per second and the p50/p95
  latency, then the same `GET /api/aggregated_stats` through HTTP.
Goal (issue 11): aggregated_stats over 30 days of 100k runs under 200 ms warm.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.history import generate_history  # noqa: E402
from analytics.lake import Lake  # noqa: E402
from analytics.leaderboard.board import Leaderboard, StatsQuery  # noqa: E402
from analytics.leaderboard.stats import canonical_json  # noqa: E402
from bench_analytics import END, bench_spec, land_runs, timed  # noqa: E402
from config.settings import load_settings  # noqa: E402
from tasks.fleet.instances import free_loopback_port as free_port  # noqa: E402
from tasks.publish.signature import sign  # noqa: E402

REGIONS = ("FRA", "MDW", "LAX", "US-EAST", "EU-WEST", "AP-SOUTHEAST")
GOAL_MS = 200.0
SECRET = "bench-secret-not-real"
ROOT = Path(__file__).resolve().parent.parent


def generate(lake: Lake, runs: int, days: int) -> int:
    """Land about `runs` measured relay runs over `days` days; returns how many."""
    rng = np.random.default_rng(11)
    frame = generate_history(bench_spec(rng, runs, days))
    region = pl.col("orchestrator").str.slice(-2).str.to_integer(base=16) % len(REGIONS)
    frame = frame.with_columns(generated=pl.lit(False), media_path=pl.lit("relay"),
                               region=region.map_elements(lambda i: REGIONS[i], return_dtype=pl.String),
                               pipeline=pl.lit("longlive"), fps_received=pl.col("fps_steady"))
    land_runs(lake, frame)
    return frame.height


def measure_board(lake: Lake, days: int) -> dict[str, float]:
    """Warm median milliseconds of three aggregated_stats selections."""
    board = Leaderboard(lake, load_settings(ROOT / "config" / "demo.yaml"))
    until = END
    queries = {
        "24 h window, one model": StatsQuery(since=until - dt.timedelta(hours=24), until=until, model="longlive",
                                             pipeline="live-video-to-video"),
        f"{days} days, one model": StatsQuery(since=until - dt.timedelta(days=days), until=until, model="longlive",
                                             pipeline="live-video-to-video"),
        f"{days} days, one orchestrator": StatsQuery(since=until - dt.timedelta(days=days), until=until,
                                                    model="longlive", pipeline="live-video-to-video",
                                                    orchestrator=f"0x{3:040x}"),
    }
    result = {}
    for name, query in queries.items():
        answer = board.aggregated_stats(query)  # warm-up
        wall, _ = timed(7, lambda q=query: board.aggregated_stats(q))
        result[name] = wall
        print(f"  {name:<34} {wall:8.1f} ms  ({sum(len(r) for r in answer.values())} orchestrator x region rows)")
    return result


async def post_all(url: str, posters: int, posts: int) -> tuple[list[float], int, float]:
    """`posts` distinct signed bodies from `posters` concurrent clients: latencies (ms), accepted, seconds."""
    now = int(time.time())
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(posts):
        queue.put_nowait(i)
    latencies: list[float] = []
    accepted = 0

    async def poster(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            i = queue.get_nowait()
            body = canonical_json({"region": REGIONS[i % len(REGIONS)], "orchestrator": f"0x{i % 40:040x}",
                                   "success_rate": 1.0, "round_trip_time": 1.0 + (i % 7) / 10,
                                   "timestamp": now - i, "model": "longlive", "pipeline": "live-video-to-video"})
            began = time.perf_counter()
            answer = await client.post(url, content=body, headers={"Authorization": sign(body, SECRET),
                                                                  "Content-Type": "application/json"})
            latencies.append((time.perf_counter() - began) * 1e3)
            accepted += answer.status_code == 200

    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=posters)) as client:
        await asyncio.gather(*(poster(client) for _ in range(posters)))
    return latencies, accepted, time.perf_counter() - began


def measure_api(lake: Lake, posters: int, posts: int, days: int) -> None:
    """Start `python -m api` on the lake, post concurrently, then read aggregated_stats over HTTP."""
    port = free_port()
    env = os.environ | {"LOADTEST_DATA_DIR": str(lake.root), "LEADERBOARD_SECRET": SECRET,
                        "LOADTEST_CONFIG": str(ROOT / "config" / "demo.yaml")}
    process = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/regions", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        latencies, accepted, seconds = asyncio.run(post_all(f"{base}/api/post_stats", posters, posts))
        quantiles = statistics.quantiles(latencies, n=100)
        print(f"  POST /api/post_stats, {posters} posters: {accepted}/{posts} accepted in {seconds:.1f} s = "
              f"{accepted / seconds:.0f}/s; latency p50 {quantiles[49]:.0f} ms, p95 {quantiles[94]:.0f} ms")
        params = {"model": "longlive", "pipeline": "live-video-to-video",
                  "since": int((END - dt.timedelta(days=days)).timestamp()), "until": int(END.timestamp())}
        httpx.get(f"{base}/api/aggregated_stats", params=params, timeout=30)
        wall = [time.perf_counter()]
        for _ in range(5):
            httpx.get(f"{base}/api/aggregated_stats", params=params, timeout=30).raise_for_status()
            wall.append(time.perf_counter())
        per_call = statistics.median(b - a for a, b in zip(wall, wall[1:])) * 1e3
        print(f"  GET /api/aggregated_stats over HTTP, {days} days: {per_call:.1f} ms")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--posters", type=int, default=50)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--no-api", action="store_true", help="measure the board only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as tmp:
        lake = Lake(Path(tmp) / "data")
        began = time.perf_counter()
        runs = generate(lake, args.runs, args.days)
        print(f"landed {runs:,} relay runs over {args.days} days in {time.perf_counter() - began:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        timings = measure_board(lake, args.days)
        worst = max(timings.values())
        print(f"goal: aggregated_stats under {GOAL_MS:.0f} ms warm: {'met' if worst < GOAL_MS else 'NOT met'} "
              f"(slowest {worst:.1f} ms)")
        if not args.no_api:
            measure_api(lake, args.posters, args.posts, args.days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
