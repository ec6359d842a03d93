"""`loadtest setup` and `loadtest serve`: prepare a Prefect server, or serve every deployment from one process.

Both need a running Prefect server (`PREFECT_API_URL`): a temporary one would vanish with the
command, and with it the work pool, the limits and the run history. Exit codes: 0 ok, 1 the
Prefect API failed, 2 no server configured or a bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register `setup` and `serve`; return their handlers by name."""
    from deployments.cli_args import positive_int

    setup = sub.add_parser("setup", help="create the work pool and the global concurrency limits on the Prefect server")
    setup.add_argument("--config", help="config file (default $LOADTEST_CONFIG or config/default.yaml)")
    setup.add_argument("--json", action="store_true", help="print the actions as a JSON list")

    serve = sub.add_parser("serve", help="serve discover, dispatch, run-scenario and analyze from this process")
    serve.add_argument("--config", help="config file, passed to every flow (default $LOADTEST_CONFIG on each run)")
    serve.add_argument("--limit", type=positive_int, help="most flow runs this process executes at once")
    serve.add_argument("--replace", action="store_true",
                       help="delete same-named deployments that `prefect deploy` bound to a work pool, then serve")
    return {"setup": cmd_setup, "serve": cmd_serve}


def _server_or_usage() -> str | None:
    """The configured Prefect API URL, or None after telling the user how to get one."""
    from deployments.setup import NO_SERVER, configured_api_url

    url = configured_api_url()
    if not url:
        print(f"loadtest: {NO_SERVER}", file=sys.stderr)
    return url


def cmd_setup(args: argparse.Namespace) -> int:
    """Ensure the work pool and limits exist; print one line per thing checked."""
    from analytics.lake import Lake
    from config.settings import load_settings
    from deployments.cli import EXIT_OK, EXIT_USAGE
    from deployments.setup import run_setup

    settings = load_settings(args.config)
    url = _server_or_usage()
    if not url:
        return EXIT_USAGE
    actions = asyncio.run(run_setup(settings, Lake.from_env()))
    if args.json:
        print(json.dumps([asdict(a) for a in actions]))
        return EXIT_OK
    print(f"Prefect API {url}, config {settings.source_file}")
    for action in actions:
        print("  " + action.line())
    changed = sum(a.result != "exists" for a in actions)
    print(f"{changed} change(s), {len(actions) - changed} already in place")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve every deployment until interrupted (SIGINT or SIGTERM)."""
    from config.settings import load_settings
    from deployments.cli import EXIT_OK, EXIT_USAGE
    from deployments.serve import delete_deployments, deployment_plans, serve_all, worker_bound_deployments

    settings = load_settings(args.config)  # a bad config fails before anything is registered
    url = _server_or_usage()
    if not url:
        return EXIT_USAGE
    plans = deployment_plans(settings, args.config)
    bound = asyncio.run(worker_bound_deployments(plans))
    for deployment in bound:
        verb = "replacing" if args.replace else "found"
        print(f"loadtest: {verb} {deployment.full_name} (work pool {deployment.work_pool_name})", file=sys.stderr)
    if bound and not args.replace:
        print("loadtest: these run on workers (prefect deploy); serve with --replace to take them over", file=sys.stderr)
        return EXIT_USAGE
    asyncio.run(delete_deployments(bound))
    print(f"serving {', '.join(p.full_name for p in plans)} against {url}", file=sys.stderr)
    serve_all(settings, args.config, limit=args.limit)
    return EXIT_OK
