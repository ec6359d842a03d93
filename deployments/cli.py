"""`loadtest`: the command line. It converts errors to one-line messages and exit codes at its edge.

Exit codes: 0 passed / ok, 1 a run failed or was unavailable, 2 usage or configuration error,
130 stopped by SIGINT or SIGTERM (after cleaning up what it started).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from deployments.cli_args import (
    OneLineParser, UsageError, check_duration, check_scenario, orchestrator_address, positive_float, scope_url,
)
from deployments.cli_runtime import EXIT_INTERRUPTED
from errors import ConfigError, HarnessError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Modules that add subcommands: each has `add_parsers(subparsers) -> {name: handler}`; handlers
# take the parsed args and return an exit code, importing heavy modules only when they run.
COMMAND_MODULES = (
    "deployments.cli_discover", "deployments.cli_fleet", "deployments.cli_analytics", "deployments.cli_ops",
    "deployments.cli_api", "deployments.cli_publish", "deployments.cli_events", "deployments.cli_compact",
)
CONFIG_HELP = "config file (default $LOADTEST_CONFIG or config/default.yaml)"
VERBOSE_HELP = "show Prefect's own log lines (default: warnings and errors only)"
STOP_MARGIN_S = 30.0  # beyond the config's cleanup timeout: finishing and landing the final row
CREDENTIALS_MISSING = "credentials not configured"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = OneLineParser(prog="loadtest", description="Load-test Daydream Scope on Livepeer orchestrators.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario against one Scope instance")
    run.add_argument("--scenario", required=True, help="scenario name, see `loadtest scenarios`")
    run.add_argument("--scope-url", required=True, type=scope_url,
                     help="base URL of the Scope server, e.g. http://127.0.0.1:8000")
    run.add_argument("--orchestrator", type=orchestrator_address,
                     help="address (0x + 40 hex digits) of the orchestrator the instance is pinned to, for attribution")
    run.add_argument("--duration-s", type=positive_float,
                     help="stream length instead of the scenario's (at most budget.max_run_duration_mins)")
    run.add_argument("--config", help=CONFIG_HELP)
    run.add_argument("--json", action="store_true", help="print one summary object on stdout")
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)

    scenarios = sub.add_parser("scenarios", help="list the scenarios the config expands to")
    scenarios.add_argument("--config", help=CONFIG_HELP)
    scenarios.add_argument("--json", action="store_true")

    sql = sub.add_parser("sql", help="query the lake with DuckDB SQL (views: runs, frames, ...)")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="print rows as a JSON list of objects")

    sweep = sub.add_parser("sweep", help="mark runs that never finished as aborted")
    sweep.add_argument("--json", action="store_true")
    for name in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(name).add_parsers(sub))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loadtest` console script."""
    code = _dispatch(argv)
    if code == EXIT_INTERRUPTED:
        # Stopping already: a repeated signal (a terminal's Ctrl-C reaches both `uv run` and this
        # process) must not interrupt the exit's own cleanup, e.g. Prefect stopping its temporary API.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    return code


