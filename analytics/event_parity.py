"""Event parity per orchestrator: how often Scope's lifecycle events told a run's whole story.

The per-run audit leaves on each run its events source (`kafka`, `file`, `none`; null on rows older
than the audit), `events_complete` and `events_findings` ("kind: detail"). Here they are counted
per orchestrator over a window of runs (`in_window`: runs with an outcome that started in it):

- audited runs: those on an orchestrator whose events had a source (kafka or file). A run without
  a source says nothing about the events, so it is neither complete nor a finding;
- `parity_ratio` = complete / audited (higher is better; a null completeness is not complete);
- findings per kind: audited runs with at least one finding of the kind (lower is better). Every
  kind of FINDING_KINDS is reported, 0 when absent, for each orchestrator with audited runs, so a
  kind that stops happening shows as 0 rather than as a vanished series; a kind outside the list
  is reported as `unknown` (label values stay a fixed set).

Pure Polars, no I/O. Callers pass the orchestrator view of the runs (analytics/attribution.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from analytics.scores import UNKNOWN, in_window

AUDITED_SOURCES = ("kafka", "file")
FINDING_KINDS = ("missing", "duplicated", "out_of_order", "null_ids", "mismatched_ids", "late",
                 "ttff_disagrees", "fps_disagrees")


def audited_runs(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """The window's runs on an orchestrator whose events came from a source (kafka or file)."""
    return in_window(runs, now=now, window=window).filter(
        pl.col("orchestrator").is_not_null() & pl.col("events_source").is_in(AUDITED_SOURCES))


def event_parity(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """Per orchestrator with audited runs: audited_runs, complete_runs, parity_ratio."""
    counts = audited_runs(runs, now=now, window=window).group_by("orchestrator").agg(
        pl.len().cast(pl.Int64).alias("audited_runs"),
        pl.col("events_complete").fill_null(False).sum().cast(pl.Int64).alias("complete_runs"),
    )
    return counts.with_columns((pl.col("complete_runs") / pl.col("audited_runs")).alias("parity_ratio")).sort(
        "orchestrator")


def finding_kind(finding: pl.Expr) -> pl.Expr:
    """The kind of a "kind: detail" finding (the text before the first colon); `unknown` if not a known kind."""
    kind = finding.str.split_exact(":", 1).struct.field("field_0").str.strip_chars()
    return pl.when(kind.is_in(FINDING_KINDS)).then(kind).otherwise(pl.lit(UNKNOWN))


def event_findings(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """Per orchestrator with audited runs x kind: `runs` with at least one finding of that kind."""
    audited = audited_runs(runs, now=now, window=window)
    found = (audited.select("orchestrator", "run_id", pl.col("events_findings").alias("finding"))
             .explode("finding").filter(pl.col("finding").is_not_null())
             .select("orchestrator", "run_id", finding_kind(pl.col("finding")).alias("kind"))
             .unique().group_by("orchestrator", "kind").agg(pl.len().cast(pl.Int64).alias("runs")))
    every_kind = (audited.select("orchestrator").unique()
                  .join(pl.DataFrame({"kind": FINDING_KINDS}), how="cross"))
    return (every_kind.join(found, on=["orchestrator", "kind"], how="full", coalesce=True)
            .with_columns(pl.col("runs").fill_null(0)).sort("orchestrator", "kind"))
