"""Running the API under uvicorn: `loadtest api` and `python -m api` (same arguments).

The lake is $LOADTEST_DATA_DIR's, the secret comes from the environment variable named by
`leaderboard.api.secret_env` (never from a file or an argument, so it is never in `ps`).
SIGINT and SIGTERM stop uvicorn gracefully; the process then exits 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def port_number(text: str) -> int:
    """A TCP port argument (0 lets the system choose)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `loadtest api` and `python -m api`."""
    parser.add_argument("--host", help="address to bind (default: leaderboard.api.host, 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="port to bind (default: leaderboard.api.port, 8088)")
    parser.add_argument("--config", help="config file (default $LOADTEST_CONFIG or config/default.yaml)")


def startup_line(url: str, secret_env: str, posting: bool) -> str:
    """The one line printed at start: where the API is and whether POST is enabled (never the secret)."""
    post = "POST /api/post_stats enabled" if posting else f"POST /api/post_stats disabled (set {secret_env})"
    return f"leaderboard API on {url} (docs at {url}/docs); {post}"


def serve(settings: Any, *, host: str | None = None, port: int | None = None) -> int:
    """Serve the API on the lake at $LOADTEST_DATA_DIR until SIGINT/SIGTERM; 0, or 130 when stopped by a signal."""
    import uvicorn

    from analytics.lake import Lake
    from api.app import create_app

    api = settings.leaderboard.api
    secret = os.environ.get(api.secret_env) or None
    host, port = host or api.host, api.port if port is None else port
    app = create_app(Lake.from_env(), settings, secret=secret)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    url_host = f"[{host}]" if ":" in host else host
    print(startup_line(f"http://{url_host}:{port}", api.secret_env, secret is not None), flush=True)
    received: list[int] = []
    # uvicorn restores these handlers after its graceful shutdown and re-raises the signal it
    # caught: recording it here turns a stop into exit 130 instead of a death by SIGTERM.
    previous = {signum: signal.signal(signum, lambda s, _f: received.append(s)) for signum in STOP_SIGNALS}
    try:
        server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        return EXIT_INTERRUPTED
    return EXIT_OK if server.started else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m api`: parse the arguments, load the config and serve; config errors exit 2 with one line."""
    from config.settings import load_settings
    from errors import ConfigError

    parser = argparse.ArgumentParser(prog="python -m api", description="Serve the leaderboard API.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"api: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return serve(settings, host=args.host, port=args.port)
