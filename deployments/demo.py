"""`make demo`: an embedded simulated Scope fleet, short scenarios through `run-scenario`, a summary.

Each run goes to its own simulated Scope instance pinned to its own orchestrator, some
healthy and some broken in a known way, so the summary shows what the harness makes of
each: the verdict, the failed check, its category and phase, next to what was injected.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
DEMO_API_KEY = "demo-key-for-the-simulator"  # the simulator accepts any key; a real one comes from the env
FAULT_AFTER_S = 3.0

# (scenario, simulator profile, what a correct harness says)
DEMO_RUNS = [
    ("longlive_t2v_15s", "healthy", "passed"),
    ("longlive_v2v_15s", "healthy", "passed"),
    ("longlive_rife_v2v_15s", "healthy", "passed"),
    ("video_depth_anything_longlive_rife_v2v_15s", "slow", "passed"),
    ("ltx2_i2v_15s", "healthy", "passed"),
    ("longlive_t2v_15s", "stall", "failed: stall"),
    ("longlive_i2v_15s", "black", "failed: black"),
    ("longlive_t2v_15s", "prompt_insensitive", "failed: prompt_response"),
    ("longlive_v2v_15s", "load_error", "failed: load"),
    ("ltx2_t2v_15s", "no_capacity", "unavailable"),
]


@dataclass
class DemoProgress:
    """Prints one line when a run finishes and a heartbeat while runs go on."""

    total: int
    done: int = 0
    started: float = time.monotonic()

    def __call__(self, event) -> None:
        if event.kind == "done":
            self.done += 1
            print(f"  [{self.done}/{self.total}] {event.scenario}: {event.outcome} "
                  f"({event.frames_sampled} frames sampled, {time.monotonic() - self.started:.0f} s)", flush=True)


def _environment() -> Path:
    os.environ.setdefault("SCOPE_CLOUD_API_KEY", DEMO_API_KEY)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    data_dir = Path(os.environ.setdefault("LOADTEST_DATA_DIR", "data")).resolve()
    return data_dir


async def _run_all(fleet) -> list[dict]:
    from flows.run_scenario import run_scenario

    calls = [
        run_scenario(
            scenario=scenario,
            scope_url=instance.url,
            orchestrator=instance.orchestrator_address,
            config=str(DEMO_CONFIG),
        )
        for (scenario, _, _), instance in zip(DEMO_RUNS, fleet.instances, strict=True)
    ]
    return await asyncio.gather(*calls)


def _summary_table(summaries: list[dict]) -> str:
    from deployments.tables import format_table

    columns = ["scenario", "orchestrator", "injected", "outcome", "failure", "checks_failed",
               "first_frame_s", "fps_steady", "expected", "as_expected"]
    rows = []
    for summary, (_, profile, expected) in zip(summaries, DEMO_RUNS, strict=True):
        failure = f"{summary['failure_category']}/{summary['failure_phase']}" if summary["failure_category"] else None
        got = _verdict_text(summary)
        rows.append([summary["scenario"], (summary["orchestrator"] or "")[:10] + "…", profile, summary["outcome"],
                     failure, summary["checks_failed"], summary["first_frame_s"], summary["fps_steady"],
                     expected, got == expected])
    return format_table(columns, rows, max_width=44)


def main() -> int:
    """Run the demo; exit 0 when every run got the verdict its injected behaviour calls for."""
    data_dir = _environment()
    from simulator.testing import running_fleet

    profiles = [profile for _, profile, _ in DEMO_RUNS]
    print(f"scope-loadtest demo: {len(DEMO_RUNS)} short runs on an embedded simulated fleet; lake at {data_dir}")
    with running_fleet(instances=len(DEMO_RUNS), orchestrators=len(DEMO_RUNS), profiles=profiles,
                       overrides={"fault_after_s": FAULT_AFTER_S}) as fleet:
        for instance in fleet.instances:
            print(f"  Scope instance {instance.url}  orchestrator {instance.orchestrator_address}  profile {instance.profile}")
        if not os.environ.get("PREFECT_API_URL"):
            print("starting a temporary local Prefect API (15-20 s; set PREFECT_API_URL to use a running server)…")
        from tasks.progress import listen

        with listen(DemoProgress(total=len(DEMO_RUNS))):
            summaries = asyncio.run(_run_all(fleet))
    print()
    print(_summary_table(summaries))
    expected_all = all(_verdict_text(s) == expected for s, (_, _, expected) in zip(summaries, DEMO_RUNS, strict=True))
    from analytics.lake import Lake

    Lake(data_dir).refresh_catalog()
    print()
    print("Query the lake:")
    print('  uv run loadtest sql "select outcome, count(*) from runs group by 1"')
    print('  uv run loadtest sql "select scenario, outcome, failure_category, failure_phase, first_frame_s, fps_steady from runs"')
    print(f"  duckdb -readonly {data_dir / 'catalog.duckdb'}   (views: runs, frames, prompt_switches, coverage_daily, ...)")
    print(f"Evidence of failed runs (Scope log tail, last good / first bad frame): {data_dir / 'artifacts'}")
    print("every run got the verdict its injected behaviour calls for" if expected_all
          else "SOME RUNS DID NOT GET THE EXPECTED VERDICT (see as_expected)")
    return 0 if expected_all else 1


def _verdict_text(summary: dict) -> str:
    """`passed`, `unavailable`, or `failed: <first failed check>` — what the expected column says."""
    if summary["outcome"] == "failed" and summary["checks_failed"]:
        return f"failed: {summary['checks_failed'][0]}"
    return str(summary["outcome"])


if __name__ == "__main__":
    sys.exit(main())
