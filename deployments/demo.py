"""`make demo`: the whole pipeline on an embedded simulated Scope fleet.

fleet → discover → dispatch a compressed day → analyze → metrics. The fleet's orchestrators
behave in known ways (healthy, slow, stalling, black output, deaf to prompts, no capacity),
so the summary shows, next to what was injected, what the harness made of each.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import yaml

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
        "mode(checks_failed[1]) first_check, mode(outcome) outcome from runs group by 1"
    )
    by_orchestrator = {row["orchestrator"].lower(): row for row in frame.iter_rows(named=True)}
    rows, all_expected = [], True
    for inst in fleet.instances:
        row = by_orchestrator.get(inst.orchestrator_address.lower())
        if row is None:
            rows.append([inst.orchestrator_address[:12] + "…", inst.profile, 0, 0, 0, 0, "-", EXPECTED[inst.profile], False])
            all_expected = False
            continue
        got = row["outcome"] + (f": {row['first_check']}" if row["outcome"] == "failed" else "")
        ok = got == EXPECTED[inst.profile]
        all_expected &= ok
        rows.append([inst.orchestrator_address[:12] + "…", inst.profile, row["runs"], row["passed"], row["failed"],
                     row["unavailable"], got, EXPECTED[inst.profile], ok])
    columns = ["orchestrator", "injected", "runs", "passed", "failed", "unavailable", "verdict", "expected", "as_expected"]
    return format_table(columns, rows), all_expected


def main() -> int:
    """Run the demo; exit 0 when every orchestrator got the verdict its injected behaviour calls for."""
    data_dir = _environment()
    from analytics.lake import Lake
    from simulator.testing import running_fleet
    from tasks.session.progress import listen

    print(f"scope-loadtest demo: fleet → discover → dispatch ({DISPATCH_WINDOW_S:.0f} s) → analyze → metrics")
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
        lake = Lake(data_dir)
        lake.refresh_catalog()
        table, all_expected = verdict_table(lake, fleet)
    print(f"\ndiscovered {discovered.get('orchestrators', discovered)}; dispatched {dispatched['launched']} runs: "
          f"{dispatched['outcomes']}")
    print("\n" + table)
    print_reports(lake, data_dir)
    print("\nevery orchestrator got the verdict its injected behaviour calls for" if all_expected
          else "\nSOME ORCHESTRATORS DID NOT GET THE EXPECTED VERDICT (see as_expected)")
    return 0 if all_expected else 1


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
