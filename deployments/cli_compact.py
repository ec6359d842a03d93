"""`loadtest compact`: merge the lake's small files into one per table-day (see analytics/compaction.py).

Exit codes: 0 ok, 2 a bad table or day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

Handler = Callable[[argparse.Namespace], int]


def _day(text: str) -> dt.date:
    """A YYYY-MM-DD date argument."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register `compact`; return its handler by name."""
    compact = sub.add_parser("compact", help="merge each completed table-day's files into one (the lake at $LOADTEST_DATA_DIR)")
    compact.add_argument("--table", help="one table (default: all)")
    compact.add_argument("--day", type=_day, help="one UTC day, YYYY-MM-DD, today included (default: every day before today)")
    compact.add_argument("--json", action="store_true", help="print one object per table-day")
    return {"compact": cmd_compact}


def cmd_compact(args: argparse.Namespace) -> int:
    """Compact the table-days asked for; print what each one did."""
    from analytics.lake import Lake
    from analytics.records import TABLES
    from deployments.cli import EXIT_OK, EXIT_USAGE

    if args.table is not None and args.table not in TABLES:
        print(f"loadtest: unknown table {args.table!r}; tables: {', '.join(TABLES)}", file=sys.stderr)
        return EXIT_USAGE
    lake, tables = Lake.from_env(), [args.table] if args.table else list(TABLES)
    if args.day is not None:
        results = [lake.compact(table, args.day) for table in tables]
    else:
        results = lake.compact_all(tables=tables)
    if args.json:
        print(json.dumps([asdict(r) for r in results], default=str))
        return EXIT_OK
    for r in results:
        merged = f"{r.files_before} -> {r.files_after} files" + (f", {r.rows} rows into {r.output}" if r.output else "")
        print(f"{r.table:<20} {r.day}  {merged}; {r.deleted} replaced file(s) deleted")
    print(f"{sum(r.output is not None for r in results)} table-day(s) compacted in {lake.url}")
    return EXIT_OK
