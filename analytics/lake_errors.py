"""The lake's errors: a refused or failed lake operation, and an exclusive landing that found its file."""

from __future__ import annotations

from errors import HarnessError


class LakeError(HarnessError):
    """A lake operation was refused or failed: unknown table, wrong rows, a bad or writing query."""


class AlreadyLanded(LakeError):
    """An exclusive landing found its file already there: those rows landed before."""
