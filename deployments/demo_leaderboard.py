"""The demo's leaderboard step: serve the API on the demo lake, post the demo's runs to it, show the table.

The API runs as its own process (`python -m api`, as `loadtest api` does) with a secret made up
for this demo (never printed). One outbox round posts every finished relay run of the demo to it
(`tasks/publish/outbox.py`, the `publish-leaderboard` flow's work), a second round shows nothing is
posted twice, and `GET /api/aggregated_stats` answers the table printed, one pipeline (Scope
model) at a time, as the Explorer would ask for it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tasks.fleet.instances import free_loopback_port as free_port

ROOT = Path(__file__).resolve().parent.parent
TARGET_NAME = "demo-api"
SECRET_ENV = "LEADERBOARD_SECRET"
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
TABLE_COLUMNS = ("orchestrator", "region", "model", "jobs", "unavailable", "success", "95 % interval", "score",
                 "live-video score")


def leaderboard_section(port: int) -> dict[str, Any]:
    """The demo config's leaderboard section: the API it serves on `port`, and the same API as the target."""
    return {"api": {"port": port},
            "targets": [{"name": TARGET_NAME, "url": f"http://127.0.0.1:{port}", "secret_env": SECRET_ENV}]}


@contextmanager
def running_api(config: Path, data_dir: Path, port: int, secret: str) -> Iterator[str]:
    """`python -m api` on the demo lake until the block ends; yields its base URL."""
    env = os.environ | {"LOADTEST_DATA_DIR": str(data_dir), SECRET_ENV: secret}
    process = subprocess.Popen([sys.executable, "-m", "api", "--config", str(config), "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answers(f"{base}/api/regions", process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answers(url: str, process: subprocess.Popen) -> None:
    """Poll `url` until it answers 200; RuntimeError when the process exits first or time runs out."""
    import time

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the leaderboard API exited with {process.returncode}: {process.stderr.read()[-500:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the leaderboard API did not answer {url} within {START_TIMEOUT_S:.0f} s")


def publish(lake, settings, secret: str) -> list[dict]:
    """One outbox round to the demo API; the summary of each target."""
    from tasks.publish.outbox import publish_round

    rounds = publish_round(lake, settings, environ={SECRET_ENV: secret})
    return [r.summary() for r in rounds]


def aggregated_rows(base: str, models: list[str], capability: str) -> list[list[object]]:
    """The API's aggregated stats of each model over the last 24 h, as table rows."""
    rows = []
    for model in models:
        answer = httpx.get(f"{base}/api/aggregated_stats", params={"model": model, "pipeline": capability},
                           timeout=HTTP_TIMEOUT_S)
        answer.raise_for_status()
        for orchestrator, regions in sorted(answer.json().items()):
            for region, stats in sorted(regions.items()):
                low, high = stats["success_rate_ci95"] or (None, None)
                live = stats["live_video_score"]
                rows.append([orchestrator[:12] + "…", region, model, stats["jobs"], stats["unavailable"],
                             stats["success_rate"], f"[{_f(low)}, {_f(high)}]", stats["score"],
                             _f(live) if live is not None else f"({stats['live_video_evidence']})"])
    return rows


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def show_leaderboard(lake, config: Path, data_dir: Path) -> bool:
    """Serve, post, print the table and a curl line; True when every run landed once and none twice."""
    from config.settings import load_settings
    from deployments.tables import format_table

    settings = load_settings(config)
    port, secret = settings.leaderboard.api.port, secrets.token_hex(16)
    capability = settings.discovery.capability
    with running_api(config, data_dir, port, secret) as base:
        first, again = publish(lake, settings, secret), publish(lake, settings, secret)
        models = [m for p in httpx.get(f"{base}/api/pipelines", timeout=HTTP_TIMEOUT_S).json()["pipelines"]
                  if p["id"] == capability for m in p["models"]]
        rows = aggregated_rows(base, models, capability)
    posted = sum(r["counts"].get("posted", 0) + r["counts"].get("duplicate", 0) for r in first)
    missed = sum(m["status"] in ("failed", "rejected") for r in first for m in r["not_posted"])
    stats, runs = lake.query("SELECT count(*), count(DISTINCT run_id) FROM leaderboard_stats").rows[0]
    reposted = sum(sum(r["counts"].values()) for r in again)
    print(f"\nLeaderboard API (python -m api on this lake, port {port}): the outbox posted {posted} relay run(s) "
          f"({missed} not posted); the lake holds {stats} posted stat(s) for {runs} run(s); "
          f"a second round posted {reposted} more")
    print(f"GET /api/aggregated_stats?model=…&pipeline={capability} (last 24 h; a live-video score needs "
          f"{settings.leaderboard.live_video.min_jobs_to_rank} jobs):")
    print(format_table(TABLE_COLUMNS, rows))
    print("try it:  uv run loadtest api --config data/demo-config.yaml &  then  curl -s "
          f"'http://127.0.0.1:{port}/api/aggregated_stats?model={models[0] if models else 'passthrough'}"
          f"&pipeline={capability}'")
    return missed == 0 and stats == runs and reposted == 0
