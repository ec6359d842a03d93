"""Rolling baselines: interpolated P50 and P95 of run timings and steady fps, per series.

A *series* is one metric of one scenario (scope `scenario`, every orchestrator pooled) or of one
orchestrator x scenario (scope `orchestrator_scenario`; runs without an orchestrator only count in
the scenario scope). Windows are half-open by `started_at` (UTC): (now - window_days, now].

Which runs are samples (drift.py uses the same rule, so baselines and drift agree):
- runs that reached a verdict, `passed` or `failed`. A failed run's completed phases are genuine
  measurements (a run that fails its fps check still connected, loaded and showed a first frame),
  and leaving failed runs out would hide the very regressions drift exists to catch: when steady
  fps drops below `min_fps` every run fails, and a passed-only series would go silent instead of
  showing the drop. A phase that did not complete leaves its figure null, so timeouts never enter.
- not failures of category `harness`: the harness's own bug says nothing about the orchestrator.
- not `unavailable` (nothing was measured) nor `aborted` (the harness died; figures untrustworthy).
- a metric's null or non-finite value is no sample; `n` counts the samples of each metric.
- the stream figures (first frame, fps) of a `local` or `headless` run are no sample: they describe
  the Scope box, not an orchestrator (analytics/attribution.py); its connect and load times are.
Series with no sample of a metric in the window have no row for it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from analytics.attribution import orchestrator_view
from analytics.records import BaselineRecord, LakeRecord, as_utc, polars_schema

Direction = Literal["lower", "higher"]
# Which way is better, per run column summarised (the metric names of metrics.md map onto these).
METRIC_DIRECTIONS: dict[str, Direction] = {
    "first_frame_s": "lower", "load_s": "lower", "connect_s": "lower", "fps_steady": "higher",
}
METRICS = tuple(METRIC_DIRECTIONS)
SAMPLE_OUTCOMES = ("passed", "failed")
EXCLUDED_FAILURE_CATEGORIES = ("harness",)
SERIES_KEYS = ("scope", "scenario", "orchestrator")
DEFAULT_WINDOW_DAYS = 7
_RUN_COLUMNS = ("scenario", "orchestrator", "outcome", "failure_category", "started_at")


def _started_at_utc(runs: pl.DataFrame) -> pl.Expr:
    """`started_at` as UTC; naive timestamps are taken to be UTC already (as records.as_utc does)."""
    dtype = runs.schema["started_at"]
    if not isinstance(dtype, pl.Datetime):
        raise ValueError(f"runs.started_at must be a datetime column, got {dtype}")
    column = pl.col("started_at")
    if dtype.time_zone is None:
        return column.dt.replace_time_zone("UTC")
    return column.dt.convert_time_zone("UTC")


def _require_columns(runs: pl.DataFrame, metrics: tuple[str, ...]) -> None:
    """Refuse a runs frame without the columns the samples are drawn from."""
    missing = [c for c in (*_RUN_COLUMNS, *metrics) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs frame lacks columns {missing}; pass the lake's runs view (Lake.runs_frame())")


def metric_samples(runs: pl.DataFrame, *, since: dt.datetime, until: dt.datetime,
                   metrics: tuple[str, ...] = METRICS) -> pl.DataFrame:
    """Usable samples of runs started in (since, until], long format, once per series scope.

    Columns: scope, scenario, orchestrator (null in scope `scenario`), metric, value, started_at.
    """
    _require_columns(runs, metrics)
    runs = orchestrator_view(runs)  # a local or headless run's stream says nothing about an orchestrator
    since, until = as_utc(since), as_utc(until)
    started_at = _started_at_utc(runs)
    usable = runs.lazy().filter(
        pl.col("outcome").is_in(SAMPLE_OUTCOMES),
        pl.col("failure_category").is_null() | ~pl.col("failure_category").is_in(EXCLUDED_FAILURE_CATEGORIES),
        started_at > since, started_at <= until,
    ).select(
        pl.col("scenario").cast(pl.String), pl.col("orchestrator").cast(pl.String),
        started_at.alias("started_at"), *(pl.col(m).cast(pl.Float64) for m in metrics),
    ).unpivot(index=["scenario", "orchestrator", "started_at"], on=list(metrics),
              variable_name="metric", value_name="value"
    ).filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    by_scenario = usable.with_columns(scope=pl.lit("scenario"), orchestrator=pl.lit(None, dtype=pl.String))
    by_pair = usable.filter(pl.col("orchestrator").is_not_null()).with_columns(
        scope=pl.lit("orchestrator_scenario"))
    columns = [*SERIES_KEYS, "metric", "value", "started_at"]
    return pl.concat([by_scenario.select(columns), by_pair.select(columns)]).collect()


def conform(frame: pl.DataFrame, model: type[LakeRecord]) -> pl.DataFrame:
    """The frame with exactly the model's columns, in its order, cast to its lake schema."""
    schema = polars_schema(model)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def computation_columns(now: dt.datetime) -> dict[str, pl.Expr]:
    """`computed_at` and its UTC `date` partition, as literal columns."""
    return {"computed_at": pl.lit(now, dtype=pl.Datetime("us", "UTC")), "date": pl.lit(now.date(), dtype=pl.Date)}


def series_order() -> list[pl.Expr]:
    """Stable row order: scenario scope first, then scenario, orchestrator, metric."""
    return [pl.col("scope") != "scenario", *(pl.col(c) for c in ("scenario", "orchestrator", "metric"))]


def compute_baselines(runs: pl.DataFrame, *, now: dt.datetime,
                      window_days: int = DEFAULT_WINDOW_DAYS) -> pl.DataFrame:
    """Rolling P50/P95 (linear interpolation) and sample counts per series over the last `window_days`.

    `runs` is the lake's runs view (Lake.runs_frame()); the result has BaselineRecord's columns.
    """
    if window_days <= 0:
        raise ValueError(f"window_days must be positive, got {window_days}")
    now = as_utc(now)
    samples = metric_samples(runs, since=now - dt.timedelta(days=window_days), until=now)
    stats = samples.group_by([*SERIES_KEYS, "metric"]).agg(
        p50=pl.col("value").quantile(0.5, "linear"),
        p95=pl.col("value").quantile(0.95, "linear"),
        n=pl.len(),
    ).with_columns(window_days=pl.lit(window_days), **computation_columns(now))
    return conform(stats, BaselineRecord).sort(series_order(), nulls_last=False)


def baseline_records(baselines: pl.DataFrame) -> list[BaselineRecord]:
    """The rows of compute_baselines as records, ready for Lake.land("baselines", ...)."""
    return [BaselineRecord(**row) for row in baselines.iter_rows(named=True)]
