"""`python -m simulator serve|fleet|profiles` as real subprocesses: start, query, SIGTERM, clean exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sim_helpers import wait_until

from simulator.profiles import PROFILES

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # starts `python -m simulator` processes

START_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 15.0


def _free_ports(count: int) -> int:
    """A base port with `count` consecutive free loopback ports."""
    for base in range(21000 + os.getpid() % 2000 * 10, 60000, 97):
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free ports")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def _simulator(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run `python -m simulator ARGS`; on exit send SIGTERM and require a clean exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", *args], cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            _finish(process)
        except subprocess.TimeoutExpired:
            process.kill()
            _finish(process)
            raise


def _finish(process: subprocess.Popen) -> None:
    """Wait for the exit and close the pipes (unless a test already read them)."""
    if process.stdout is not None and not process.stdout.closed:
        process.communicate(timeout=EXIT_TIMEOUT_S)
    process.wait(EXIT_TIMEOUT_S)


def test_serve_takes_its_profile_from_the_fleet_file_by_orchestrator(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.json"
    address = "0x" + "ab" * 20
    orchestrator = {"address": address, "profile": "low_fps", "gpu_name": "NVIDIA L40S", "vram_total_mb": 46068.0}
    fleet_file.write_text(json.dumps({"orchestrators": {"https://orch-5.sim.invalid:8935": orchestrator}}))
    port = _free_ports(1)
    env = {"LIVEPEER_ORCH_URL": "orch-5.sim.invalid:8935/", "SCOPE_SIM_FLEET_FILE": str(fleet_file)}
    with _simulator("serve", "--port", str(port), env=env) as process:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout_s=START_TIMEOUT_S, poll_s=0.1)
        truth = httpx.get(f"http://127.0.0.1:{port}/_sim/truth", timeout=5.0).json()
        assert (truth["profile"], truth["orchestrator_address"]) == ("low_fps", address)
        assert truth["profile_fields"]["vram_total_mb"] == 46068.0
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=EXIT_TIMEOUT_S)
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stdout and "low_fps" in stdout and "stopped" in stdout


def test_serve_flags_beat_the_environment(tmp_path: Path) -> None:
    port = _free_ports(1)
    env = {"LIVEPEER_ORCH_URL": "https://orch-2.sim.invalid:8935"}
    args = ("serve", "--port", str(port), "--profile", "stall", "--set", "fault_after_s=1.5", "--seed", "4",
            "--orchestrator-url", "https://orch-3.sim.invalid:8935", "--assets-dir", str(tmp_path / "assets"))
    with _simulator(*args, env=env) as process:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout_s=START_TIMEOUT_S, poll_s=0.1)
        truth = httpx.get(f"http://127.0.0.1:{port}/_sim/truth", timeout=5.0).json()
        assert truth["profile"] == "stall" and truth["profile_fields"]["fault_after_s"] == 1.5
        assert truth["orchestrator_url"] == "https://orch-3.sim.invalid:8935" and truth["seed"] == 4
        upload = httpx.post(f"http://127.0.0.1:{port}/api/v1/assets", params={"filename": "a.png"}, content=b"x", timeout=5.0)
        assert upload.json()["path"].startswith(str(tmp_path / "assets"))
        process.send_signal(signal.SIGINT)
        _finish(process)
    assert process.returncode == 0


def test_fleet_serves_discovery_and_pinned_instances_and_writes_its_file(tmp_path: Path) -> None:
    base = _free_ports(4)
    fleet_file = tmp_path / "fleet.json"
    args = ("fleet", "--instances", "2", "--orchestrators", "3", "--base-port", str(base),
            "--profiles", "healthy,crash", "--seed", "3", "--fleet-file", str(fleet_file))
    with _simulator(*args) as fleet:
        wait_until(lambda: _answers(f"http://127.0.0.1:{base + 2}/health"), timeout_s=START_TIMEOUT_S, poll_s=0.1)
        plain = httpx.get(f"http://127.0.0.1:{base}/orchestrators", timeout=5.0).json()
        written = json.loads(fleet_file.read_text())
        assert [p["uri"] for p in plain] == list(written["orchestrators"])
        for index in range(2):
            truth = httpx.get(f"http://127.0.0.1:{base + 1 + index}/_sim/truth", timeout=5.0).json()
            assert truth["orchestrator_url"] == plain[index]["uri"] and truth["profile"] == ["healthy", "crash"][index]
            assert written["instances"][index]["url"] == f"http://127.0.0.1:{base + 1 + index}"
        # A managed instance started later finds its orchestrator's profile in the fleet file.
        env = {"LIVEPEER_ORCH_URL": plain[1]["uri"], "SCOPE_SIM_FLEET_FILE": str(fleet_file)}
        with _simulator("serve", "--port", str(base + 3), env=env) as managed:
            wait_until(lambda: _answers(f"http://127.0.0.1:{base + 3}/health"), timeout_s=START_TIMEOUT_S, poll_s=0.1)
            truth = httpx.get(f"http://127.0.0.1:{base + 3}/_sim/truth", timeout=5.0).json()
            assert (truth["profile"], truth["orchestrator_address"]) == ("crash", plain[1]["address"])
        assert managed.returncode == 0
        fleet.send_signal(signal.SIGTERM)
        stdout, stderr = fleet.communicate(timeout=EXIT_TIMEOUT_S)
    assert fleet.returncode == 0, stderr
    assert f"http://127.0.0.1:{base}" in stdout and str(fleet_file) in stdout and "stopped" in stdout


def test_profiles_command_and_usage_errors() -> None:
    listing = subprocess.run([sys.executable, "-m", "simulator", "profiles"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0 and all(name in listing.stdout for name in PROFILES)
    bad = subprocess.run(
        [sys.executable, "-m", "simulator", "serve", "--port", "0", "--profile", "flaky"],
        capture_output=True, text=True, timeout=30,
    )
    assert bad.returncode == 2 and "unknown profile 'flaky'" in bad.stderr


def test_set_values_are_read_as_json_when_they_parse() -> None:
    from simulator.cli import parse_overrides

    assert parse_overrides(["fault_after_s=1.5", "wrong_size=[320,240]", "gpu_name=NVIDIA L4", "has_gpu=false"]) == {
        "fault_after_s": 1.5, "wrong_size": [320, 240], "gpu_name": "NVIDIA L4", "has_gpu": False,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["fault_after_s"])
