"""What a run says about its orchestrator: the one attribution rule for coverage, blacklists and scores.

A run is evidence about the orchestrator it was assigned only where the orchestrator took part
(quality.md, "The media path, and what may be attributed to an orchestrator"):

- A failure counts against the orchestrator (`against_orchestrator`) when it happened from the
  `connect` phase on and its category is not `harness`. A failure in `prepare` (the Scope
  instance and the harness getting ready), or with no phase at all, never reached the
  orchestrator. On a `local` or `headless` media path only `connect` and `load` failures count:
  those calls are proxied to the orchestrator, everything after them ran on the Scope box.
- A run is a verdict on the orchestrator's streaming (`orchestrator_verdict`, `passed` or
  `failed`) when it passed, or failed against the orchestrator, on the `relay` path. Only such
  runs cover a scenario or enter a pass ratio. Rows landed before `media_path` existed (null)
  are taken as they were counted then.
- A passed run always ends a failure streak: the orchestrator did its part in it.

Pure Polars, no I/O: `with_attribution` adds the columns to a runs frame.
"""

from __future__ import annotations

import polars as pl

# Phases in which the orchestrator takes part (quality.md's taxonomy after `prepare`).
ORCHESTRATOR_PHASES = ("connect", "load", "start", "stream", "cleanup")
# The calls a local or headless session still proxies to the orchestrator.
PROXIED_PHASES = ("connect", "load")
# Media paths on which the stream never went through the orchestrator.
LOCAL_MEDIA_PATHS = ("local", "headless")
NOT_THE_ORCHESTRATORS = ("harness",)
# Columns the rule reads beyond `outcome`; a frame without them is read as all null.
ATTRIBUTION_COLUMNS = ("failure_category", "failure_phase", "media_path")
AGAINST = "against_orchestrator"
VERDICT = "orchestrator_verdict"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# The same rule in SQL over the runs' columns, for the relay path (where every phase counts): a
# final row that is a verdict on its orchestrator's streaming (the leaderboard's jobs, the outbox).
RELAY_VERDICT_SQL = (
    "media_path = 'relay' AND NOT coalesce(generated, false) AND orchestrator IS NOT NULL AND "
    f"(outcome = 'passed' OR (outcome = 'failed' AND failure_phase IN ({_sql_list(ORCHESTRATOR_PHASES)}) "
    f"AND coalesce(failure_category, '') NOT IN ({_sql_list(NOT_THE_ORCHESTRATORS)})))"
)


def with_attribution(runs: pl.DataFrame) -> pl.DataFrame:
    """The runs with `against_orchestrator` (bool) and `orchestrator_verdict` (passed/failed/null) added."""
    missing = [pl.lit(None, pl.String()).alias(name) for name in ATTRIBUTION_COLUMNS if name not in runs.columns]
    runs = runs.with_columns(missing) if missing else runs
    outcome, phase, media = pl.col("outcome"), pl.col("failure_phase"), pl.col("media_path")
    local = media.is_in(LOCAL_MEDIA_PATHS).fill_null(False)
    phase_counts = pl.when(local).then(phase.is_in(PROXIED_PHASES)).otherwise(phase.is_in(ORCHESTRATOR_PHASES))
    against = ((outcome == "failed") & phase_counts & ~pl.col("failure_category").is_in(NOT_THE_ORCHESTRATORS)
               .fill_null(False)).fill_null(False)
    verdict = (pl.when(local).then(None)
               .when(outcome == "passed").then(pl.lit("passed"))
               .when(against).then(pl.lit("failed")))
    return runs.with_columns(against.alias(AGAINST), verdict.cast(pl.String()).alias(VERDICT))


# Figures of a run's stream: on a local or headless path they describe the Scope box.
STREAM_FIGURES = (
    "first_frame_s", "stream_s", "fps_steady", "fps_p50", "fps_p05", "fps_received", "fps_received_p50",
    "fps_received_p05", "freeze_count", "freeze_total_s", "freeze_s", "black_s", "stall_count", "stall_s",
    "frame_interval_p50_ms", "frame_interval_p95_ms", "frame_interval_max_ms", "prompt_latency_p50_s",
    "prompt_switches", "prompt_switches_responded", "prompt_switches_evaluated",
)


def orchestrator_view(runs: pl.DataFrame) -> pl.DataFrame:
    """The runs as evidence about orchestrators: what a local or headless run says of its stream removed.

    On those paths the stream figures become null and a verdict the orchestrator took no part in
    (a pass, or a failure after `load`) becomes a null outcome, so baselines, drift, scores, pass
    ratios and gauges never see them; `connect_s`, `load_s` and connect/load failures stay."""
    attributed = with_attribution(runs)
    local = pl.col("media_path").is_in(LOCAL_MEDIA_PATHS).fill_null(False)
    no_verdict = local & pl.col("outcome").is_in(("passed", "failed")) & ~pl.col(AGAINST)
    nulled = [pl.when(local).then(None).otherwise(pl.col(name)).alias(name)
              for name in STREAM_FIGURES if name in attributed.columns]
    outcome = pl.when(no_verdict).then(None).otherwise(pl.col("outcome")).alias("outcome")
    return attributed.with_columns(*nulled, outcome).drop(AGAINST, VERDICT)
