"""Waiting for a server process a test started: until it answers, it dies, or time runs out."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx

POLL_S = 0.1


def wait_until_answers(url: str, process: subprocess.Popen, *, timeout_s: float, name: str,
                       output: Callable[[], str] = lambda: "") -> None:
    """Poll GET `url` until it answers 200; RuntimeError naming `name` (and its output) when the
    process exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {output()[-2000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(POLL_S)
    raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s: {output()[-2000:]}")
