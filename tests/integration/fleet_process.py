"""`python -m simulator fleet` as a real process for a test: start it, read its fleet file, stop it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasks.fleet.instances import free_loopback_port
from tests.conftest import ROOT

START_TIMEOUT_S = 30.0


@contextmanager
def fleet_process(folder: Path, *, instances: int, orchestrators: int, profiles: Sequence[str] = (),
                  settings: Sequence[str] = ()) -> Iterator[tuple[Path, dict]]:
    """The fleet file's path and its description, while the fleet process serves; SIGTERM at the end."""
    fleet_file = folder / "fleet.json"
    command = [sys.executable, "-m", "simulator", "fleet", "--instances", str(instances),
               "--orchestrators", str(orchestrators), "--base-port", str(free_loopback_port()),
               "--fleet-file", str(fleet_file)]
    if profiles:
        command += ["--profiles", ",".join(profiles)]
    for setting in settings:
        command += ["--set", setting]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not fleet_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        description = json.loads(fleet_file.read_text())
        for instance in description["instances"]:
            httpx.get(f"{instance['url']}/health", timeout=5).raise_for_status()
        yield fleet_file, description
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, "the fleet did not stop cleanly on SIGTERM"
