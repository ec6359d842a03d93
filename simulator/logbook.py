"""The simulated server log: what `/api/v1/logs/tail` reads, with stable line offsets."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime

MAX_LINES = 20_000


def format_line(wall_s: float, logger: str, level: str, message: str) -> str:
    """One line in Scope's logging format (`asctime - name - level - message`)."""
    stamp = datetime.fromtimestamp(wall_s)
    millis = int((wall_s % 1) * 1000)
    return f"{stamp:%Y-%m-%d %H:%M:%S},{millis:03d} - {logger} - {level} - {message}"


class LogBook:
    """A bounded list of log lines; an offset counts every line ever written."""

    def __init__(self, *, max_lines: int = MAX_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._written = 0

    @property
    def offset(self) -> int:
        """How many lines were ever written (the offset a reader passes back)."""
        return self._written

    def write(
        self, logger: str, level: str, message: str, *, wall_s: float | None = None, body: tuple[str, ...] = ()
    ) -> None:
        """One formatted line, then `body` lines verbatim (a traceback, as Python logging prints it)."""
        when = time.time() if wall_s is None else wall_s
        self._lines.append(format_line(when, logger, level, message))
        self._lines.extend(body)
        self._written += 1 + len(body)

    def tail(self, lines: int, since_offset: int | None = None) -> tuple[list[str], int]:
        """The last `lines` lines (only those after `since_offset` when given) and the new offset."""
        first_kept = self._written - len(self._lines)
        start = first_kept if since_offset is None else max(since_offset, first_kept)
        start = min(start, self._written)
        available = list(self._lines)[start - first_kept :]
        return available[-lines:], self._written

    def clear(self) -> None:
        """Forget every line (offsets keep counting so old offsets stay meaningful)."""
        self._lines.clear()
