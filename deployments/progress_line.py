"""The terminal progress display of a run: one live line on a TTY, a line per phase and every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tasks.session.progress import ProgressEvent

PLAIN_EVERY_S = 2.0  # stream progress lines when stderr is not a terminal: often enough to see a run move


class ProgressLine:
    """A progress listener that draws what a run is doing, and remembers it for the stop line."""

    def __init__(self, stream: TextIO = sys.stderr, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.live = stream.isatty()
        self.started = clock()
        self.last_plain: float | None = None
        self.phase = "prepare"
        self.last_event: ProgressEvent | None = None
        self.outcome: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self.last_event = event
        if event.kind == "phase":
            self.phase = event.phase or self.phase
        if event.kind == "done":
            self.outcome = event.outcome
        text = self._describe(event)
        if self.live:
            self.stream.write("\r\x1b[2K" + text + ("\n" if event.kind == "done" else ""))
            self.stream.flush()
            return
        now = self.clock()
        if event.kind != "tick" or self.last_plain is None or now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            print(text, file=self.stream, flush=True)

    def _describe(self, event: ProgressEvent) -> str:
        elapsed = self.clock() - self.started
        head = f"[{event.scenario}] {elapsed:6.1f}s"
        if event.kind == "done":
            return f"{head} done: {event.outcome} ({event.frames_sampled} frames sampled)"
        if event.kind == "tick":
            fps = "-" if event.fps_out is None else f"{event.fps_out:.1f}"
            return f"{head} {self.phase}: t={event.t_s:.1f}s frames={event.frames_sampled} fps_out={fps} last={event.verdict}"
        return f"{head} {self.phase}…"

    def stopped_line(self, summary: dict | None, signal_name: str) -> str:
        """`stopped <run_id> <scenario> @ <orchestrator>: <outcome>` for a run a signal ended."""
        event = self.last_event
        if summary is None and event is None:
            return f"loadtest: stopped by {signal_name} before the run started"
        run_id = summary["run_id"] if summary else event.run_id
        scenario = summary["scenario"] if summary else event.scenario
        where = (summary or {}).get("orchestrator") or (event.orchestrator if event else None) or "-"
        outcome = (summary or {}).get("outcome") or self.outcome or f"no final outcome seen (was in {self.phase})"
        return f"stopped {run_id} {scenario} @ {where}: {outcome}"
