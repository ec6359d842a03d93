"""What the `loadtest` command line accepts: argument types and checks, each failing with one line.

Everything here runs before any Prefect work, so a wrong argument costs no flow run, no
temporary API and no traceback: `main` prints `loadtest: <argument>: <problem>` and exits 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from config.loading import close_matches

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
SCHEMES = ("http", "https")


class UsageError(Exception):
    """The user asked for something the command cannot do: one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (`loadtest run: ...`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print `<prog>: <message> (see <prog> --help)` on stderr and exit 2."""
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def scope_url(text: str) -> str:
    """An http(s) URL with a host, without a trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {text!r} (e.g. http://127.0.0.1:8000)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    return text.strip().rstrip("/")


def orchestrator_address(text: str) -> str:
    """A Livepeer orchestrator address: 0x and 40 hex digits, stored lowercased."""
    if not ADDRESS.match(text.strip()):
        raise argparse.ArgumentTypeError(f"not an orchestrator address (0x and 40 hex digits): {text!r}")
    return text.strip().lower()


def positive_float(text: str) -> float:
    """A number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number greater than 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def utc_day(text: str) -> dt.date:
    """A day written YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day YYYY-MM-DD: {text!r}") from None


def check_scenario(settings, name: str) -> None:
    """UsageError when the config does not expand to a scenario called `name`."""
    names = [s.name for s in settings.expand_scenarios()]
    if name not in names:
        hint = close_matches(name, names) if len(names) <= 12 else _near(name, names)
        raise UsageError(f"--scenario: unknown scenario {name!r}{hint}; `loadtest scenarios` lists them")


def _near(name: str, names: list[str]) -> str:
    """Close names only: a long list of every scenario would not fit on one line."""
    hint = close_matches(name, names)
    return hint if hint.startswith(" (did you mean") else ""


def check_duration(settings, duration_s: float | None) -> None:
    """UsageError when a stream length is over the config's `budget.max_run_duration_mins`."""
    cap_s = settings.budget.max_run_duration_mins * 60
    if duration_s is not None and duration_s > cap_s:
        raise UsageError(
            f"--duration-s: {duration_s:g} s is over the cap of {cap_s:g} s "
            f"(budget.max_run_duration_mins in {settings.source_file})"
        )
