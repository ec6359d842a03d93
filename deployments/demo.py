"""`make demo`: the whole pipeline on an embedded simulated Scope fleet.

fleet → discover → dispatch a compressed day → analyze → metrics → leaderboard. Every run is a WebRTC
session relayed through the cloud-connected simulated Scope to its orchestrator (the only
path on which a figure says anything about an orchestrator). The fleet's orchestrators
behave in known ways (healthy, slow, stalling, black output, deaf to prompts, no capacity),
so the summary shows, next to what was injected, what the harness made of each: the media
path, the fps received, freezes and prompt latency.

Then a generated week of history (analytics/history.py, every run marked `generated`) lands
with a regression injected on one orchestrator's last day, and `analyze` runs again: the
baselines have rows and the drift report shows that regression with its p-value. It lands
after the live runs because the planner reads the lake (coverage, budget): generated runs
must not change what the live part does.

Last, the leaderboard API serves the demo lake and the outbox posts the demo's relay runs to it
(deployments/demo_leaderboard.py): the aggregated stats table and a curl line to try.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from analytics.history import HistorySpec, Injection, OrchestratorShape, ScenarioShape, generate_history, land_history
from deployments.demo_leaderboard import free_port, leaderboard_section, show_leaderboard

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
DEMO_API_KEY = "demo-key-for-the-simulator"  # the simulator accepts any key; a real one comes from the env
FAULT_AFTER_S = 3.0
DISPATCH_WINDOW_S = float(os.environ.get("LOADTEST_DEMO_WINDOW_S", "150"))
HEARTBEAT_S = 15.0
# one orchestrator per behaviour; each has its own pinned Scope instance
PROFILES = ["healthy", "healthy", "slow", "stall", "black", "prompt_insensitive", "no_capacity"]
EXPECTED = {"healthy": "passed", "slow": "passed", "stall": "failed: stall", "black": "failed: black",
            "prompt_insensitive": "failed: prompt_response", "no_capacity": "unavailable"}


class DemoProgress:
    """One line per finished run and a heartbeat while runs go on."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_beat = self.started
        self.running: set[str] = set()
        self.outcomes: dict[str, int] = {}

    def __call__(self, event) -> None:
        now = time.monotonic()
        if event.kind == "phase":
            self.running.add(event.run_id)
        elif event.kind == "done":
            self.running.discard(event.run_id)
            self.outcomes[event.outcome] = self.outcomes.get(event.outcome, 0) + 1
            print(f"  {now - self.started:5.0f}s  {event.scenario} on {(event.orchestrator or '?')[:10]}…: "
                  f"{event.outcome}", flush=True)
        if now - self.last_beat >= HEARTBEAT_S:
            self.last_beat = now
            print(f"  {now - self.started:5.0f}s  running {len(self.running)}, finished {self.outcomes}", flush=True)


def _environment() -> Path:
    os.environ.setdefault("SCOPE_CLOUD_API_KEY", DEMO_API_KEY)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return Path(os.environ.setdefault("LOADTEST_DATA_DIR", "data")).resolve()


