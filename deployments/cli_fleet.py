"""`loadtest coverage` and `loadtest schedule`: the fleet's budget and coverage, and the dispatch loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
SCHEDULE_PAUSE_S = 30.0
VIEW_EVERY_S = 5.0


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register `coverage` and `schedule`."""
    coverage = sub.add_parser("coverage", help="today's budget, runs and scenario coverage per orchestrator")
    coverage.add_argument("--config")
    coverage.add_argument("--date", help="UTC day YYYY-MM-DD (default today)")
    coverage.add_argument("--json", action="store_true")

    schedule = sub.add_parser("schedule", help="discover and dispatch in a loop until interrupted, with a live view")
    schedule.add_argument("--config")
    schedule.add_argument("--window-s", type=float, default=600.0, help="seconds each dispatch round plans for")
    schedule.add_argument("--rounds", type=int, help="stop after this many dispatch rounds (default: until Ctrl-C)")
    return {"coverage": cmd_coverage, "schedule": cmd_schedule}


def coverage_frame(config: str | None, day=None):
    """The coverage table of `day` for the orchestrators dispatch knows."""
    import datetime as dt

    from analytics.coverage import coverage_table
    from analytics.lake import Lake
    from config.settings import load_settings
    from tasks.fleet.dispatching import known_orchestrators

    settings = load_settings(config)
    lake = Lake.from_env()
    now = dt.datetime.now(dt.UTC)
    runs = lake.runs_frame()
    known = [o.address for o in known_orchestrators(lake, settings).values()]
    seen = runs.get_column("orchestrator").drop_nulls().unique().to_list() if len(runs) else []
    orchestrators = sorted(set(known) | set(seen), key=str.lower)
    return coverage_table(
        runs,
        orchestrators=orchestrators,
        scenarios=[s.name for s in settings.expand_scenarios()],
        budget=settings.budget,
        day=day or now.date(),
        now=now,
    )


def cmd_coverage(args: argparse.Namespace) -> int:
    """Print per orchestrator: budget planned/used, runs by outcome, scenarios covered, status."""
    import datetime as dt

    from deployments.tables import format_table

    day = dt.date.fromisoformat(args.date) if args.date else None
    frame = coverage_frame(args.config, day)
    columns = ["orchestrator", "budget_s", "used_s", "runs", "passed", "failed", "unavailable",
               "scenarios_covered", "scenarios_due", "consecutive_failures", "status"]
    if args.json:
        print(json.dumps(frame.select(columns).to_dicts(), default=str))
    else:
        print(format_table(columns, frame.select(columns).rows()))
    return 0


class ScheduleView:
    """Live view of what runs where: redrawn every few seconds from progress events."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = {}
        self.last_draw = 0.0

    def __call__(self, event) -> None:
        row = self.rows.setdefault(event.run_id, [event.scenario, event.orchestrator, event.instance, "", "", 0])
        if event.kind == "phase":
            row[3] = event.phase
        elif event.kind == "tick":
            row[3], row[5] = "stream", event.frames_sampled
        elif event.kind == "done":
            row[3], row[4] = "done", event.outcome
        if time.monotonic() - self.last_draw >= VIEW_EVERY_S or event.kind == "done":
            self.draw()

    def draw(self) -> None:
        from deployments.tables import format_table

        self.last_draw = time.monotonic()
        active = [r for r in self.rows.values() if r[3] != "done"]
        finished = [r for r in self.rows.values() if r[3] == "done"][-5:]
        print(f"\n== {time.strftime('%H:%M:%S')}  running {len(active)}, finished {len(self.rows) - len(active)}",
              file=sys.stderr)
        columns = ["scenario", "orchestrator", "instance", "phase", "outcome", "frames"]
        print(format_table(columns, active + finished, max_width=44), file=sys.stderr, flush=True)


def cmd_schedule(args: argparse.Namespace) -> int:
    """Rediscover when due, dispatch a round, pause, repeat; Ctrl-C stops after cleaning up."""
    from flows.discover import discover
    from flows.dispatch import dispatch
    from tasks.session.progress import listen
    from tasks.fleet.schedule import discovery_due

    rounds = 0
    with listen(ScheduleView()):
        while args.rounds is None or rounds < args.rounds:
            if discovery_due(args.config):
                print(f"discovery: {json.dumps(asyncio.run(discover(config=args.config)), default=str)}", file=sys.stderr)
            summary = asyncio.run(dispatch(config=args.config, window_s=args.window_s))
            rounds += 1
            print(f"round {rounds}: launched {summary['launched']}, outcomes {summary['outcomes']}", file=sys.stderr)
            if args.rounds is None or rounds < args.rounds:
                time.sleep(SCHEDULE_PAUSE_S if summary["launched"] == 0 else 0)
    return 0
