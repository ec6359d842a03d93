"""Scope instances a run goes to: a static URL, or a managed server process the harness starts.

A managed instance is pinned the way Scope pins itself: the harness starts the configured
server command with `LIVEPEER_ORCH_URL` set to the target orchestrator, waits for `/health`,
hands out the URL for one run, and stops the process afterwards (SIGTERM, then SIGKILL).
Its output goes to a bounded, rotating log per instance (instance_log.py); a start that fails
raises InstanceStartFailed, which dispatch lands as the instance's failure.
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
from dataclasses import dataclass
from pathlib import Path

import httpx

from config.settings import ScopeInstanceConfig
from errors import Category, Phase, PhaseFailed
from tasks.fleet.instance_log import InstanceLog, copy_output

_log = logging.getLogger(__name__)
HEALTH_POLL_S = 0.2
HEALTH_TIMEOUT_S = 2.0
STOP_GRACE_S = 10.0
COPY_DRAIN_S = 2.0
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


class InstanceStartFailed(PhaseFailed):
    """A managed Scope instance did not start or never answered /health: the instance's failure, in `prepare`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, category=Category.HARNESS, phase=Phase.PREPARE)


@dataclass(frozen=True)
class LogLimits:
    """How much output each managed instance may leave on disk."""

    files: int = 3
    max_bytes: int = 5 * 1024 * 1024


@contextlib.asynccontextmanager
async def scope_instance(
    instance: ScopeInstanceConfig, *, orchestrator_uri: str | None, log_dir: Path, log_limits: LogLimits = LogLimits()
) -> AsyncIterator[str]:
    """The base URL of a Scope instance ready for one run (managed ones are started and stopped).

    InstanceStartFailed when a managed instance cannot be started or never becomes healthy.
    """
    if instance.kind == "static":
        yield instance.base_url()
        return
    if not orchestrator_uri:
        raise InstanceStartFailed(f"managed instance {instance.name}: the orchestrator has no URI to pin to")
    port = instance.port or free_loopback_port()
    url = instance.base_url(port)
    log = InstanceLog(log_dir, instance.name, files=log_limits.files, max_bytes=log_limits.max_bytes)
    log.start()
    try:
        process = await _start(instance, port, orchestrator_uri)
        copying = asyncio.create_task(copy_output(process.stdout, log)) if process.stdout else None
        try:
            try:
                await wait_healthy(url, timeout_s=instance.startup_timeout_s, process=process)
            except PhaseFailed as error:
                await stop_process(process)
                await _finish_copying(copying)
                raise _start_failure(instance, error, log) from None
            yield url
        finally:
            await stop_process(process)
            if copying is not None:
                await _finish_copying(copying)
    finally:
        log.close()


async def _start(instance: ScopeInstanceConfig, port: int, orchestrator_uri: str) -> asyncio.subprocess.Process:
    """Start the managed command pinned to the orchestrator; InstanceStartFailed when it cannot be executed."""
    try:
        process = await asyncio.create_subprocess_exec(
            *instance.command_args(port),
            env={**os.environ, ORCHESTRATOR_ENV: orchestrator_uri},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:  # not found, not executable: nothing to retry at once
        raise InstanceStartFailed(f"managed instance {instance.name}: cannot run its command: {error}") from None
    _log.info("started managed Scope %s (pid %s) on port %s pinned to %s", instance.name, process.pid, port,
              orchestrator_uri)
    return process


def _start_failure(instance: ScopeInstanceConfig, error: PhaseFailed, log: InstanceLog) -> InstanceStartFailed:
    """The start failure, with the server's last output line (the cause, usually)."""
    last = log.tail()
    return InstanceStartFailed(f"managed instance {instance.name}: {error}"
                               + (f"; last output: {last[:300]}" if last else ""))


async def _finish_copying(copying: asyncio.Task | None) -> None:
    """Let the output copy drain after the process stopped; cut it off if a stray child keeps the pipe open."""
    if copying is None or copying.done():
        return
    try:
        await asyncio.wait_for(copying, COPY_DRAIN_S)
    except TimeoutError:
        pass  # wait_for cancelled it


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