def write_demo_config(fleet, data_dir: Path) -> Path:
    """config/demo.yaml with the fleet's discovery URL and its instances, pinned to their orchestrators."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["prompts_dir"] = str(ROOT / "config" / "prompts")
    raw["graphs_dir"] = str(ROOT / "config" / "graphs")
    raw["discovery"]["gateway_urls"] = [fleet.discovery_url]
    raw["leaderboard"] = leaderboard_section(free_port())  # the API the demo serves, and its only target
    raw["instances"] = [
        {"name": f"sim-{i}", "kind": "static", "url": inst.url, "orchestrator": inst.orchestrator_address}
        for i, inst in enumerate(fleet.instances)
    ]
    path = data_dir / "demo-config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def pipeline(config: str) -> tuple[dict, dict]:
    """Discover, then dispatch for the demo window (dispatch analyzes and publishes at its end)."""
    from flows.discover import discover
    from flows.dispatch import dispatch

    discovered = await discover(config=config)
    dispatched = await dispatch(config=config, window_s=DISPATCH_WINDOW_S)
    return discovered, dispatched


def verdict_table(lake, fleet) -> tuple[str, bool]:
    """Per orchestrator: what was injected, what the runs say, whether that is what it calls for."""
    from deployments.tables import format_table

    frame = lake.query_frame(
        "select orchestrator, count(*) runs, count(*) filter (outcome = 'passed') passed, "
        "count(*) filter (outcome = 'failed') failed, count(*) filter (outcome = 'unavailable') unavailable, "
        "mode(checks_failed[1]) first_check, mode(outcome) outcome, mode(media_path) media_path, "
        "median(fps_received) fps_received, sum(freeze_count) freezes, median(prompt_latency_p50_s) prompt_s "
        "from runs where generated is not true group by 1"
    )
    by_orchestrator = {row["orchestrator"].lower(): row for row in frame.iter_rows(named=True)}
    rows, all_expected = [], True
    for inst in fleet.instances:
        row = by_orchestrator.get(inst.orchestrator_address.lower())
        if row is None:
            rows.append([inst.orchestrator_address[:12] + "…", inst.profile, 0, 0, 0, 0, "-", "-", "-", "-", "-",
                         EXPECTED[inst.profile], False])
            all_expected = False
            continue
        got = row["outcome"] + (f": {row['first_check']}" if row["outcome"] == "failed" else "")
        relayed = row["media_path"] == "relay" or row["outcome"] == "unavailable"  # figures came through it
        ok = got == EXPECTED[inst.profile] and relayed
        all_expected &= ok
        rows.append([inst.orchestrator_address[:12] + "…", inst.profile, row["runs"], row["passed"], row["failed"],
                     row["unavailable"], row["media_path"] or "-", _figure(row["fps_received"]),
                     row["freezes"] if row["freezes"] is not None else "-", _figure(row["prompt_s"]), got,
                     EXPECTED[inst.profile], ok])
    columns = ["orchestrator", "injected", "runs", "passed", "failed", "unavailable", "media_path", "fps_received",
               "freezes", "prompt_s", "verdict", "expected", "as_expected"]
    return format_table(columns, rows), all_expected


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- generated history: a compressed week before the live runs, so baselines and drift have data ---

HISTORY_SEED = 22
HISTORY_DAYS = 8  # drift: 7 days of baseline, then the last 24 h
HISTORY_RUNS_PER_DAY = 12  # per orchestrator x scenario
HARNESS_POLL_S = 0.15  # what the harness's status polling adds to the simulator's own timings (measured)
REGRESSION = {"metric": "first_frame_s", "factor": 1.6}  # on the first orchestrator's first scenario, last day
FAILING_CHECKS = {"stall": "stall", "black": "black", "prompt_insensitive": "prompt_response"}


@dataclass(frozen=True)
class DemoHistory:
    """What the history step landed: how many runs, the injected change, how long it took, what was there."""

    runs: int
    injection: Injection
    seconds: float
    earlier_generated: int


def orchestrator_shape(address: str, profile_name: str) -> OrchestratorShape:
    """How an orchestrator with this simulator profile looks in generated history."""
    from simulator.profiles import build_profile

    profile = build_profile(profile_name)
    figures = {name: getattr(profile, name)[0] + HARNESS_POLL_S for name in ("connect_s", "load_s", "first_frame_s")}
    if profile_name == "no_capacity":
        return OrchestratorShape(address, **figures, outcomes=(("unavailable", 1.0),))
    if profile_name in FAILING_CHECKS:
        return OrchestratorShape(address, **figures, fps=profile.fps_out, outcomes=(("failed", 1.0),),
                                 failure=("validation", "stream", FAILING_CHECKS[profile_name]))
    return OrchestratorShape(address, **figures, fps=profile.fps_out)


def demo_history_spec(instances, settings, end: dt.datetime) -> HistorySpec:
    """The demo fleet's orchestrators and the config's scenarios, a regression on the first pair's last day."""
    scenarios = tuple(ScenarioShape(s.name, s.pipeline, s.mode, s.duration_s, s.expected_fps,
                                    tuple(s.pipeline_ids), s.duration_class) for s in settings.expand_scenarios())
    orchestrators = tuple(orchestrator_shape(i.orchestrator_address, i.profile) for i in instances)
    injection = Injection(orchestrator=orchestrators[0].address, scenario=scenarios[0].name, **REGRESSION)
    return HistorySpec(orchestrators, scenarios, end, days=HISTORY_DAYS, runs_per_day=HISTORY_RUNS_PER_DAY,
                       injections=(injection,), seed=HISTORY_SEED)