def _dispatch(argv: Sequence[str] | None) -> int:
    """Parse the command line and run its command; errors become one line and an exit code."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except UsageError as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:
        print(f"loadtest: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as error:
        print(f"loadtest: {error.category}: {error}", file=sys.stderr)
        return EXIT_USAGE if args.command in ("sql", "scenarios") else EXIT_FAILED
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_run(args: argparse.Namespace) -> int:
    """Run one scenario through the `run-scenario` flow; exit 0 only when it passed."""
    from config.settings import load_settings
    from deployments.cli_runtime import check_prefect_api, run_with_signals

    settings = load_settings(args.config)  # every argument is checked before Prefect starts
    check_scenario(settings, args.scenario)
    check_duration(settings, args.duration_s)
    check_prefect_api()
    hard_stop_s = settings.thresholds.cleanup_timeout_s + STOP_MARGIN_S
    return run_with_signals(lambda stop: _run_flow(args, settings, stop), hard_stop_s=hard_stop_s)


async def _run_flow(args: argparse.Namespace, settings, stop) -> int:
    """The flow run of `loadtest run`, its progress on stderr and its summary on stdout."""
    from deployments.cli_runtime import prefect_console, silence_prefect_console
    from deployments.progress_line import ProgressLine
    from flows.run_scenario import run_scenario
    from tasks.session.progress import listen
    from tasks.session.report import run_summary_of

    progress = ProgressLine()
    stop.bind(on_signal=None if args.verbose else silence_prefect_console)
    with listen(progress), prefect_console(logging.NOTSET if args.verbose else logging.WARNING):
        try:
            state = await run_scenario(scenario=args.scenario, scope_url=args.scope_url, orchestrator=args.orchestrator,
                                       duration_s=args.duration_s, config=args.config, return_state=True)
            summary = await run_summary_of(state)  # a failed run's state carries its summary too
        except asyncio.CancelledError:
            if stop.signal_name is None:
                raise
            summary = None
    if stop.signal_name is not None:
        print(progress.stopped_line(summary, stop.signal_name), file=sys.stderr)
        return EXIT_INTERRUPTED
    if "preflight" in summary["checks_failed"]:  # the scenario asks what the instance's pipelines cannot do
        print(f"loadtest: --scenario: {summary['failure_reason']}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(summary, default=str) if args.json else _run_text(summary, settings))
    return EXIT_OK if summary["outcome"] == "passed" else EXIT_FAILED


def _run_text(summary: dict, settings) -> str:
    from deployments.tables import format_cell

    lines = [f"{summary['scenario']}: {str(summary['outcome']).upper()}  (run {summary['run_id']})"]
    if summary["outcome"] != "passed":
        lines.append(f"  {summary['failure_category']}/{summary['failure_phase']}: {summary['failure_reason']}")
        if CREDENTIALS_MISSING in str(summary["failure_reason"]).lower():
            lines.append(f"  to fix: {credentials_hint(settings)}")
        lines.append(f"  checks failed: {', '.join(summary['checks_failed']) or '-'}")
        lines.append(f"  evidence: {summary['artifacts_path']}")
    for item in summary.get("checks_skipped") or []:
        lines.append(f"  skipped: {item}")
    for item in summary.get("events_findings") or []:
        lines.append(f"  event finding: {item}")
    for name in ("media_path", "connect_s", "load_s", "first_frame_s", "stream_s", "fps_steady", "fps_received",
                 "freeze_count", "prompt_latency_p50_s", "frames_sampled"):
        lines.append(f"  {name:<20} {format_cell(summary.get(name))}")
    return "\n".join(lines)


def credentials_hint(settings) -> str:
    """Which variables or config keys give Scope its cloud credentials, by name."""
    cloud = settings.cloud
    return (
        "give the Scope server SCOPE_CLOUD_APP_ID and SCOPE_CLOUD_API_KEY in its environment, or set "
        f"cloud.app_id (ending in /ws) in {settings.source_file} and ${cloud.api_key_env} in this one's"
    )


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List the expanded scenario matrix."""
    from config.settings import load_settings
    from deployments.tables import format_table

    scenarios = load_settings(args.config).expand_scenarios()
    columns = ["name", "pipeline", "mode", "duration_s", "input_kind", "prompt_pool", "hard_cap_s"]
    rows = [[getattr(s, c) for c in columns] for s in scenarios]
    if args.json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows]))
    else:
        print(format_table(columns, rows))
    return EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    """Run a read-only SQL query over the lake's views."""
    from analytics.lake import Lake
    from deployments.tables import format_table

    result = _user_query(Lake.from_env(), args.query)
    if args.json:
        print(json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows], default=str))
    else:
        print(format_table(result.columns, result.rows))
    return EXIT_OK


def _user_query(lake, query: str):
    """The query's result; UsageError naming what is wrong with the SQL the user wrote."""
    from analytics.lake import LakeError

    try:
        return lake.query(query)
    except LakeError as error:
        cause = error.__cause__
        if cause is None or _is_statement_error(cause):  # no cause: the lake refused the statement itself
            first_line = str(cause or error).strip().splitlines()[0]  # DuckDB adds the query and a caret below
            raise UsageError(f"SQL error: {first_line}") from None
        raise


def _is_statement_error(error: BaseException) -> bool:
    """True for DuckDB errors that mean the statement is wrong (syntax, names, types), not the lake."""
    import duckdb

    return isinstance(error, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                              duckdb.ConversionException, duckdb.InvalidInputException, duckdb.SyntaxException,
                              duckdb.TypeMismatchException))


def cmd_sweep(args: argparse.Namespace) -> int:
    """Mark orphaned runs as aborted."""
    from analytics.lake import Lake

    swept = Lake.from_env().sweep_orphans()
    print(json.dumps({"aborted": swept}) if args.json else f"{len(swept)} orphaned run(s) marked aborted")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "scenarios": cmd_scenarios, "sql": cmd_sql, "sweep": cmd_sweep}


if __name__ == "__main__":
    sys.exit(main())
