"""`loadtest`: the command line. It converts errors to one-line messages and exit codes at its edge.

Exit codes: 0 passed / ok, 1 a run failed or was unavailable, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence

from errors import ConfigError, HarnessError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Modules that add subcommands: each has `add_parsers(subparsers) -> {name: handler}`; handlers
# take the parsed args and return an exit code, importing heavy modules only when they run.
COMMAND_MODULES = (
    "deployments.cli_discover", "deployments.cli_fleet", "deployments.cli_analytics", "deployments.cli_ops",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="loadtest", description="Load-test Daydream Scope on Livepeer orchestrators.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario against one Scope instance")
    run.add_argument("--scenario", required=True, help="scenario name, see `loadtest scenarios`")
    run.add_argument("--scope-url", required=True, help="base URL of the Scope server, e.g. http://127.0.0.1:8000")
    run.add_argument("--orchestrator", help="orchestrator address the instance is pinned to (for attribution)")
    run.add_argument("--duration-s", type=_positive_float, help="stream length instead of the scenario's")
    run.add_argument("--config", help="config file (default $LOADTEST_CONFIG or config/default.yaml)")
    run.add_argument("--json", action="store_true", help="print one summary object on stdout")

    scenarios = sub.add_parser("scenarios", help="list the scenarios the config expands to")
    scenarios.add_argument("--config")
    scenarios.add_argument("--json", action="store_true")

    sql = sub.add_parser("sql", help="query the lake with DuckDB SQL (views: runs, frames, ...)")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="print rows as a JSON list of objects")

    sweep = sub.add_parser("sweep", help="mark runs that never finished as aborted")
    sweep.add_argument("--json", action="store_true")
    for name in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(name).add_parsers(sub))
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loadtest` console script."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except ConfigError as error:
        print(f"loadtest: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as error:
        print(f"loadtest: {error.category}: {error}", file=sys.stderr)
        return EXIT_USAGE if args.command in ("sql", "scenarios") else EXIT_FAILED
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    """Run one scenario through the `run-scenario` flow; exit 0 only when it passed."""
    from config.settings import load_settings
    from deployments.progress_line import ProgressLine
    from flows.run_scenario import run_scenario
    from tasks.session.progress import listen

    load_settings(args.config).scenario(args.scenario)  # a bad config or name fails before Prefect starts
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "loadtest: no PREFECT_API_URL set: starting a temporary local Prefect API (15-20 s); "
            "set PREFECT_API_URL to use a running Prefect server",
            file=sys.stderr,
        )
    with listen(ProgressLine()):
        summary = asyncio.run(
            run_scenario(
                scenario=args.scenario,
                scope_url=args.scope_url,
                orchestrator=args.orchestrator,
                duration_s=args.duration_s,
                config=args.config,
            )
        )
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(_run_text(summary))
    return EXIT_OK if summary["outcome"] == "passed" else EXIT_FAILED


def _run_text(summary: dict) -> str:
    from deployments.tables import format_cell

    lines = [f"{summary['scenario']}: {str(summary['outcome']).upper()}  (run {summary['run_id']})"]
    if summary["outcome"] != "passed":
        lines.append(f"  {summary['failure_category']}/{summary['failure_phase']}: {summary['failure_reason']}")
        lines.append(f"  checks failed: {', '.join(summary['checks_failed']) or '-'}")
        lines.append(f"  evidence: {summary['artifacts_path']}")
    for name in ("connect_s", "load_s", "first_frame_s", "stream_s", "fps_steady", "frames_sampled"):
        lines.append(f"  {name:<16} {format_cell(summary.get(name))}")
    return "\n".join(lines)


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

    result = Lake.from_env().query(args.query)
    if args.json:
        print(json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows], default=str))
    else:
        print(format_table(result.columns, result.rows))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Mark orphaned runs as aborted."""
    from analytics.lake import Lake

    swept = Lake.from_env().sweep_orphans()
    print(json.dumps({"aborted": swept}) if args.json else f"{len(swept)} orphaned run(s) marked aborted")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "scenarios": cmd_scenarios, "sql": cmd_sql, "sweep": cmd_sweep}


if __name__ == "__main__":
    sys.exit(main())
