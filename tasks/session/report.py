"""The edges of `run-scenario`: resolve its parameters, sweep orphans, publish its verdict."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from analytics.lake import Lake
from analytics.records import RunRecord
from config.scenarios import Scenario
from config.settings import Settings, load_settings
from tasks.fleet.roster import find_orchestrator, orchestrator_key
from tasks.session.target import RunTarget

SUMMARY_FIGURES = (
    "media_driver", "media_path", "connect_s", "load_s", "first_frame_s", "stream_s", "fps_steady", "fps_p50",
    "fps_p05", "fps_received", "freeze_count", "frame_interval_p95_ms", "packets_lost", "codec",
    "frames_sampled", "frames_valid", "prompt_switches", "prompt_switches_evaluated",
    "prompt_switches_responded", "prompt_latency_p50_s", "vram_peak_mb", "vram_growth_mb", "cold_start",
    "tick_lag_p95_ms", "ticks_missed", "events_source", "events_seen", "events_complete",
)


@dataclass(frozen=True)
class RunInputs:
    """What a run needs, resolved from the flow's plain parameters."""

    settings: Settings
    scenario: Scenario
    target: RunTarget
    lake: Lake


def resolve_run_inputs(scenario: str, scope_url: str, orchestrator: str | None, config: str | None) -> RunInputs:
    """Load the config, find the scenario and the orchestrator the instance is pinned to."""
    settings = load_settings(config)
    lake = Lake.from_env()
    return RunInputs(
        settings=settings,
        scenario=settings.scenario(scenario),
        target=resolve_target(settings, scope_url, orchestrator, lake=lake),
        lake=lake,
    )


def resolve_target(settings: Settings, scope_url: str, orchestrator: str | None, *,
                   lake: Lake | None = None) -> RunTarget:
    """Attribute the run: the named orchestrator, else the instance's; its URI and region from discovery.

    The address is stored lowercase; URI and region come from the lake's latest snapshot of that
    orchestrator, else from the static config.
    """
    url = scope_url.rstrip("/")
    instance = next((i for i in settings.instances if i.url and i.base_url() == url), None)
    address = orchestrator or (instance.orchestrator if instance else None)
    known = find_orchestrator(lake, settings, address) if address else None
    return RunTarget(
        scope_url=url,
        orchestrator=orchestrator_key(address) if address else None,
        orchestrator_uri=known.uri if known else None,
        region=known.region if known else None,
        scope_instance=instance.name if instance else url,
    )


@task(name="sweep-orphans", cache_policy=NO_CACHE)
def sweep_orphan_runs(lake: Lake) -> list[str]:
    """Turn runs that started but never finished (harness killed) into `aborted`."""
    return lake.sweep_orphans()


SUMMARY_KEYS = (
    "run_id", "scenario", "orchestrator", "scope_instance", "outcome", "failure_category", "failure_phase",
    "failure_reason", "checks_failed", "checks_skipped", "events_findings", "interrupted_by", "artifacts_path",
    *SUMMARY_FIGURES,
)
_LIST_KEYS = ("checks_failed", "checks_skipped", "events_findings")


def run_summary(record: RunRecord) -> dict:
    """The one summary object of a run (CLI --json, flow result, demo table)."""
    return summary_of_row({key: getattr(record, key, None) for key in SUMMARY_KEYS})


def summary_of_row(row: dict) -> dict:
    """The same summary from a `runs` row read back from the lake (missing figures are None)."""
    summary = {key: row.get(key) for key in SUMMARY_KEYS}
    return summary | {key: list(summary[key] or []) for key in _LIST_KEYS}


def run_markdown(summary: dict) -> str:
    """The verdict and key figures as markdown for the Prefect UI."""
    lines = [
        f"## {summary['scenario']}: **{str(summary['outcome']).upper()}**",
        "",
        f"run `{summary['run_id']}` on orchestrator `{summary['orchestrator'] or 'unknown'}` "
        f"via `{summary['scope_instance']}`",
        "",
    ]
    if summary["outcome"] != "passed":
        lines += [
            f"- failure: {summary['failure_category']} / {summary['failure_phase']}: {summary['failure_reason']}",
            f"- checks failed: {', '.join(summary['checks_failed']) or '-'}",
            f"- evidence: `{summary['artifacts_path']}`",
            "",
        ]
    if summary.get("checks_skipped"):
        lines += ["checks that could not run:", *[f"- {item}" for item in summary["checks_skipped"]], ""]
    if summary.get("events_findings"):
        lines += ["Scope's events did not tell the whole story:",
                  *[f"- {item}" for item in summary["events_findings"]], ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(summary.get(name))} |" for name in SUMMARY_FIGURES]
    return "\n".join(lines)


@task(name="publish-run-artifact", cache_policy=NO_CACHE)
async def publish_run_artifact(record: RunRecord) -> dict:
    """Create the run's markdown artifact in Prefect; return the summary."""
    summary = run_summary(record)
    await acreate_markdown_artifact(
        markdown=run_markdown(summary),
        key=_artifact_key(record.scenario),
        description=f"{record.scenario}: {record.outcome}",
    )
    return summary


def flow_state(summary: dict) -> State:
    """The flow run's final state carries the verdict, so the Prefect UI's history is the run history."""
    outcome, reason = summary["outcome"], summary.get("failure_reason") or ""
    if outcome == "passed":
        return Completed(message="passed", data=summary)
    if outcome == "unavailable":
        return Completed(name="Unavailable", message=reason, data=summary)
    if outcome == "aborted":
        return Failed(name="Aborted", message=f"aborted: {reason}", data=summary)
    return Failed(message=f"{summary.get('failure_category')}/{summary.get('failure_phase')}: {reason}",
                  data=summary)


async def run_summary_of(state: State) -> dict:
    """The run summary a `run-scenario` state carries (failed runs too); re-raise what crashed it."""
    result = await state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def _artifact_key(scenario: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "run-" + "".join(c if c.isalnum() else "-" for c in scenario.lower())


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)
