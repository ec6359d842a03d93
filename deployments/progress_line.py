"""The terminal progress display of a run: one live line on a TTY, sparse lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tasks.session.progress import ProgressEvent

PLAIN_EVERY_S = 10.0


class ProgressLine:
    """A progress listener that draws what each run is doing."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.last_plain = 0.0
        self.phase = "prepare"

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "phase":
            self.phase = event.phase or self.phase
        text = self._describe(event)
        if self.live:
            self.stream.write("\r\x1b[2K" + text + ("\n" if event.kind == "done" else ""))
            self.stream.flush()
            return
        now = time.monotonic()
        if event.kind != "tick" or now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            print(text, file=self.stream, flush=True)

    def _describe(self, event: ProgressEvent) -> str:
        elapsed = time.monotonic() - self.started
        head = f"[{event.scenario}] {elapsed:6.1f}s"
        if event.kind == "done":
            return f"{head} done: {event.outcome} ({event.frames_sampled} frames sampled)"
        if event.kind == "tick":
            fps = "-" if event.fps_out is None else f"{event.fps_out:.1f}"
            return f"{head} {self.phase}: t={event.t_s:.1f}s frames={event.frames_sampled} fps_out={fps} last={event.verdict}"
        return f"{head} {self.phase}…"
