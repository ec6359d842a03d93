"""Drift: did a series' recent runs get worse than its baseline? (quality.md, "Derived figures")

Windows, by `started_at` (UTC), half-open:
    recent   = (now - recent_days, now]                                 default: the last 24 h
    baseline = (now - recent_days - baseline_days, now - recent_days]   default: the 7 days before
Series and samples are those of baselines.py (scenario, and orchestrator x scenario; runs that
reached a verdict, harness failures excluded). The baseline P50 here is over the baseline window
only, so the recent samples are never compared against themselves.

A series *regressed* when both hold:
- its recent median is more than `threshold` worse than the baseline P50: change_ratio =
  recent_median / baseline_p50 - 1 for lower-is-better metrics and its negative for fps, so a
  positive change_ratio is always worse (metrics.md `drift_ratio`);
- a one-sided Mann-Whitney U test on the raw samples (recent worse than baseline) gives p < alpha.
The ratio alone false-alarms often at realistic noise (a median of 5 lognormal samples moves
20 % easily); the test alone flags changes too small to matter. *Improved* mirrors the rule the
other way. Fewer than `min_recent` recent or `min_baseline` baseline samples is
`insufficient_data`; a baseline P50 of 0 leaves the ratio undefined (null) and the verdict stable.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from analytics.baselines import (
    METRIC_DIRECTIONS,
    SERIES_KEYS,
    Direction,
    computation_columns,
    conform,
    metric_samples,
    series_order,
)
from analytics.records import DriftRecord, DriftVerdict, as_utc
from analytics.stats import mann_whitney_u, quantile

SCOPE_LABELS = {"scenario": "scenario", "orchestrator_scenario": "orchestrator × scenario"}


@dataclass(frozen=True)
class DriftRule:
    """The drift rule's parameters (quality.md defaults)."""

    baseline_days: int = 7
    recent_days: int = 1
    threshold: float = 0.2
    alpha: float = 0.01
    min_recent: int = 5
    min_baseline: int = 10

    def __post_init__(self) -> None:
        if self.baseline_days <= 0 or self.recent_days <= 0:
            raise ValueError("drift windows must be at least one day long")
        if self.threshold < 0 or not 0 < self.alpha < 1:
            raise ValueError(f"need threshold >= 0 and 0 < alpha < 1, got {self.threshold}, {self.alpha}")
        if self.min_recent < 1 or self.min_baseline < 1:
            raise ValueError("minimum sample counts must be at least 1")

    def describe(self) -> str:
        """The rule in one sentence."""
        recent = "24 h" if self.recent_days == 1 else f"{self.recent_days} days"
        return (f"A series regressed when its median over the last {recent} is more than "
                f"{self.threshold * 100:g} % worse than its P50 over the {self.baseline_days} days before and a "
                f"one-sided Mann-Whitney U test on the raw samples gives p < {self.alpha:g}; at least "
                f"{self.min_recent} recent and {self.min_baseline} baseline samples, else insufficient data.")


DEFAULT_DRIFT_RULE = DriftRule()


@dataclass(frozen=True)
class DriftJudgement:
    """The verdict on one series and the figures behind it."""

    baseline_p50: float | None
    recent_median: float | None
    change_ratio: float | None
    p_value: float | None
    n_recent: int
    n_baseline: int
    verdict: DriftVerdict


def change_ratio(recent_median: float | None, baseline_p50: float | None, direction: Direction) -> float | None:
    """Relative change of the recent median against the baseline P50, positive = worse."""
    if recent_median is None or baseline_p50 is None or baseline_p50 == 0:
        return None
    ratio = recent_median / baseline_p50 - 1.0
    return ratio if direction == "lower" else -ratio


