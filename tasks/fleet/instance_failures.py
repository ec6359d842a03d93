"""A Scope instance that fails to get ready: its failure lands as a run, and it backs off.

`land_instance_failure` lands an assignment whose managed instance could not start as a final
run row: outcome `aborted`, category `harness`, phase `prepare` (the instance's failure, never
the orchestrator's; analytics/attribution.py leaves it out of blacklists and coverage).

The back-off is derived from the lake's runs only (rule 1): a run that failed in the `prepare` phase (the
instance did not start or did not answer /health, before any orchestrator took part) is a
failure of its instance. After n such failures within `INSTANCE_FAILURE_MEMORY`, counted since
the instance's last run that got past `prepare`, the instance waits
min(first_s x 2^(n-1), max_s) from the end of the latest one. A managed instance's own runs
are recorded under their loopback URL, so only the memory window forgets its old failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import polars as pl

from analytics.lake import Lake
from analytics.records import RunRecord, as_utc
from config.settings import Settings
from errors import HarnessError, Phase
from tasks.fleet.planner import Assignment
from tasks.fleet.roster import Orchestrator
from tasks.session.run_record import HARNESS_VERSION
from tasks.session.target import new_run_id, utc_now

INSTANCE_FAILURE_MEMORY = timedelta(hours=1)
PREPARE = "prepare"


def instance_backoff_until(runs: pl.DataFrame, instances: Iterable[str], *, now: datetime, first_s: float,
                           max_s: float) -> dict[str, datetime]:
    """The instances still backing off at ``now``, with when their back-off ends."""
    now = as_utc(now)
    names = list(instances)
    if runs.is_empty() or "scope_instance" not in runs.columns or not names:
        return {}
    phase = pl.col("failure_phase") if "failure_phase" in runs.columns else pl.lit(None, pl.String())
    ended = pl.coalesce("ended_at", "started_at")
    mine = runs.filter(pl.col("scope_instance").is_in(names) & pl.col("outcome").is_not_null()).with_columns(
        (phase == PREPARE).fill_null(False).alias("start_failed"), ended.alias("at"))
    last_good = mine.filter(~pl.col("start_failed")).group_by("scope_instance").agg(pl.col("at").max().alias("good"))
    failures = (
        mine.filter(pl.col("start_failed") & (pl.col("at") > now - INSTANCE_FAILURE_MEMORY))
        .join(last_good, on="scope_instance", how="left")
        .filter(pl.col("good").is_null() | (pl.col("at") > pl.col("good")))
        .group_by("scope_instance").agg(pl.len().alias("n"), pl.col("at").max().alias("last"))
    )
    until = {}
    for name, n, last in failures.iter_rows():
        delay_s = min(first_s * 2 ** min(n - 1, 30), max_s)
        ends = as_utc(last) + timedelta(seconds=delay_s)
        if ends > now:
            until[name] = ends
    return until


def land_instance_failure(lake: Lake, settings: Settings, assignment: Assignment, orchestrator: Orchestrator,
                          error: HarnessError, *, started_at: datetime,
                          prefect_flow_run_id: str | None = None) -> RunRecord:
    """Land the assignment as an `aborted` run that failed in `prepare` for the reason ``error`` gives."""
    scenario = settings.scenario(assignment.scenario)
    record = RunRecord(
        run_id=new_run_id(started_at), state="final", scenario=scenario.name, pipeline=scenario.pipeline,
        pipeline_ids=tuple(scenario.pipeline_ids), mode=scenario.mode, duration_class=scenario.duration_class,
        planned_duration_s=assignment.duration_s, hard_cap_s=scenario.hard_cap_s,
        orchestrator=orchestrator.address, orchestrator_uri=orchestrator.uri, region=orchestrator.region,
        scope_instance=assignment.instance, harness_version=HARNESS_VERSION, started_at=started_at,
        ended_at=utc_now(), outcome="aborted", failure_category=error.category.value,
        failure_phase=(error.phase or Phase.PREPARE).value, failure_reason=str(error),
        input_kind=scenario.input_kind, prompt_pool=scenario.prompt_pool, prefect_flow_run_id=prefect_flow_run_id,
    )
    lake.land_run(record)
    return record
