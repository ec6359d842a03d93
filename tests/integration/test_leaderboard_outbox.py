"""The outbox against a real receiving API (`python -m api`) behind a loopback TCP proxy that loses an answer.

(a) the receiver is down: a round records failed attempts, every run stays pending;
(b) it is up again; the proxy relays one post, reads the receiver's answer, SIGKILLs the receiver
    and drops the client's connection without relaying the answer (landed, but never heard);
(c) the receiver restarts on the same lake; rounds with the clock moved past the back-off deliver
    everything: every run lands exactly once at the receiver, and every outbox shows posted or
    duplicate (the lost answer's run: duplicate).
Every wait polls with a deadline; the back-off is skipped by passing `now`, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from analytics.lake import Lake
from config.leaderboard import LeaderboardSettings, LeaderboardTarget, OutboxSettings
from config.settings import Settings
from tasks.publish.outbox import pending_jobs, publish_round
from tests.conftest import ROOT
from tests.integration.processes import wait_until_answers
from tests.tasks.publish.test_outbox import make_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "outbox-integration-secret-5e2b"
RUNS = 5
START_TIMEOUT_S = 20.0
IO_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Receiver:
    """`python -m api` processes over one data directory, one at a time."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir, self.log_path, self.process, self.port = tmp / "receiver-data", tmp / "receiver.log", None, 0

    def start(self) -> int:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "LOADTEST_CONFIG"}
        env |= {"LOADTEST_DATA_DIR": str(self.data_dir), "LEADERBOARD_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(self.port),
                "--config", str(ROOT / "config" / "default.yaml")]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until_answers(f"http://127.0.0.1:{self.port}/api/regions", self.process, timeout_s=START_TIMEOUT_S,
                           name="python -m api", output=lambda: self.log_path.read_text(errors="replace"))
        return self.port

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(IO_TIMEOUT_S)

    def landed_run_ids(self) -> list[str]:
        return [r[0] for r in Lake(self.data_dir).query("SELECT run_id FROM leaderboard_stats ORDER BY run_id").rows]


def read_message(sock: socket.socket, buffered: bytes = b"") -> bytes:
    """One whole HTTP/1.1 message (headers and Content-Length body) from `sock`."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the headers ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the body ended")
        body += chunk
    return head + b"\r\n\r\n" + body


class LossyProxy:
    """A loopback TCP proxy to the receiver; armed, it relays one request and swallows its answer."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.upstream_port = 0
        self.on_swallowed: Callable[[], None] | None = None  # armed when set; runs once the answer is read
        self.swallowed_answers: list[bytes] = []
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            with suppress(TimeoutError):
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(IO_TIMEOUT_S)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=IO_TIMEOUT_S)
        except OSError:  # the receiver is down: the poster sees its connection closed, no answer
            client.close()
            return
        with client, upstream:
            with suppress(OSError):
                while True:
                    request = read_message(client)
                    upstream.sendall(request)
                    answer = read_message(upstream)
                    hook, self.on_swallowed = self.on_swallowed, None
                    if hook is not None:
                        self.swallowed_answers.append(answer)
                        hook()
                        return  # the client's connection closes without the answer
                    client.sendall(answer)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(IO_TIMEOUT_S)
        self.listener.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    receiver = Receiver(tmp_path)
    yield receiver
    receiver.kill()


@pytest.fixture
def proxy() -> Iterator[LossyProxy]:
    proxy = LossyProxy()
    yield proxy
    proxy.close()


def posting_settings(demo: Settings, proxy_port: int) -> Settings:
    target = LeaderboardTarget(name="ours", url=f"http://127.0.0.1:{proxy_port}", secret_env="OUTBOX_IT_SECRET",
                               timeout_s=IO_TIMEOUT_S)
    board = LeaderboardSettings(targets=[target], outbox=OutboxSettings(backoff_s=30.0, backoff_max_s=120.0))
    return demo.model_copy(update={"leaderboard": board})


def outbox_by_run(lake: Lake) -> dict[str, list[str]]:
    rows = lake.query("SELECT run_id, status FROM leaderboard_outbox ORDER BY attempted_at, attempt").rows
    statuses: dict[str, list[str]] = {}
    for run_id, status in rows:
        statuses.setdefault(run_id, []).append(status)
    return statuses


def test_runs_arrive_exactly_once_through_a_down_receiver_and_a_lost_answer(
        tmp_path: Path, demo_settings: Settings, receiver: Receiver, proxy: LossyProxy):
    lake, started = Lake(tmp_path / "ours"), dt.datetime.now(dt.timezone.utc)
    run_ids = [f"outbox-it-{i}" for i in range(RUNS)]
    for i, run_id in enumerate(run_ids):  # ended within the receiver's replay window (its real clock)
        lake.land_run(make_run(run_id, ended_at=started - dt.timedelta(minutes=10 - i)))
    settings, environ = posting_settings(demo_settings, proxy.port), {"OUTBOX_IT_SECRET": SECRET}
    now = started

    def round_at(at: dt.datetime):
        [result] = publish_round(lake, settings, now=at, environ=environ)
        return result

    # (a) nothing listens behind the proxy: failed attempts, nothing lost
    proxy.upstream_port = free_port()
    result = round_at(now)
    assert result.counts == {"failed": 3} and result.not_tried == RUNS - 3
    assert len(pending_jobs(lake, "ours")) == RUNS

    # (b) the receiver is back; the first post lands, the receiver dies, the answer never arrives
    proxy.upstream_port = receiver.start()
    proxy.on_swallowed = receiver.kill
    now += dt.timedelta(minutes=3)  # past every back-off (30 s)
    result = round_at(now)
    assert len(proxy.swallowed_answers) == 1 and b" 200 " in proxy.swallowed_answers[0].split(b"\r\n")[0]
    assert "posted" not in result.counts and len(pending_jobs(lake, "ours")) == RUNS
    lost = run_ids[0]  # oldest first: the first post of the round
    assert receiver.landed_run_ids() == [lost]

    # (c) the receiver restarts on the same lake; rounds past the back-off deliver everything
    proxy.upstream_port = receiver.start()
    for _ in range(5):
        if not pending_jobs(lake, "ours"):
            break
        now += dt.timedelta(minutes=3)
        round_at(now)
    assert pending_jobs(lake, "ours") == []
    assert receiver.landed_run_ids() == sorted(run_ids)  # each exactly once
    outbox = outbox_by_run(lake)
    assert outbox[lost][-1] == "duplicate"
    assert all(statuses[-1] in ("posted", "duplicate") for statuses in outbox.values()) and len(outbox) == RUNS
    assert all(s == "failed" for statuses in outbox.values() for s in statuses[:-1])
