"""Fixtures of the leaderboard API tests: signed bodies, a stand-in board, a real `python -m api` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from analytics.leaderboard.stats import canonical_json
from tasks.publish.signature import sign
from tests.integration.processes import wait_until_answers

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret-not-real-9c1e"  # a recognisable value so tests can prove it never leaks
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
NOW_S = 1_767_000_000.0  # the fixed clock of the in-process tests


def stat(**overrides) -> dict:
    """A valid AI stat posted now, with `overrides`."""
    return {"region": "FRA", "orchestrator": "0xabc0000000000000000000000000000000000001", "success_rate": 1.0,
            "round_trip_time": 2.5, "errors": [], "timestamp": int(time.time()), "model": "streamdiffusion",
            "pipeline": "live-video-to-video", "model_is_warm": True} | overrides


def body_of(value: object) -> bytes:
    """The canonical JSON bytes of a value."""
    return canonical_json(value)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Headers carrying the body's signature."""
    return {"Authorization": sign(body, secret), "Content-Type": "application/json"}


def lake_listing(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under the data directory with its size and mtime: equal listings mean an unchanged lake."""
    return {str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(data_dir.rglob("*")) if p.is_file()}


class FakeBoard:
    """A stand-in Leaderboard for in-process tests: known regions and canned answers, queries recorded."""

    def __init__(self, regions: tuple[str, ...] = ("FRA", "LAX", "GLOBAL")) -> None:
        self.known, self.queries = regions, []

    def region_known(self, region: str) -> bool:
        return region.upper() in self.known

    def regions(self) -> list[dict[str, str]]:
        return [{"id": r, "name": r.title(), "type": "ai"} for r in self.known]

    def aggregated_stats(self, query):
        self.queries.append(query)
        return {}

    def raw_stats(self, query):
        self.queries.append(query)
        return {}

    def pipelines(self, query):
        self.queries.append(query)
        return []


@dataclass
class ApiServer:
    """A `python -m api` process on a loopback port over its own data directory."""

    url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`, wait for the exit and return its code (kill after STOP_TIMEOUT_S)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_api(tmp: Path, *, secret: str | None, command: tuple[str, ...] = (sys.executable, "-m", "api")) -> ApiServer:
    """Start the API on a free port with LOADTEST_DATA_DIR=tmp/data and wait until /docs answers."""
    port, data_dir, log_path = free_port(), tmp / "data", tmp / "api.log"
    env = {k: v for k, v in os.environ.items() if k not in ("LEADERBOARD_SECRET", "LOADTEST_CONFIG")}
    env |= {"LOADTEST_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    if secret is not None:
        env["LEADERBOARD_SECRET"] = secret
    argv = [*command, "--host", "127.0.0.1", "--port", str(port), "--config", str(ROOT / "config" / "default.yaml")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ApiServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    try:
        wait_until_answers(f"{server.url}/docs", process, timeout_s=START_TIMEOUT_S, name="python -m api",
                           output=server.output)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@pytest.fixture(scope="session")
def api_server(tmp_path_factory) -> Iterator[ApiServer]:
    """The API with posting enabled (secret SECRET), shared by the session's HTTP tests."""
    server = start_api(tmp_path_factory.mktemp("api"), secret=SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api_server_without_secret(tmp_path_factory) -> Iterator[ApiServer]:
    """The API with LEADERBOARD_SECRET unset: posting disabled."""
    server = start_api(tmp_path_factory.mktemp("api-no-secret"), secret=None)
    yield server
    server.stop()
