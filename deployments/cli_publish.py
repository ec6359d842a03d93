"""`loadtest publish [--status]`: one outbox round now, or what the outbox holds per leaderboard target.

Without --status: one publish round over every configured target (the same as one run of the
`publish-leaderboard` flow, without Prefect); exit 0 when nothing failed or was rejected, else 1.
With --status: per target, the pending runs, the failing ones with their last error and next
attempt, the rejected and expired ones with why; exit 0. Secrets come from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_FAILED = 0, 1
FAILING_COLUMNS = ("run_id", "attempts", "http_status", "last_error", "next_attempt_at")
GIVEN_UP_COLUMNS = ("run_id", "status", "attempted_at", "http_status", "error")
NOT_POSTED_COLUMNS = ("run_id", "attempt", "status", "http_status", "error", "next_attempt_at")


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    publish = sub.add_parser("publish", help="post finished relay runs to the leaderboards now (outbox round)")
    publish.add_argument("--status", action="store_true", help="show pending, failing, rejected and expired "
                         "runs per target instead of posting")
    publish.add_argument("--json", action="store_true", help="print JSON")
    publish.add_argument("--config", help="config file (default $LOADTEST_CONFIG or config/default.yaml)")
    return {"publish": cmd_publish}


def _json(value: object) -> str:
    """JSON text; timestamps in ISO 8601."""
    return json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def cmd_publish(args: argparse.Namespace) -> int:
    """One publish round, or the outbox status."""
    from analytics.lake import Lake
    from config.settings import load_settings

    settings = load_settings(args.config)
    if not settings.leaderboard.targets:
        print(f"no leaderboard targets configured (leaderboard.targets in {settings.source_file})")
        return EXIT_OK
    lake = Lake.from_env()
    return _status(lake, settings, args) if args.status else _round(lake, settings, args)


def _round(lake: Any, settings: Any, args: argparse.Namespace) -> int:
    """Post now; print what was posted and what was not, and why."""
    from deployments.tables import format_table
    from tasks.publish.outbox import publish_round

    summaries = [r.summary() for r in publish_round(lake, settings, environ=os.environ)]
    if args.json:
        print(_json(summaries))
    for summary in [] if args.json else summaries:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items())) or "nothing to post"
        print(f"{summary['target']}: {counts}; {summary['waiting']} backing off, {summary['not_tried']} left for "
              f"the next round" + (f" ({summary['note']})" if summary["note"] else ""))
        if summary["not_posted"]:
            rows = [[row[c] for c in NOT_POSTED_COLUMNS] for row in summary["not_posted"]]
            print(format_table(NOT_POSTED_COLUMNS, rows, max_width=100))
    troubled = any(s["counts"].get("failed") or s["counts"].get("rejected") for s in summaries)
    return EXIT_FAILED if troubled else EXIT_OK


def _status(lake: Any, settings: Any, args: argparse.Namespace) -> int:
    """Print each target's outbox."""
    from deployments.tables import format_cell, format_table
    from tasks.publish.outbox_status import outbox_status

    statuses = outbox_status(lake, settings, environ=os.environ)
    if args.json:
        print(_json([s.as_dict() for s in statuses]))
        return EXIT_OK
    for status in statuses:
        settled = ", ".join(f"{n} {s}" for s, n in sorted(status.settled.items())) or "none yet"
        print(f"{status.target} ({status.url}): {status.pending} pending ({status.due_now} due now, "
              f"{status.backing_off} backing off, {status.expiring} to expire), oldest ended "
              f"{format_cell(status.oldest_pending_ended_at)}; settled runs: {settled}")
        if status.secret_note:
            print(f"  not posting: {status.secret_note}")
        if status.failing:
            print("  failing:")
            print(_indent(format_table(FAILING_COLUMNS, [[r[c] for c in FAILING_COLUMNS] for r in status.failing],
                                       max_width=100)))
        if status.given_up:
            print("  rejected or expired (never posted again):")
            print(_indent(format_table(GIVEN_UP_COLUMNS, [[r[c] for c in GIVEN_UP_COLUMNS] for r in status.given_up],
                                       max_width=100)))
    return EXIT_OK


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
