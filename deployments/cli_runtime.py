"""How a `loadtest` command that runs flows runs: a quiet terminal, and signals as a graceful stop.

The command's asyncio loop runs in a worker thread while the main thread only waits and takes
signals. A signal handler that raises (Python's SIGINT, Prefect's SIGTERM bridge) lands wherever
the main thread happens to be; off the main thread Prefect installs no bridge, so SIGINT and
SIGTERM reach the command only through `stop`: the first one cancels the command's main task
with the signal's name as the message, and the command decides how to wind down (clean up
every run, print what it stopped). Later signals change nothing: the wind-down is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130
JOIN_POLL_S = 0.2


@dataclass
class Stop:
    """The first signal a command received, and the loop task it cancels."""

    signal_name: str | None = None
    received: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task | None = None
    _on_signal: Callable[[], None] | None = None

    def bind(self, *, on_signal: Callable[[], None] | None = None) -> None:
        """Make the running task the one a signal cancels (call it inside the command's loop).

        `on_signal` runs in the main thread the moment the first signal arrives.
        """
        self._loop, self._task, self._on_signal = asyncio.get_running_loop(), asyncio.current_task(), on_signal
        if self.signal_name is not None:  # a signal arrived before the loop was up
            self._task.cancel(msg=self.signal_name)

    def __call__(self, signum: int, _frame: Any = None) -> None:
        """The signal handler: remember the first signal and cancel the bound task; ignore the rest."""
        if self.signal_name is not None:
            return
        self.signal_name = signal.Signals(signum).name
        self.received.set()
        if self._on_signal is not None:
            self._on_signal()
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel, self.signal_name)


def run_with_signals(main: Callable[[Stop], Coroutine[Any, Any, int]], *, hard_stop_s: float) -> int:
    """Run `main(stop)` in its own loop and thread; SIGINT/SIGTERM cancel it (see module doc).

    Once a signal arrived, the command has `hard_stop_s` to wind down; past that the process
    gives up on it and exits 130 with one line.
    """
    stop = Stop()
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["code"] = asyncio.run(main(stop))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, re-raised there
            outcome["error"] = error

    worker = threading.Thread(target=body, name="loadtest-command", daemon=True)
    with _handling(stop):
        worker.start()
        while worker.is_alive() and not stop.received.is_set():
            worker.join(JOIN_POLL_S)
        worker.join(hard_stop_s if stop.received.is_set() else None)
    if worker.is_alive():
        print(f"loadtest: stopped by {stop.signal_name}; cleanup did not finish within {hard_stop_s:.0f} s",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if "error" in outcome:
        raise outcome["error"]
    return outcome["code"]


@contextlib.contextmanager
def _handling(stop: Stop) -> Iterator[None]:
    previous = {signum: signal.signal(signum, stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def check_prefect_api(timeout_s: float = 10.0) -> None:
    """UsageError when PREFECT_API_URL is set but no Prefect API answers there; say so when unset."""
    import os

    import httpx

    from deployments.cli_args import UsageError

    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        print("loadtest: no PREFECT_API_URL set: starting a temporary local Prefect API (15-20 s); "
              "set PREFECT_API_URL to use a running Prefect server", file=sys.stderr)
        return
    try:
        httpx.get(f"{url}/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as error:
        problem = type(error).__name__ if not str(error) else " ".join(str(error).split())
        raise UsageError(f"PREFECT_API_URL={url}: no Prefect API answers there ({problem}); "
                         "start one with `prefect server start` or unset PREFECT_API_URL") from None


@contextlib.contextmanager
def prefect_console(level: int) -> Iterator[None]:
    """Prefect's terminal log handlers at `level` for the block (what goes to the Prefect API is unchanged)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [
        handler
        for name in (None, "uvicorn", "fastapi")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, PrefectConsoleHandler)
    ]
    previous = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(level)
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            handler.setLevel(old)


def silence_prefect_console() -> None:
    """Prefect's terminal output off for good: the command is stopping and says so itself."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in (None, "uvicorn", "fastapi"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)
