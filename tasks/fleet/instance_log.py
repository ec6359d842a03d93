"""A managed Scope instance's output on disk, bounded: a fixed number of files of a fixed size per instance.

`<name>.log` holds the current start's output; each start and each `max_bytes` written
rotate it to `<name>.1.log`, `<name>.2.log`, ... and drop the oldest, so an instance never
holds more than `files` x `max_bytes`, however often it is started (a server that keeps
failing used to leave one file per start).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import BinaryIO

READ_CHUNK = 64 * 1024
TAIL_BYTES = 4096


class InstanceLog:
    """The rotating log files of one managed instance."""

    def __init__(self, directory: Path, name: str, *, files: int, max_bytes: int) -> None:
        self.directory, self.name, self.files, self.max_bytes = directory, name, files, max_bytes
        self.path = directory / f"{name}.log"
        self._file: BinaryIO | None = None
        self._written = 0

    def _numbered(self, index: int) -> Path:
        return self.path if index == 0 else self.directory / f"{self.name}.{index}.log"

    def start(self) -> None:
        """Rotate what an earlier start left and open a fresh current file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.close()
        self._numbered(self.files - 1).unlink(missing_ok=True)
        for index in range(self.files - 2, -1, -1):
            if self._numbered(index).exists():
                self._numbered(index).replace(self._numbered(index + 1))
        self._file, self._written = self.path.open("wb"), 0

    def write(self, data: bytes) -> None:
        """Append output, rotating first when the current file is full."""
        if self._file is None or (self._written and self._written + len(data) > self.max_bytes):
            self.start()
        data = data[-self.max_bytes:]
        file = self._file
        if file is not None:
            file.write(data)
            file.flush()
            self._written += len(data)

    def tail(self, max_bytes: int = TAIL_BYTES) -> str:
        """The last non-empty line of the current file (for a one-line failure reason)."""
        if not self.path.exists():
            return ""
        with self.path.open("rb") as file:
            file.seek(max(0, self.path.stat().st_size - max_bytes))
            lines = [line.strip() for line in file.read().decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "")

    def close(self) -> None:
        """Close the current file."""
        if self._file is not None:
            self._file.close()
            self._file = None


async def copy_output(stream: asyncio.StreamReader, log: InstanceLog) -> None:
    """Copy a process's output into its log until the output ends."""
    while chunk := await stream.read(READ_CHUNK):
        log.write(chunk)
