"""Progress hooks: how a run tells a display what it is doing, without knowing the display.

A run emits `ProgressEvent`s; listeners (the CLI's progress line, the demo's table) subscribe
with `listen`. Emitting with nobody listening costs a list walk. Listeners must not raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Listener = Callable[["ProgressEvent"], None]
_listeners: list[Listener] = []


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one run: a phase starting, a sampled frame, or the end."""

    run_id: str
    scenario: str
    kind: str  # "phase" | "tick" | "done"
    orchestrator: str | None = None
    instance: str | None = None
    phase: str | None = None
    t_s: float | None = None
    frames_sampled: int = 0
    fps_out: float | None = None
    verdict: str | None = None
    outcome: str | None = None


def emit(event: ProgressEvent) -> None:
    """Hand an event to every listener."""
    for listener in list(_listeners):
        listener(event)


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Subscribe `listener` for the duration of the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