def land_demo_history(lake, instances, settings, *, end: dt.datetime | None = None) -> DemoHistory:
    """Generate the demo fleet's week (marked generated) and land it; what was landed."""
    began = time.perf_counter()
    earlier = lake.query("select count(*) from runs where generated").rows[0][0]
    spec = demo_history_spec(instances, settings, end or dt.datetime.now(dt.timezone.utc))
    landed = land_history(lake, generate_history(spec))
    return DemoHistory(landed, spec.injections[0], time.perf_counter() - began, earlier)


async def history_and_analysis(instances, config: Path, data_dir: Path) -> DemoHistory:
    """Land the generated week, then run `analyze` again so baselines and drift include it."""
    from analytics.lake import Lake
    from config.settings import load_settings
    from flows.analyze import analyze

    history = land_demo_history(Lake(data_dir), instances, load_settings(config))
    await analyze(config=str(config))
    return history


def print_history(history: DemoHistory) -> None:
    """Say that the history was generated, how much, and what was injected."""
    injected = history.injection
    print(f"\nhistory: {history.runs} GENERATED runs (runs.generated = true, not measured) over {HISTORY_DAYS} days, "
          f"{HISTORY_RUNS_PER_DAY} a day per orchestrator x scenario, landed in {history.seconds:.1f} s, "
          f"seed {HISTORY_SEED}")
    print(f"  injected on the last day: {injected.metric} x{injected.factor:g} for {injected.scenario} on "
          f"{injected.orchestrator}")
    if history.earlier_generated:
        print(f"  the lake also holds {history.earlier_generated} generated runs of earlier demos (make clean "
              "starts afresh)")


def print_baselines(lake, injection: Injection) -> None:
    """The baselines of the injected scenario: every orchestrator pooled, and the injected orchestrator's."""
    from deployments.tables import format_table

    count = lake.query("select count(*) from baselines").rows[0][0]
    frame = lake.query_frame(
        "select scope, scenario, coalesce(orchestrator[:12] || '…', 'all') orchestrator, metric, "
        "round(p50, 3) p50, round(p95, 3) p95, n from baselines "
        f"where scenario = '{injection.scenario}' and (orchestrator is null or lower(orchestrator) = "
        f"'{injection.orchestrator.lower()}') order by scope desc, metric")
    print(f"\nbaselines (7-day P50 / P95 incl. the last day; {count} series, those of {injection.scenario}):")
    print(format_table(frame.columns, frame.rows()))


def drift_found(lake, injection: Injection) -> tuple[bool, list[str]]:
    """Whether drift flagged the injected series as regressed; every other series it flagged."""
    flagged = lake.query_frame("select scenario, orchestrator, metric, verdict from drift "
                               "where verdict in ('regressed', 'improved')")
    found, others = False, []
    for row in flagged.iter_rows(named=True):
        injected = (row["scenario"] == injection.scenario and row["metric"] == injection.metric
                    and (row["orchestrator"] or "").lower() == injection.orchestrator.lower())
        found |= injected and row["verdict"] == "regressed"
        if not injected:
            others.append(f"{row['verdict']} {row['metric']} {row['scenario']} on {row['orchestrator'] or 'all'}")
    return found, others