def judge_series(recent: np.ndarray, baseline: np.ndarray, *, direction: Direction,
                 rule: DriftRule = DEFAULT_DRIFT_RULE) -> DriftJudgement:
    """Apply the drift rule to one series' recent and baseline samples."""
    baseline_p50, recent_median = quantile(baseline, 0.5), quantile(recent, 0.5)
    change = change_ratio(recent_median, baseline_p50, direction)
    figures = dict(baseline_p50=baseline_p50, recent_median=recent_median, change_ratio=change,
                   n_recent=int(recent.size), n_baseline=int(baseline.size))
    if recent.size < rule.min_recent or baseline.size < rule.min_baseline:
        return DriftJudgement(**figures, p_value=None, verdict="insufficient_data")
    # "Worse" is larger for latencies and smaller for fps.
    worse, better = ("greater", "less") if direction == "lower" else ("less", "greater")
    p_worse = mann_whitney_u(recent, baseline, alternative=worse).p_value
    verdict: DriftVerdict = "stable"
    if change is not None and change > rule.threshold and p_worse < rule.alpha:
        verdict = "regressed"
    elif (change is not None and change < -rule.threshold
          and mann_whitney_u(recent, baseline, alternative=better).p_value < rule.alpha):
        verdict = "improved"
    return DriftJudgement(**figures, p_value=p_worse, verdict=verdict)


def _judged_schema() -> dict[str, pl.DataType]:
    """Schema of the per-series rows before the computation columns are added."""
    return {"scope": pl.String(), "scenario": pl.String(), "orchestrator": pl.String(), "metric": pl.String(),
            "baseline_p50": pl.Float64(), "recent_median": pl.Float64(), "change_ratio": pl.Float64(),
            "p_value": pl.Float64(), "n_recent": pl.Int64(), "n_baseline": pl.Int64(), "verdict": pl.String()}


def compute_drift(runs: pl.DataFrame, *, now: dt.datetime, baseline_days: int = 7, recent_days: int = 1,
                  threshold: float = 0.2, alpha: float = 0.01, min_recent: int = 5,
                  min_baseline: int = 10) -> pl.DataFrame:
    """The drift verdict of every series with samples in either window; DriftRecord's columns."""
    rule = DriftRule(baseline_days, recent_days, threshold, alpha, min_recent, min_baseline)
    now = as_utc(now)
    recent_since = now - dt.timedelta(days=rule.recent_days)
    samples = metric_samples(runs, since=recent_since - dt.timedelta(days=rule.baseline_days), until=now)
    grouped = samples.group_by([*SERIES_KEYS, "metric"]).agg(
        recent=pl.col("value").filter(pl.col("started_at") > recent_since),
        baseline=pl.col("value").filter(pl.col("started_at") <= recent_since),
    )
    rows = []
    for series in grouped.iter_rows(named=True):
        judged = judge_series(np.asarray(series["recent"], dtype=np.float64),
                              np.asarray(series["baseline"], dtype=np.float64),
                              direction=METRIC_DIRECTIONS[series["metric"]], rule=rule)
        rows.append({key: series[key] for key in (*SERIES_KEYS, "metric")} | asdict(judged))
    frame = pl.DataFrame(rows, schema=_judged_schema()).with_columns(**computation_columns(now))
    return conform(frame, DriftRecord).sort(series_order(), nulls_last=False)


def drift_records(drift: pl.DataFrame) -> list[DriftRecord]:
    """The rows of compute_drift as records, ready for Lake.land("drift", ...)."""
    return [DriftRecord(**row) for row in drift.iter_rows(named=True)]


# --- reports ---------------------------------------------------------------------------------------

def _finite(value: float | None) -> float | None:
    """The value, or None when it is missing or not finite (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def _series_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One series of the drift frame as a JSON-ready dict."""
    change = _finite(row["change_ratio"])
    return {
        "scope": row["scope"], "scenario": row["scenario"], "orchestrator": row["orchestrator"],
        "metric": row["metric"], "better": METRIC_DIRECTIONS.get(row["metric"]),
        "baseline_p50": _finite(row["baseline_p50"]), "recent_median": _finite(row["recent_median"]),
        "change_ratio": change, "change_percent": None if change is None else round(100 * change, 2),
        "p_value": _finite(row["p_value"]), "n_recent": row["n_recent"], "n_baseline": row["n_baseline"],
    }


