"""`loadtest baselines`, `loadtest drift`, `loadtest scores`: the analytics, computed from the lake now.

Each reads the lake's runs ($LOADTEST_DATA_DIR), computes like the `analyze` flow does (without
landing or pushing anything) and prints a table, or JSON with --json. Exit code 0.
`loadtest scores` also prints the leaderboard's scores of the last 24 h (both the reference AI score
and our live-video score); `--leaderboard` prints only those (a JSON list with --json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

Handler = Callable[[argparse.Namespace], int]
BASELINE_COLUMNS = ("scope", "scenario", "orchestrator", "metric", "p50", "p95", "n")
DRIFT_COLUMNS = ("scope", "scenario", "orchestrator", "metric", "verdict", "baseline_p50", "recent_median",
                 "change", "p_value", "n_recent", "n_baseline")
SCORE_COLUMNS = ("orchestrator", "pipeline", "runs", "passed", "pass_rate", "wilson_95", "latency_score",
                 "fps_score", "score")
LEADERBOARD_COLUMNS = ("orchestrator", "region", "model", "jobs", "unavailable", "success_rate", "wilson_95",
                       "score", "live_video_score")
LEADERBOARD_WINDOW = "24h"
CONFIG_HELP = "config file (default $LOADTEST_CONFIG or config/default.yaml)"
VERDICT_ORDER = {"regressed": 0, "improved": 1, "stable": 2, "insufficient_data": 3}


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    from deployments.cli_args import positive_int

    baselines = sub.add_parser("baselines", help="rolling P50/P95 per scenario and orchestrator x scenario")
    baselines.add_argument("--window-days", type=positive_int, default=7, help="window length (default 7)")
    baselines.add_argument("--scope", choices=("scenario", "orchestrator_scenario"), help="only this series kind")
    baselines.add_argument("--json", action="store_true", help="print the rows as a JSON list")

    drift = sub.add_parser("drift", help="did the last day get worse than the 7 days before? (every series)")
    drift.add_argument("--json", action="store_true", help="print the drift report and every series as JSON")

    scores = sub.add_parser("scores", help="pass rate (Wilson 95 %%) and score per orchestrator x pipeline")
    scores.add_argument("--window-days", type=positive_int, default=7, help="window length (default 7)")
    scores.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    scores.add_argument("--leaderboard", action="store_true",
                        help="only the leaderboard scores of the last 24 h (a JSON list with --json)")
    scores.add_argument("--config", help=CONFIG_HELP)
    return {"baselines": cmd_baselines, "drift": cmd_drift, "scores": cmd_scores}


def _runs_and_now() -> tuple[pl.DataFrame, dt.datetime]:
    """The lake's runs view and the current UTC time."""
    from analytics.lake import Lake

    return Lake.from_env().runs_frame(), dt.datetime.now(dt.timezone.utc)


def _json(value: object) -> str:
    """JSON text; timestamps and dates in ISO 8601."""
    return json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def cmd_baselines(args: argparse.Namespace) -> int:
    """Print the rolling baselines computed from the lake's runs."""
    import polars as pl

    from analytics.baselines import compute_baselines
    from deployments.tables import format_table

    runs, now = _runs_and_now()
    baselines = compute_baselines(runs, now=now, window_days=args.window_days)
    if args.scope:
        baselines = baselines.filter(pl.col("scope") == args.scope)
    if args.json:
        print(_json(baselines.to_dicts()))
        return 0
    print(f"{baselines.height} series over the last {args.window_days} day(s), {runs.height} run(s) in the lake")
    print(format_table(BASELINE_COLUMNS, baselines.select(BASELINE_COLUMNS).rows()))
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """Print the drift verdict of every series: regressions first."""
    import polars as pl

    from analytics.drift import DEFAULT_DRIFT_RULE, compute_drift, drift_report_json
    from deployments.tables import format_table

    runs, now = _runs_and_now()
    drift = compute_drift(runs, now=now)
    if args.json:
        print(_json(drift_report_json(drift) | {"series": drift.to_dicts()}))
        return 0
    ordered = drift.with_columns(
        pl.col("verdict").replace_strict(VERDICT_ORDER, default=len(VERDICT_ORDER)).alias("rank"),
        pl.format("{} %", (pl.col("change_ratio") * 100).round(1)).alias("change"),
    ).sort(["rank", "change_ratio"], descending=[False, True], nulls_last=True)
    counts = {v: drift.filter(pl.col("verdict") == v).height for v in VERDICT_ORDER}
    print(DEFAULT_DRIFT_RULE.describe())
    print(", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts.items()) + f" ({drift.height} series)")
    print(format_table(DRIFT_COLUMNS, ordered.select(DRIFT_COLUMNS).rows()))
    return 0


def cmd_scores(args: argparse.Namespace) -> int:
    """Print pass rates with their Wilson interval and the orchestrator scores, best first; then the leaderboard."""
    from analytics.scores import MIN_RUNS_TO_RANK, compute_scores, evidence_label
    from deployments.tables import format_cell, format_table

    if args.leaderboard:
        return _print_leaderboard(args)
    runs, now = _runs_and_now()
    scores = compute_scores(runs, now=now, window_days=args.window_days)
    rows = scores.to_dicts()
    if args.json:
        print(_json([row | {"evidence": evidence_label(row)} for row in rows]))
        return 0
    table = [[row["orchestrator"], row["pipeline"], row["runs"], row["passed"], row["pass_rate"],
              f"[{format_cell(row['wilson_low'])}, {format_cell(row['wilson_high'])}]",
              row["latency_score"], row["fps_score"], evidence_label(row)] for row in rows]
    print(f"{len(rows)} orchestrator x pipeline pair(s) over the last {args.window_days} day(s); "
          f"fewer than {MIN_RUNS_TO_RANK} verdicts: insufficient evidence, not ranked")
    print(format_table(SCORE_COLUMNS, table))
    print()
    return _print_leaderboard(args)


def leaderboard_rows(config: str | None, *, now: dt.datetime) -> list[dict]:
    """The leaderboard's score rows of the last 24 h, best score first."""
    from analytics.lake import Lake
    from analytics.leaderboard.board import Leaderboard
    from config.settings import load_settings

    board = Leaderboard(Lake.from_env(), load_settings(config))
    table = board.score_table(now=now, windows={LEADERBOARD_WINDOW: dt.timedelta(hours=24)})
    return table.sort(["score", "orchestrator", "region", "model"], descending=[True, False, False, False],
                      nulls_last=True).to_dicts()


def _print_leaderboard(args: argparse.Namespace) -> int:
    """The leaderboard (24 h) table, or its rows as a JSON list with --json."""
    from analytics.leaderboard.scores import INSUFFICIENT_EVIDENCE
    from deployments.tables import format_cell, format_table

    rows = leaderboard_rows(args.config, now=dt.datetime.now(dt.timezone.utc))
    if args.json:
        print(_json(rows))
        return 0
    table = [[row["orchestrator"], row["region"], row["model"], row["jobs"], row["unavailable"],
              row["success_rate"] if row["jobs"] else None,
              f"[{format_cell(row['success_rate_low'])}, {format_cell(row['success_rate_high'])}]",
              row["score"] if row["jobs"] else None,
              format_cell(row["live_video_score"]) if row["ranked"] else INSUFFICIENT_EVIDENCE]
             for row in rows]
    print(f"leaderboard (24 h): {len(rows)} orchestrator x region x model group(s); score = 0.65 x success rate "
          "+ 0.35 x round-trip score; a live-video score on too few jobs: insufficient evidence, not ranked")
    print(format_table(LEADERBOARD_COLUMNS, table))
    return 0
