"""Subcommands of `loadtest` (see deployments/cli.py COMMAND_MODULES)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    return {}
