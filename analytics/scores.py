"""Pass rates with their Wilson interval, cold-start frequency, failure breakdown and orchestrator scores.

Pure Polars over the lake's `runs` view (one row per run, its final state). Every figure is
computed over a window of runs *started* in `(now - window, now]`; runs still without an
outcome are left out.

Pass rate: passed / (passed + failed) per orchestrator x pipeline. `unavailable` (no capacity,
not the orchestrator's fault) and `aborted` (the harness's fault) runs are not verdicts on the
orchestrator and count in neither. The Wilson 95 % score interval says how far the rate can be
trusted: 1 passed of 1 is a lower bound of 0.21, not 100 %. Below `MIN_RUNS_TO_RANK` verdicts a
row says "insufficient evidence" (`sufficient_evidence = False`) and gets no score.

Orchestrator score (0-1, higher is better), per orchestrator x pipeline:

    score = wilson_low x (0.5 + 0.25 x latency_score + 0.25 x fps_score)

- `wilson_low`, the pessimistic pass rate, dominates: an orchestrator that fails often cannot make
  up for it by being fast, and one with few runs is not ranked above a proven one.
- `latency_score` = min(1, median over its passed runs of scenario_p50(first_frame_s) / first_frame_s):
  1 at or below the scenario's typical first-frame time, 0.5 when twice as slow.
- `fps_score` = min(1, median over its passed runs of fps_steady / scenario_p50(fps_steady)).
- The scenario P50s are the scenario baselines over the same window (`compute_baselines`, every
  orchestrator pooled), so orchestrators are compared on equal work whatever mix of scenarios
  each one ran. Only passed runs feed an orchestrator's components (failures already weigh through
  `wilson_low`). A component without data counts as 0: no evidence is not good evidence.
- The score is null below `MIN_RUNS_TO_RANK` verdicts ("insufficient evidence").

Cold start: a run whose pipeline load took longer than `cold_start_threshold_s` (the run's own
`cold_start` flag, else `load_s` against the threshold); its frequency per orchestrator is
cold starts / runs that finished loading.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from analytics.attribution import orchestrator_view
from analytics.baselines import compute_baselines
from analytics.records import ScoreRecord, as_utc

WILSON_Z = 1.959963984540054  # two-sided 95 %: the 97.5th percentile of the standard normal
MIN_RUNS_TO_RANK = 10  # quality.md: below 10 verdicts, "insufficient evidence" instead of a rank
DEFAULT_WINDOW_DAYS = 7
DEFAULT_COLD_START_S = 60.0  # Thresholds.cold_start_threshold_s
INSUFFICIENT_EVIDENCE = "insufficient evidence"
SCORE_BASE, LATENCY_WEIGHT, FPS_WEIGHT = 0.5, 0.25, 0.25
VERDICTS = ("passed", "failed")
UNKNOWN = "unknown"  # the label of a missing orchestrator, category or phase


def wilson_interval(passed: int, runs: int, *, z: float = WILSON_Z) -> tuple[float, float] | None:
    """The Wilson score interval (low, high) of a pass rate; None without runs."""
    if runs <= 0:
        return None
    p, n = passed / runs, runs
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _wilson_exprs(passed: str, runs: str, *, z: float = WILSON_Z) -> list[pl.Expr]:
    """`wilson_low` and `wilson_high` columns: `wilson_interval` as Polars expressions (null at 0 runs)."""
    n = pl.when(pl.col(runs) > 0).then(pl.col(runs).cast(pl.Float64))
    p = pl.col(passed) / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)).sqrt() / denominator
    return [(centre - half).clip(0.0, 1.0).alias("wilson_low"), (centre + half).clip(0.0, 1.0).alias("wilson_high")]


def in_window(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """Runs with an outcome that started in (now - window, now]."""
    end = as_utc(now)
    started = pl.col("started_at")
    return runs.filter(pl.col("outcome").is_not_null() & (started > end - window) & (started <= end))


def pass_rates(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """Per orchestrator x pipeline: runs (verdicts), passed, failed, pass_rate, Wilson bounds, sufficient_evidence."""
    verdicts = in_window(orchestrator_view(runs), now=now, window=window).filter(pl.col("outcome").is_in(VERDICTS))
    counts = verdicts.group_by("orchestrator", "pipeline").agg(
        pl.len().cast(pl.Int64).alias("runs"),
        (pl.col("outcome") == "passed").sum().cast(pl.Int64).alias("passed"),
        (pl.col("outcome") == "failed").sum().cast(pl.Int64).alias("failed"),
    )
    return counts.with_columns(
        (pl.col("passed") / pl.col("runs")).alias("pass_rate"),
        *_wilson_exprs("passed", "runs"),
        (pl.col("runs") >= MIN_RUNS_TO_RANK).alias("sufficient_evidence"),
    ).sort("orchestrator", "pipeline", nulls_last=True)


def cold_starts(runs: pl.DataFrame, *, now: datetime, window: timedelta,
                threshold_s: float = DEFAULT_COLD_START_S) -> pl.DataFrame:
    """Per orchestrator: loads (runs that finished loading), cold_starts, cold_start_ratio."""
    flagged = in_window(runs, now=now, window=window).with_columns(
        pl.coalesce(pl.col("cold_start"), pl.col("load_s") > threshold_s).alias("cold")
    ).filter(pl.col("cold").is_not_null())
    counts = flagged.group_by("orchestrator").agg(
        pl.len().cast(pl.Int64).alias("loads"), pl.col("cold").sum().cast(pl.Int64).alias("cold_starts")
    )
    return counts.with_columns((pl.col("cold_starts") / pl.col("loads")).alias("cold_start_ratio")).sort(
        "orchestrator", nulls_last=True
    )


def failure_breakdown(runs: pl.DataFrame, *, now: datetime, window: timedelta) -> pl.DataFrame:
    """Failed runs per category x phase x pipeline (a missing category or phase reads `unknown`)."""
    failed = in_window(runs, now=now, window=window).filter(pl.col("outcome") == "failed")
    labelled = failed.with_columns(
        pl.col("failure_category").fill_null(UNKNOWN).alias("category"),
        pl.col("failure_phase").fill_null(UNKNOWN).alias("phase"),
    )
    return (labelled.group_by("category", "phase", "pipeline").agg(pl.len().cast(pl.Int64).alias("failures"))
            .sort("failures", "category", "phase", "pipeline", descending=[True, False, False, False]))


def _scenario_p50s(baselines: pl.DataFrame) -> pl.DataFrame:
    """Per scenario: the baseline P50 of first_frame_s and fps_steady (null when it had no sample)."""
    rows = baselines.filter((pl.col("scope") == "scenario") & pl.col("metric").is_in(["first_frame_s", "fps_steady"]))
    return rows.group_by("scenario").agg(
        pl.col("p50").filter(pl.col("metric") == "first_frame_s").first().alias("baseline_first_frame_s"),
        pl.col("p50").filter(pl.col("metric") == "fps_steady").first().alias("baseline_fps_steady"),
    )


def _quality_components(window_runs: pl.DataFrame, baselines: pl.DataFrame) -> pl.DataFrame:
    """Per orchestrator x pipeline: latency_score and fps_score of its passed runs against the scenario P50s."""
    passed = window_runs.filter(pl.col("outcome") == "passed").join(_scenario_p50s(baselines), on="scenario",
                                                                   how="left")
    positive_ff = pl.when(pl.col("first_frame_s") > 0).then(pl.col("first_frame_s"))
    positive_baseline_fps = pl.when(pl.col("baseline_fps_steady") > 0).then(pl.col("baseline_fps_steady"))
    relative = passed.with_columns(
        (pl.col("baseline_first_frame_s") / positive_ff).alias("latency_ratio"),
        (pl.col("fps_steady") / positive_baseline_fps).alias("fps_ratio"),
    )
    return relative.group_by("orchestrator", "pipeline").agg(
        pl.col("latency_ratio").median().clip(upper_bound=1.0).alias("latency_score"),
        pl.col("fps_ratio").median().clip(upper_bound=1.0).alias("fps_score"),
    )


def compute_scores(runs: pl.DataFrame, *, now: datetime, window_days: int = DEFAULT_WINDOW_DAYS) -> pl.DataFrame:
    """ScoreRecord rows (as a frame) per orchestrator x pipeline; best score first, unranked last."""
    window = timedelta(days=window_days)
    window_runs = in_window(orchestrator_view(runs), now=now, window=window).filter(
        pl.col("orchestrator").is_not_null())
    rates = pass_rates(window_runs, now=now, window=window)
    baselines = compute_baselines(runs, now=now, window_days=window_days)
    scored = rates.join(_quality_components(window_runs, baselines), on=["orchestrator", "pipeline"], how="left")
    quality = (SCORE_BASE + LATENCY_WEIGHT * pl.col("latency_score").fill_null(0.0)
               + FPS_WEIGHT * pl.col("fps_score").fill_null(0.0))
    computed_at = as_utc(now)
    frame = scored.with_columns(
        pl.when(pl.col("sufficient_evidence")).then(pl.col("wilson_low") * quality).alias("score"),
        pl.lit(computed_at).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
        pl.lit(window_days, dtype=pl.Int64).alias("window_days"),
        pl.lit(computed_at.date()).alias("date"),
    )
    ordered = frame.sort(["score", "wilson_low", "orchestrator", "pipeline"],
                         descending=[True, True, False, False], nulls_last=True)
    return ordered.select(list(ScoreRecord.model_fields))


def score_records(scores: pl.DataFrame) -> list[ScoreRecord]:
    """The rows of a `compute_scores` frame as ScoreRecord models (for Lake.land)."""
    return [ScoreRecord.model_validate(row) for row in scores.to_dicts()]


def evidence_label(row: dict) -> str:
    """How a scores row reads in a table: its score, or "insufficient evidence" below the ranking floor."""
    if not row.get("sufficient_evidence"):
        return INSUFFICIENT_EVIDENCE
    score = row.get("score")
    return "-" if score is None else f"{score:.3f}"
