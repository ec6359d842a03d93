"""`loadtest coverage` and `loadtest schedule`: the fleet's budget and coverage, and the dispatch loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
CONFIG_HELP = "config file (default $LOADTEST_CONFIG or config/default.yaml)"
SCHEDULE_PAUSE_S = 30.0
VIEW_EVERY_S = 5.0
STOP_MARGIN_S = 30.0  # beyond the config's cleanup timeout: stopping managed instances, landing final rows


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register `coverage` and `schedule`."""
    from deployments.cli_args import positive_float, positive_int, utc_day

    coverage = sub.add_parser("coverage", help="today's budget, runs and scenario coverage per orchestrator")
    coverage.add_argument("--config", help=CONFIG_HELP)
    coverage.add_argument("--date", type=utc_day, help="UTC day YYYY-MM-DD (default today)")
    coverage.add_argument("--json", action="store_true")

    schedule = sub.add_parser("schedule", help="discover and dispatch in a loop until interrupted, with a live view")
    schedule.add_argument("--config", help=CONFIG_HELP)
    schedule.add_argument("--window-s", type=positive_float, default=600.0, help="seconds each dispatch round plans for")
    schedule.add_argument("--rounds", type=positive_int,
                          help="stop after this many dispatch rounds (default: until SIGINT/SIGTERM)")
    schedule.add_argument("--verbose", action="store_true",
                          help="show Prefect's own log lines (default: warnings and errors only)")
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
    from deployments.tables import format_table

    frame = coverage_frame(args.config, args.date)
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
        self.drawing = True

    def __call__(self, event) -> None:
        row = self.rows.setdefault(event.run_id, [event.scenario, event.orchestrator, event.instance, "", "", 0])
        if event.kind == "phase":
            row[3] = event.phase
        elif event.kind == "tick":
            row[3], row[5] = "stream", event.frames_sampled
        elif event.kind == "done":
            row[3], row[4] = "done", event.outcome
        if self.drawing and (time.monotonic() - self.last_draw >= VIEW_EVERY_S or event.kind == "done"):
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

    def in_flight(self) -> list[str]:
        """Run ids that started and have not ended."""
        return [run_id for run_id, row in self.rows.items() if row[3] != "done"]

    def stopped_line(self, run_id: str) -> str:
        """`stopped <run_id> <scenario> @ <orchestrator>: <outcome>` for a run the command stopped."""
        scenario, orchestrator, _instance, phase, outcome, _frames = self.rows[run_id]
        ended = outcome if phase == "done" else f"no final outcome seen (was in {phase or 'prepare'})"
        return f"stopped {run_id} {scenario} @ {orchestrator or '-'}: {ended}"


def cmd_schedule(args: argparse.Namespace) -> int:
    """Rediscover when due, dispatch a round, pause, repeat; SIGINT/SIGTERM stop it after cleaning up every run."""
    from config.settings import load_settings
    from deployments.cli_runtime import check_prefect_api, run_with_signals

    settings = load_settings(args.config)  # a bad config fails before Prefect starts
    check_prefect_api()
    grace_s = settings.thresholds.cleanup_timeout_s + STOP_MARGIN_S
    return run_with_signals(lambda stop: _schedule(args, stop, grace_s), hard_stop_s=grace_s + STOP_MARGIN_S)


async def _schedule(args: argparse.Namespace, stop, grace_s: float) -> int:
    """The schedule loop; on a signal, every run in flight is cancelled and awaited (bounded), then listed."""
    from prefect.context import AsyncClientContext

    from deployments.cli_runtime import EXIT_INTERRUPTED, prefect_console, silence_prefect_console
    from tasks.fleet.schedule import stop_runs_in_flight
    from tasks.session.progress import listen

    view = ScheduleView()
    stopping: list[str] = []

    def on_signal() -> None:
        view.drawing = False
        stopping.extend(view.in_flight())
        if not args.verbose:
            silence_prefect_console()
        print(f"loadtest: {stop.signal_name}: stopping the dispatch round and cleaning up "
              f"{len(stopping)} run(s) in flight (up to {grace_s:.0f} s)", file=sys.stderr, flush=True)

    stop.bind(on_signal=on_signal)
    with listen(view), prefect_console(logging.NOTSET if args.verbose else logging.WARNING):
        # One Prefect client for every flow of the command, closed only after the last run ended, so a
        # cancelled round never closes the client its runs still need.
        async with AsyncClientContext.get_or_create():
            try:
                await _rounds(args)
            except asyncio.CancelledError:
                if stop.signal_name is None:
                    raise
                await stop_runs_in_flight(grace_s, reason=stop.signal_name)
    if stop.signal_name is None:
        return 0
    for run_id in dict.fromkeys(stopping + view.in_flight()):
        print(view.stopped_line(run_id), flush=True)
    return EXIT_INTERRUPTED


async def _rounds(args: argparse.Namespace) -> None:
    """Discover when due, dispatch a round, pause when it launched nothing; `--rounds` times or forever."""
    from flows.discover import discover
    from flows.dispatch import dispatch
    from tasks.fleet.schedule import discovery_due

    rounds = 0
    while args.rounds is None or rounds < args.rounds:
        if discovery_due(args.config):
            print(f"discovery: {json.dumps(await discover(config=args.config), default=str)}", file=sys.stderr)
        summary = await dispatch(config=args.config, window_s=args.window_s)
        rounds += 1
        print(f"round {rounds}: launched {summary['launched']}, outcomes {summary['outcomes']}", file=sys.stderr)
        if summary["launched"] == 0 and (args.rounds is None or rounds < args.rounds):
            await asyncio.sleep(SCHEDULE_PAUSE_S)
