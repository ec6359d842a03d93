"""`loadtest api`: serve the leaderboard API (livepeer/leaderboard-serverless's endpoints) over the lake."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    from api.server import add_arguments

    api = sub.add_parser("api", help="serve the leaderboard API (GET stats, signed POST /api/post_stats)")
    add_arguments(api)
    return {"api": cmd_api}


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the API until SIGINT/SIGTERM (exit 130); config errors reach the CLI's edge."""
    from api.server import serve
    from config.settings import load_settings

    return serve(load_settings(args.config), host=args.host, port=args.port)