def _with_verdict(drift: pl.DataFrame, verdict: str) -> list[dict[str, Any]]:
    """Series of one verdict, largest change first."""
    rows = drift.filter(pl.col("verdict") == verdict).sort(
        "change_ratio", descending=verdict != "improved", nulls_last=True)
    return [_series_entry(row) for row in rows.iter_rows(named=True)]


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    """Rows per value of `column`, sorted by value."""
    grouped = frame.group_by(column).len().sort(column)
    return {str(key): int(n) for key, n in grouped.iter_rows()}


def drift_report_json(drift: pl.DataFrame, *, rule: DriftRule = DEFAULT_DRIFT_RULE) -> dict[str, Any]:
    """The drift frame as a JSON-ready report: regressions first, then insufficient data counts.

    Pass the rule compute_drift used; the frame does not carry it.
    """
    computed = drift["computed_at"].max() if drift.height else None
    verdicts = _counts(drift, "verdict")
    insufficient = drift.filter(pl.col("verdict") == "insufficient_data")
    return {
        "computed_at": computed.isoformat() if computed is not None else None,
        "rule": asdict(rule) | {"description": rule.describe()},
        "summary": {"series": drift.height} | {v: verdicts.get(v, 0) for v in
                                                ("regressed", "improved", "stable", "insufficient_data")},
        "regressions": _with_verdict(drift, "regressed"),
        "insufficient_data": {"series": insufficient.height, "by_metric": _counts(insufficient, "metric"),
                              "by_scope": _counts(insufficient, "scope")},
        "improvements": _with_verdict(drift, "improved"),
    }


def _cell(text: object) -> str:
    """A markdown table cell: pipes escaped."""
    return str(text).replace("|", "\\|")


def _number(value: float | None) -> str:
    """A figure with 3 significant digits, or a dash."""
    return "–" if value is None else f"{value:.3g}"


def _table(entries: list[dict[str, Any]], word: str, *, with_p: bool) -> list[str]:
    """Markdown table of regressions or improvements (the stored p-value tests "worse")."""
    header = ["scope", "scenario", "orchestrator", "metric", "baseline P50", "recent median", "change",
              *(["p-value"] if with_p else []), "n recent / baseline"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        change = "–" if e["change_ratio"] is None else f"{abs(e['change_percent']):.1f} % {word}"
        p_value = ["–" if e["p_value"] is None else f"{e['p_value']:.2g}"] if with_p else []
        cells = [SCOPE_LABELS.get(e["scope"], e["scope"]), e["scenario"], e["orchestrator"] or "all",
                 f"{e['metric']} ({e['better']} is better)", _number(e["baseline_p50"]),
                 _number(e["recent_median"]), change, *p_value, f"{e['n_recent']} / {e['n_baseline']}"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def drift_report_markdown(drift: pl.DataFrame, *, rule: DriftRule = DEFAULT_DRIFT_RULE) -> str:
    """The drift frame as a markdown report: regressions first, then insufficient data counts."""
    report = drift_report_json(drift, rule=rule)
    summary = report["summary"]
    lines = ["# Drift report", "", f"Computed at {report['computed_at'] or '–'}. {rule.describe()}", "",
             f"**{summary['regressed']} regressed**, {summary['improved']} improved, {summary['stable']} stable, "
             f"{summary['insufficient_data']} insufficient data ({summary['series']} series).",
             "", "## Regressions", ""]
    lines += _table(report["regressions"], "worse", with_p=True) if report["regressions"] else ["No regressions."]
    insufficient = report["insufficient_data"]
    lines += ["", "## Insufficient data", ""]
    if insufficient["series"]:
        by_metric = ", ".join(f"{m} {n}" for m, n in insufficient["by_metric"].items())
        by_scope = ", ".join(f"{SCOPE_LABELS.get(s, s)} {n}" for s, n in insufficient["by_scope"].items())
        lines.append(f"{insufficient['series']} series. By metric: {by_metric}. By scope: {by_scope}.")
    else:
        lines.append("None.")
    if report["improvements"]:
        lines += ["", "## Improvements", "", *_table(report["improvements"], "better", with_p=False)]
    return "\n".join(lines) + "\n"
