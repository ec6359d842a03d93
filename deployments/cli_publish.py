"""`loadtest publish`: placeholder until the command lands."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> dict:
    """Register this module's subcommands; return their handlers by name."""
    return {}