def print_drift_check(lake, history: DemoHistory) -> bool:
    """One line: the injected regression found (or not), and any other series drift flagged."""
    found, others = drift_found(lake, history.injection)
    head = "drift found the injected regression" if found else "DRIFT DID NOT FIND THE INJECTED REGRESSION"
    print(f"\n{head}" + (" and flagged nothing else" if not others else f"; it also flagged: {'; '.join(others)}"))
    return found


def main() -> int:
    """Run the demo; exit 0 when every orchestrator got its expected verdict and drift found the injected regression."""
    data_dir = _environment()
    from analytics.lake import Lake
    from simulator.testing import running_fleet
    from tasks.session.progress import listen

    print(f"scope-loadtest demo: fleet → discover → dispatch ({DISPATCH_WINDOW_S:.0f} s) → analyze → "
          "a generated week of history → analyze → metrics")
    print(f"lake: {data_dir}")
    with running_fleet(instances=len(PROFILES), orchestrators=len(PROFILES), profiles=PROFILES,
                       overrides={"fault_after_s": FAULT_AFTER_S}) as fleet:
        config = write_demo_config(fleet, data_dir)
        print(f"simulated fleet: discovery {fleet.discovery_url}, {len(fleet.instances)} Scope instances")
        for inst in fleet.instances:
            print(f"  {inst.url}  orchestrator {inst.orchestrator_address}  behaves: {inst.profile}")
        if not os.environ.get("PREFECT_API_URL"):
            print("starting a temporary local Prefect API (15-20 s; set PREFECT_API_URL to use a running server)…")
        with listen(DemoProgress()):
            discovered, dispatched = asyncio.run(pipeline(str(config)))
        history = asyncio.run(history_and_analysis(fleet.instances, config, data_dir))
        lake = Lake(data_dir)
        lake.refresh_catalog()
        table, all_expected = verdict_table(lake, fleet)
    print(f"\ndiscovered {discovered.get('orchestrators', discovered)}; dispatched {dispatched['launched']} runs: "
          f"{dispatched['outcomes']}")
    print("\n" + table)
    print_history(history)
    print_baselines(lake, history.injection)
    print_reports(lake, data_dir)
    drift_ok = print_drift_check(lake, history)
    leaderboard_ok = show_leaderboard(lake, config, data_dir)
    print("\nevery orchestrator got the verdict its injected behaviour calls for" if all_expected
          else "\nSOME ORCHESTRATORS DID NOT GET THE EXPECTED VERDICT (see as_expected)")
    return 0 if all_expected and drift_ok and leaderboard_ok else 1


def print_reports(lake, data_dir: Path) -> None:
    """The drift report, where the metrics went, and how to look further."""
    from analytics.drift import drift_report_markdown

    drift = lake.query_frame("select * from drift")
    print("\n" + drift_report_markdown(drift))
    metrics_file = data_dir / "metrics.prom"
    where = os.environ.get("PUSHGATEWAY_URL") or (str(metrics_file) if metrics_file.exists() else "nowhere")
    print(f"\nmetrics (metrics.md families) pushed to: {where}")
    print("\nLook further:")
    print('  uv run loadtest sql "select outcome, count(*) from runs group by 1"')
    print("  uv run loadtest coverage --config data/demo-config.yaml   |  uv run loadtest scores  |  uv run loadtest drift")
    print(f"  duckdb -readonly {data_dir / 'catalog.duckdb'}   (views: runs, frames, prompt_switches, coverage_daily, ...)")
    print("  Prefect UI: run `uv run prefect server start`, set PREFECT_API_URL=http://127.0.0.1:4200/api,")
    print("  and the demo's flow runs show up there on the next `make demo` (this one used a temporary API).")


if __name__ == "__main__":
    sys.exit(main())
