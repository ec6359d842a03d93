"""A real `prefect server start` on a free loopback port, for tests.

    with running_prefect_server(home) as server:
        server.api_url            # http://127.0.0.1:<port>/api
        server.client_env(**extra)  # os.environ pointed at it, for CLI subprocesses
        server.get("/deployments/name/run-scenario/adhoc")   # its REST API, JSON in, JSON out

`prefect_server` is the session-scoped fixture (tests/integration/conftest.py makes it every
integration test's, and `prefect_api` points in-process flows at it): one server per test
session, SQLite in a temp PREFECT_HOME. Its scheduler service is off, so the only flow runs are the ones a test
creates (a worker started by a test never picks up a scheduled dispatch or discovery).
Tests read the server through its REST API with httpx rather than Prefect's client: what a
test asserts is what the server holds, whatever process the caller's Prefect settings point at.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from tests.integration.processes import wait_until_answers
import pytest

LOOPBACK = "127.0.0.1"
# Healthy after 9-12 s on an idle 2-core machine; leave room for a loaded one.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
REPOSSESSOR_LOOP_S = 1


def free_port() -> int:
    """A TCP port nothing listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _without_prefect_api(environ: dict[str, str]) -> dict[str, str]:
    """The environment minus anything that points Prefect at another server or profile."""
    return {k: v for k, v in environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_API_KEY")}


@dataclass(frozen=True)
class PrefectServer:
    """A running Prefect server: its API URL, home directory and REST helpers."""

    api_url: str
    home: Path
    process: subprocess.Popen

    def client_env(self, **extra: str) -> dict[str, str]:
        """os.environ for a Prefect CLI or worker process that talks to this server."""
        env = _without_prefect_api(dict(os.environ))
        return env | QUIET | {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)} | extra

    def get(self, path: str) -> Any:
        """GET `path` under /api; the decoded JSON, or None on 404."""
        response = httpx.get(f"{self.api_url}{path}", timeout=HTTP_TIMEOUT_S)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> httpx.Response:
        """POST JSON to `path` under /api; the raw response (callers check the status)."""
        return httpx.post(f"{self.api_url}{path}", json=body, timeout=HTTP_TIMEOUT_S)

    def patch(self, path: str, body: dict) -> httpx.Response:
        """PATCH JSON to `path` under /api; the raw response."""
        return httpx.patch(f"{self.api_url}{path}", json=body, timeout=HTTP_TIMEOUT_S)


def _tail(log: IO[bytes], size: int = 2000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


def stop_process_group(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the group a test started (a CLI and its children), SIGKILL it if it lingers.

    The group id stays taken while any member lives, so signalling it after the leader exited
    still reaches only that test's leftovers; when none are left there is nothing to do.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.wait(timeout=timeout_s)
        return
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


@contextmanager
def running_prefect_server(home: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port with its SQLite database under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _without_prefect_api(dict(os.environ)) | QUIET | {
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",  # nothing to look at in a test; skips preparing the UI bundle
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # only the runs a test creates exist
        # Expired concurrency leases are revoked within a second (15 s by default), so a test of a
        # dead holder waits for its lease, not for the repossessor's next pass.
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": str(REPOSSESSOR_LOOP_S),
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", LOOPBACK, "--port", str(port)]
    with open(home / "server.log", "w+b") as log:
        # A new session makes the CLI and its uvicorn child one process group, stopped together.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = PrefectServer(f"http://{LOOPBACK}:{port}/api", home, process)
        try:
            wait_until_answers(f"{server.api_url}/health", process, timeout_s=START_TIMEOUT_S, name="prefect server",
                               output=lambda: _tail(log))
            yield server
        finally:
            stop_process_group(process)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server for the session's deployment tests."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-server-home")) as server:
        yield server
