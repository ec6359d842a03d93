"""A real Prometheus Pushgateway on a free loopback port, for tests.

    with running_pushgateway() as gateway:
        gateway.url                      # http://127.0.0.1:<port>
        gateway.families()               # {name: Metric} parsed from GET /metrics
        gateway.groups()                 # GET /api/v1/metrics: the grouping keys it holds

The binary comes from the Debian package `prometheus-pushgateway`; `scripts/ensure-debian-packages`
installs it when missing (`make test` runs it; so does `running_pushgateway` before giving up).
It runs without a persistence file unless one is given, so nothing outside the test's temp dir
is written.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.integration.processes import wait_until_answers

BINARY = Path("/usr/bin/prometheus-pushgateway")
ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-debian-packages"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A TCP port nothing listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def ensure_binary() -> Path:
    """The Pushgateway binary, installed by the project's script when missing; RuntimeError if still absent."""
    if not BINARY.exists():
        subprocess.run([str(ENSURE_SCRIPT), "prometheus-pushgateway"], check=False, timeout=300)
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} missing: install the Debian package prometheus-pushgateway")
    return BINARY


@dataclass(frozen=True)
class Pushgateway:
    """A running Pushgateway and ways to read what it holds."""

    url: str
    process: subprocess.Popen

    def metrics_text(self) -> str:
        """GET /metrics: every pushed series plus the gateway's own."""
        response = httpx.get(f"{self.url}/metrics", timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        return response.text

    def families(self, prefix: str = "") -> dict[str, list[Sample]]:
        """Samples per metric family of GET /metrics, for families whose name starts with `prefix`."""
        found: dict[str, list[Sample]] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            if family.name.startswith(prefix):
                found.setdefault(family.name, []).extend(family.samples)
        return found

    def groups(self) -> list[dict]:
        """GET /api/v1/metrics: one entry per grouping key with its labels and families."""
        response = httpx.get(f"{self.url}/api/v1/metrics", timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        return response.json()["data"]


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


@contextmanager
def running_pushgateway(persistence_file: Path | None = None) -> Iterator[Pushgateway]:
    """Start a Pushgateway on a free loopback port, wait until it answers, stop it afterwards."""
    port = free_port()
    args = [str(ensure_binary()), f"--web.listen-address={LOOPBACK}:{port}",
            f"--persistence.file={persistence_file or ''}", "--log.level=warn"]
    url = f"http://{LOOPBACK}:{port}"
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty gateway never blocks on it
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until_answers(f"{url}/-/ready", process, timeout_s=START_TIMEOUT_S, name="pushgateway",
                               output=lambda: _read_log(log))
            yield Pushgateway(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
