"""Scope instances a run goes to: a static URL, or a managed server process the harness starts.

A managed instance is pinned the way Scope pins itself: the harness starts the configured
server command with `LIVEPEER_ORCH_URL` set to the target orchestrator, waits for `/health`,
hands out the URL for one run, and stops the process afterwards (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from config.settings import ScopeInstanceConfig
from errors import Category, PhaseFailed

_log = logging.getLogger(__name__)
HEALTH_POLL_S = 0.2
HEALTH_TIMEOUT_S = 2.0
STOP_GRACE_S = 10.0
ORCHESTRATOR_ENV = "LIVEPEER_ORCH_URL"


def free_loopback_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(url: str, *, timeout_s: float, process: asyncio.subprocess.Process | None = None) -> None:
    """Poll `/health` until it answers 200; PhaseFailed when the time is up or the process died."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                raise PhaseFailed(f"Scope server exited with code {process.returncode} before answering /health",
                                  category=Category.HARNESS)
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(HEALTH_POLL_S)
    raise PhaseFailed(f"Scope server at {url} did not answer /health within {timeout_s:.0f} s", category=Category.HARNESS)


@contextlib.asynccontextmanager
async def scope_instance(
    instance: ScopeInstanceConfig, *, orchestrator_uri: str | None, log_dir: Path
) -> AsyncIterator[str]:
    """The base URL of a Scope instance ready for one run (managed ones are started and stopped)."""
    if instance.kind == "static":
        yield instance.base_url()
        return
    if not orchestrator_uri:
        raise PhaseFailed(f"managed instance {instance.name}: the orchestrator has no URI to pin to",
                          category=Category.HARNESS)
    port = instance.port or free_loopback_port()
    url = instance.base_url(port)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{instance.name}-{port}.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *instance.command_args(port),
            env={**os.environ, ORCHESTRATOR_ENV: orchestrator_uri},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        _log.info("started managed Scope %s (pid %s) on %s pinned to %s", instance.name, process.pid, url, orchestrator_uri)
        try:
            await wait_healthy(url, timeout_s=instance.startup_timeout_s, process=process)
            yield url
        finally:
            await stop_process(process)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
