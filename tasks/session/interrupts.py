"""Signals become cancellations of the runs in flight, so every run cleans up and lands `aborted`.

A signal handler that raises (Python's SIGINT, Prefect's SIGTERM `TerminationSignal`) lands
wherever the main thread happens to be: inside a run's coroutine the run would carry on to
cleanup and finish as if nothing happened, inside the event loop's `select` it would leave the
run suspended forever. So while runs are in flight, SIGINT and SIGTERM are handled by the loop
instead: each registered run task is cancelled once, with the signal's name as the message, and
`requested()` tells schedulers to stop launching new runs. A repeated signal (a terminal's Ctrl-C
reaches both a wrapper like `uv run` and the harness, which then gets it twice) does not cut the
bounded cleanup short. The previous handlers come back when
the last run leaves. Off the main thread (where loops cannot take signals) nothing is installed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_tasks: set[asyncio.Task] = set()
_cancelled: set[asyncio.Task] = set()  # runs already told: a repeated signal must not cut their cleanup short
_previous: dict[int, object] = {}
_requested: list[str] = []


def requested() -> str | None:
    """The name of the signal that asked this process to stop (None when none did)."""
    return _requested[0] if _requested else None


def reset() -> None:
    """Forget a past signal (a long-lived process that handled one and goes on)."""
    _requested.clear()


def _on_signal(signum: int) -> None:
    name = signal.Signals(signum).name
    if not _requested:
        _requested.append(name)
    for task in list(_tasks - _cancelled):
        _cancelled.add(task)
        task.cancel(msg=name)


def _install(loop: asyncio.AbstractEventLoop) -> None:
    for signum in SIGNALS:
        _previous[signum] = signal.getsignal(signum)
        loop.add_signal_handler(signum, _on_signal, signum)


def _restore(loop: asyncio.AbstractEventLoop) -> None:
    for signum in SIGNALS:
        loop.remove_signal_handler(signum)
        previous = _previous.pop(signum, None)
        if previous is not None:
            signal.signal(signum, previous)


@contextmanager
def cancel_on_signal() -> Iterator[None]:
    """While the block runs, SIGINT/SIGTERM cancel the current task (and every other registered one)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    on_main = threading.current_thread() is threading.main_thread()
    if task is None or not on_main:
        yield
        return
    if not _tasks:
        _install(loop)
    _tasks.add(task)
    try:
        yield
    finally:
        _tasks.discard(task)
        _cancelled.discard(task)
        if not _tasks:
            _restore(loop)


def interruption_name(error: BaseException) -> str:
    """What interrupted a run, in words for its record: SIGTERM, SIGINT, cancellation, ..."""
    if isinstance(error, asyncio.CancelledError):
        message = error.args[0] if error.args else None
        return message if message in ("SIGINT", "SIGTERM") else (requested() or "cancellation")
    if isinstance(error, KeyboardInterrupt):
        return "SIGINT"
    if type(error).__name__ == "TerminationSignal":  # Prefect's SIGTERM, a BaseException
        return "SIGTERM"
    if isinstance(error, SystemExit):
        return "process exit"
    return type(error).__name__
