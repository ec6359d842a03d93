"""`python -m simulator fleet` as a real process for a test: start it, read its fleet file, stop it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasks.fleet.instances import free_loopback_port
from tests.conftest import ROOT

START_TIMEOUT_S = 30.0


START_ATTEMPTS = 3  # the fleet takes consecutive ports from its base: another process may hold one of them


@contextmanager
def fleet_process(folder: Path, *, instances: int, orchestrators: int, profiles: Sequence[str] = (),
                  settings: Sequence[str] = ()) -> Iterator[tuple[Path, dict]]:
    """The fleet file's path and its description, while the fleet process serves; SIGTERM at the end."""
    fleet_file = folder / "fleet.json"
    process = _start(fleet_file, instances, orchestrators, profiles, settings)
    try:
        description = json.loads(fleet_file.read_text())
        for instance in description["instances"]:
            httpx.get(f"{instance['url']}/health", timeout=5).raise_for_status()
        yield fleet_file, description
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, "the fleet did not stop cleanly on SIGTERM"


def _start(fleet_file: Path, instances: int, orchestrators: int, profiles: Sequence[str],
           settings: Sequence[str]) -> subprocess.Popen:
    """A fleet process that wrote its fleet file; a new base port when one of its ports was taken (it exits)."""
    for _ in range(START_ATTEMPTS):
        command = [sys.executable, "-m", "simulator", "fleet", "--instances", str(instances),
                   "--orchestrators", str(orchestrators), "--base-port", str(free_loopback_port()),
                   "--fleet-file", str(fleet_file)]
        if profiles:
            command += ["--profiles", ",".join(profiles)]
        for setting in settings:
            command += ["--set", setting]
        with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full pipe would block the fleet
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not fleet_file.exists() and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.2)
            if fleet_file.exists():
                return process
            if process.poll() is None:  # alive but silent past the deadline: not a port clash
                process.kill()
                process.wait()
                raise RuntimeError(f"the fleet wrote no fleet file within {START_TIMEOUT_S:.0f} s")
            log.seek(0)
            error = log.read()[-1000:]
    raise RuntimeError(f"the fleet did not start in {START_ATTEMPTS} attempts: {error}")
