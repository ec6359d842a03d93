"""A JSONL file of Scope event envelopes (one per line) as an event source: recordings, offline audits.

A malformed line is counted and reported with its line number, never fatal. A line longer than an
envelope may be (256 KB) is malformed; a file larger than MAX_FILE_BYTES, or one that cannot be
read, raises EventFileError naming the file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from errors import Category, HarnessError
from tasks.events.envelope import MAX_ENVELOPE_BYTES, EnvelopeError, parse_envelope
from tasks.events.sources import ReceivedEvent

MAX_FILE_BYTES = 100 * 1024 * 1024  # a day of one busy instance is a few MB; larger is not a recording
SOURCE_NAME = "file"


class EventFileError(HarnessError):
    """An events file that cannot be read at all (missing, unreadable, too large)."""

    default_category = Category.HARNESS


@dataclass(frozen=True)
class SkippedLine:
    """A line that is not an event envelope: its number (from 1) and why."""

    line_number: int
    reason: str


def _read_lines(path: Path) -> list[bytes]:
    """The file's lines; EventFileError when it cannot be read or is too large."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise EventFileError(f"{path}: {size} bytes, larger than the {MAX_FILE_BYTES} an events file may be")
        return path.read_bytes().splitlines()
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _received(line: bytes, path: Path) -> ReceivedEvent:
    """The event of one line, received when Scope emitted it (now when it did not say)."""
    if len(line) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"line of {len(line)} bytes is longer than an envelope may be")
    event = parse_envelope(line)
    received_at = event.emitted_at or dt.datetime.now(dt.timezone.utc)
    return ReceivedEvent(event=event, received_at=received_at, source=SOURCE_NAME, topic=str(path))


def read_jsonl(path: str | Path) -> tuple[list[ReceivedEvent], list[SkippedLine]]:
    """Every envelope of the file in order, and the lines skipped; EventFileError when unreadable."""
    path = Path(path)
    events: list[ReceivedEvent] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            events.append(_received(line, path))
        except EnvelopeError as exc:
            skipped.append(SkippedLine(number, str(exc)))
    return events, skipped


class FileEventSource:
    """The EventSource of a run that reads a recorded JSONL file instead of Kafka."""

    name = SOURCE_NAME

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._events: list[ReceivedEvent] = []
        self.skipped: list[SkippedLine] = []

    async def start(self) -> None:
        """Read the whole file (a recording does not grow); EventFileError when it cannot be read."""
        self._events, self.skipped = read_jsonl(self.path)

    def received(self) -> list[ReceivedEvent]:
        """Every event read, in file order."""
        return list(self._events)

    async def stop(self) -> None:
        """Nothing to release."""
