"""The gauge families of metrics.md, built from one analysis of the lake.

Why gauges, never counters: the Pushgateway neither sums nor expires, so every figure is recomputed
from the lake (the only state) at each analysis and pushed whole with PUT under one grouping key.
A restart, a second harness or an ad-hoc run then cannot reset or overwrite history.

`analyze_runs` computes every figure from the `runs` view (plus the leaderboard score table, which
the caller computes from the lake and passes in); `build_registry` turns it into a fresh
`CollectorRegistry` holding exactly the families of `FAMILIES` (the table of metrics.md).

Label conventions:
- `window` is `24h` or `7d` (runs started in the last 24 hours / 7 days).
- A missing orchestrator, category or phase is labelled `unknown`.
- `orchestrators{status}` folds coverage's statuses onto metrics.md's three: `blacklisted`,
  `unavailable` (backing off after a no-capacity run) and `active` (everything else, including
  cooling down between runs and done for today); each of the three is always present, 0 when empty.
- `cold_start_ratio` and the `orchestrator_*` baselines cover the 7-day window (no window label).
- `budget_seconds`, `coverage_ratio` and `orchestrators` are for today (UTC).
- `last_run_timestamp_seconds` is the end (else start) of the orchestrator's latest run, any outcome.
- `leaderboard_score`, `live_video_score` and `leaderboard_jobs` come from the leaderboard's score
  table (analytics/leaderboard/board.py: our relay runs that are verdicts on their orchestrator plus
  the stats others posted), per orchestrator x region x model (the Scope pipeline) and window.
  `leaderboard_score` is the reference AI score (0.65 x success rate + 0.35 x round-trip score);
  `live_video_score` is the mean live-video score of our jobs, with `ranked="true"` once it rests on
  the evidence floor (10 jobs) and `"false"` below it; `leaderboard_jobs` counts the jobs (not the
  unavailable runs beside them; a group of unavailable runs only has 0 jobs and no score).
- `events_parity_ratio`, `events_audited_runs` and `events_findings{kind}` (analytics/event_parity.py)
  count, per orchestrator and window, the runs whose Scope events had a source (kafka or file): the
  share whose events were complete, how many there were (the evidence), and those with at least one
  finding of each kind (every known kind, 0 when absent). Runs without a source (`none`, or null on
  older rows) and runs without an orchestrator are not counted: no source is not a finding.

A family with nothing to say (e.g. `drift_ratio` before any drift could be computed) is still
registered and exposed with its HELP and TYPE lines but no samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.attribution import orchestrator_view
from analytics.baselines import compute_baselines
from analytics.coverage import coverage_table
from analytics.drift import compute_drift
from analytics.event_parity import event_findings, event_parity
from analytics.records import as_utc
from analytics.scores import UNKNOWN, cold_starts, compute_scores, failure_breakdown, in_window, pass_rates
from config.settings import Budget

PREFIX = "scope_loadtest_"
WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
BASELINE_WINDOW_DAYS = 7
QUANTILES = (("0.5", "p50"), ("0.95", "p95"))  # quantile label -> baseline column
STATUS_LABELS = ("active", "blacklisted", "unavailable")
# Run column of the baselines -> family that exposes it per scenario.
SCENARIO_BASELINE_FAMILIES = {
    "first_frame_s": "first_frame_seconds", "load_s": "pipeline_load_seconds",
    "connect_s": "connect_seconds", "fps_steady": "steady_fps",
}
ORCHESTRATOR_BASELINE_FAMILIES = {"first_frame_s": "orchestrator_first_frame_seconds",
                                  "fps_steady": "orchestrator_steady_fps"}


@dataclass(frozen=True)
class FamilySpec:
    """One gauge family: its name without the prefix, its labels and what it means."""

    name: str
    labels: tuple[str, ...]
    help: str

    @property
    def full_name(self) -> str:
        """The exposed name, e.g. scope_loadtest_runs."""
        return PREFIX + self.name


_BASELINE_LABELS = ("scenario", "quantile", "window")
FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec("runs", ("orchestrator", "pipeline", "mode", "outcome", "window"), "Runs started in the window"),
    FamilySpec("pass_ratio", ("orchestrator", "pipeline", "window"), "passed / (passed + failed)"),
    FamilySpec("pass_ratio_wilson_low", ("orchestrator", "pipeline", "window"),
               "Lower bound of the Wilson 95 % interval of the pass ratio"),
    FamilySpec("failures", ("category", "phase", "pipeline", "window"), "Failed runs in the window"),
    FamilySpec("first_frame_seconds", _BASELINE_LABELS, "Session start answered -> first good frame, baseline"),
    FamilySpec("pipeline_load_seconds", _BASELINE_LABELS, "Pipeline load -> loaded, baseline"),
    FamilySpec("connect_seconds", _BASELINE_LABELS, "Cloud connect -> connected, baseline"),
    FamilySpec("steady_fps", _BASELINE_LABELS, "Steady output fps, baseline"),
    FamilySpec("orchestrator_first_frame_seconds", ("orchestrator", "scenario", "quantile"),
               "First-frame time per orchestrator, 7-day baseline"),
    FamilySpec("orchestrator_steady_fps", ("orchestrator", "scenario", "quantile"),
               "Steady output fps per orchestrator, 7-day baseline"),
    FamilySpec("drift_ratio", ("scenario", "metric"), "Recent median / baseline P50 - 1; positive = worse"),
    FamilySpec("regression", ("scenario", "metric"), "1 when the drift rule fires (20 % worse and p < 0.01)"),
    FamilySpec("budget_seconds", ("orchestrator", "kind"), "Today's test budget: planned or used seconds"),
    FamilySpec("coverage_ratio", ("orchestrator",), "Scenarios covered today / scenarios due"),
    FamilySpec("cold_start_ratio", ("orchestrator",), "Share of loads slower than the cold-start threshold, 7 days"),
    FamilySpec("orchestrators", ("status",), "Orchestrators by status today"),
    FamilySpec("last_run_timestamp_seconds", ("orchestrator",), "Unix time the orchestrator's latest run ended"),
    FamilySpec("push_timestamp_seconds", (), "Unix time of the last analyze push"),
    FamilySpec("leaderboard_score", ("orchestrator", "region", "model", "window"),
               "Leaderboard AI score: 0.65 x success rate + 0.35 x round-trip score"),
    FamilySpec("live_video_score", ("orchestrator", "region", "model", "window", "ranked"),
               "Mean live-video score of the jobs (fps and first-frame latency); ranked once 10 jobs"),
    FamilySpec("leaderboard_jobs", ("orchestrator", "region", "model", "window"),
               "Leaderboard jobs in the window (unavailable runs are not jobs)"),
    FamilySpec("events_parity_ratio", ("orchestrator", "window"),
               "Runs with an events source whose Scope events were complete / runs with an events source"),
    FamilySpec("events_findings", ("orchestrator", "kind", "window"),
               "Runs with an events source and at least one event finding of the kind"),
    FamilySpec("events_audited_runs", ("orchestrator", "window"),
               "Runs whose Scope events had a source (kafka or file), audited for parity"),
)
LEADERBOARD_LABELS = ("orchestrator", "region", "model", "window")
SPECS: dict[str, FamilySpec] = {spec.name: spec for spec in FAMILIES}
# The columns of the leaderboard score table the gauges read (an empty analysis has them too).
LEADERBOARD_SCHEMA: dict[str, type[pl.DataType]] = {
    "window": pl.String, "model": pl.String, "orchestrator": pl.String, "region": pl.String, "jobs": pl.Int64,
    "score": pl.Float64, "live_video_score": pl.Float64, "ranked": pl.Boolean,
}
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class Analysis:
    """Everything one analysis computes from the lake's runs (frames as the analytics modules return them)."""

    computed_at: datetime
    runs: pl.DataFrame
    baselines: pl.DataFrame  # 7-day, BaselineRecord columns (landed)
    baselines_24h: pl.DataFrame  # 1-day, only for window="24h" gauges
    drift: pl.DataFrame  # DriftRecord columns (landed)
    scores: pl.DataFrame  # ScoreRecord columns (landed)
    coverage: pl.DataFrame  # coverage_table for today
    cold_start_threshold_s: float
    leaderboard: pl.DataFrame  # Leaderboard.score_table columns, for each window of WINDOWS


def analyze_runs(runs: pl.DataFrame, *, now: datetime, orchestrators: Sequence[str], scenarios: Sequence[str],
                 budget: Budget, cold_start_threshold_s: float, leaderboard: pl.DataFrame | None = None) -> Analysis:
    """Baselines, drift, scores and today's coverage of the runs, all as of `now`; the leaderboard as given."""
    now = as_utc(now)
    return Analysis(
        computed_at=now,
        runs=orchestrator_view(runs),  # gauges label orchestrators: only what they took part in
        baselines=compute_baselines(runs, now=now, window_days=BASELINE_WINDOW_DAYS),
        baselines_24h=compute_baselines(runs, now=now, window_days=1),
        drift=compute_drift(runs, now=now),
        scores=compute_scores(runs, now=now),
        coverage=coverage_table(runs, orchestrators=orchestrators, scenarios=scenarios, budget=budget,
                                day=now.date(), now=now),
        cold_start_threshold_s=cold_start_threshold_s,
        leaderboard=pl.DataFrame(schema=LEADERBOARD_SCHEMA) if leaderboard is None else leaderboard,
    )


def known_orchestrators(runs: pl.DataFrame, discovered: Iterable[str], *, now: datetime) -> list[str]:
    """Discovered orchestrators plus any that ran in the last 7 days (a static one may never be discovered)."""
    recent = in_window(runs, now=now, window=WINDOWS["7d"]).get_column("orchestrator").drop_nulls()
    return sorted(set(discovered) | set(recent.unique().to_list()))


def _label(value: object) -> str:
    """A label value: None reads `unknown`."""
    return UNKNOWN if value is None else str(value)


def _samples(frame: pl.DataFrame, labels: Sequence[str], value: str, extra: tuple[str, ...] = ()) -> list[Sample]:
    """(label values + extra, value) per row whose value is not null."""
    rows = frame.select(*labels, value).filter(pl.col(value).is_not_null()).iter_rows()
    return [(tuple(_label(v) for v in row[:-1]) + extra, float(row[-1])) for row in rows]


def _run_counts(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """runs, pass_ratio, pass_ratio_wilson_low and failures for every window."""
    for window, length in WINDOWS.items():
        now, runs = analysis.computed_at, analysis.runs
        counts = (in_window(runs, now=now, window=length).group_by("orchestrator", "pipeline", "mode", "outcome")
                  .agg(pl.len().alias("runs")))
        yield "runs", _samples(counts, ("orchestrator", "pipeline", "mode", "outcome"), "runs", (window,))
        rates = pass_rates(runs, now=now, window=length)
        yield "pass_ratio", _samples(rates, ("orchestrator", "pipeline"), "pass_rate", (window,))
        yield "pass_ratio_wilson_low", _samples(rates, ("orchestrator", "pipeline"), "wilson_low", (window,))
        failures = failure_breakdown(runs, now=now, window=length)
        yield "failures", _samples(failures, ("category", "phase", "pipeline"), "failures", (window,))


def _baseline_samples(baselines: pl.DataFrame, scope: str, metric: str, labels: Sequence[str],
                      window: tuple[str, ...] = ()) -> list[Sample]:
    """One sample per series and quantile of one baseline metric."""
    rows = baselines.filter((pl.col("scope") == scope) & (pl.col("metric") == metric))
    return [sample for quantile, column in QUANTILES for sample in _samples(rows, labels, column, (quantile, *window))]


def _baselines(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """The per-scenario (both windows) and per-orchestrator (7 days) baseline families."""
    by_window = {"24h": analysis.baselines_24h, "7d": analysis.baselines}
    for metric, family in SCENARIO_BASELINE_FAMILIES.items():
        samples: list[Sample] = []
        for window, frame in by_window.items():
            samples += _baseline_samples(frame, "scenario", metric, ("scenario",), (window,))
        yield family, samples
    for metric, family in ORCHESTRATOR_BASELINE_FAMILIES.items():
        yield family, _baseline_samples(analysis.baselines, "orchestrator_scenario", metric,
                                        ("orchestrator", "scenario"))


def _drift(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """drift_ratio (where computable) and regression (every scenario series) from the drift rows."""
    rows = analysis.drift.filter(pl.col("scope") == "scenario").with_columns(
        (pl.col("verdict") == "regressed").cast(pl.Float64).alias("regressed")
    )
    yield "drift_ratio", _samples(rows, ("scenario", "metric"), "change_ratio")
    yield "regression", _samples(rows, ("scenario", "metric"), "regressed")


def _status_counts(coverage: pl.DataFrame) -> list[Sample]:
    """Orchestrators per metrics.md status; coverage's other statuses are active ones."""
    counts = dict.fromkeys(STATUS_LABELS, 0)
    for status in coverage.get_column("status").to_list() if coverage.height else []:
        counts[status if status in STATUS_LABELS else "active"] += 1
    return [((status,), float(count)) for status, count in counts.items()]


def _orchestrator_state(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """Today's budget, coverage and statuses; 7-day cold starts; the latest run of each orchestrator."""
    coverage = analysis.coverage
    yield "budget_seconds", (_samples(coverage, ("orchestrator",), "budget_s", ("planned",))
                             + _samples(coverage, ("orchestrator",), "used_s", ("used",)))
    yield "coverage_ratio", _samples(coverage, ("orchestrator",), "coverage_ratio")
    yield "orchestrators", _status_counts(coverage)
    cold = cold_starts(analysis.runs, now=analysis.computed_at, window=WINDOWS["7d"],
                       threshold_s=analysis.cold_start_threshold_s)
    yield "cold_start_ratio", _samples(cold, ("orchestrator",), "cold_start_ratio")
    last = (analysis.runs.filter(pl.col("outcome").is_not_null())
            .group_by("orchestrator").agg(pl.coalesce("ended_at", "started_at").max().alias("last_at"))
            .with_columns((pl.col("last_at").dt.epoch("us") / 1e6).alias("last_s")))
    yield "last_run_timestamp_seconds", _samples(last, ("orchestrator",), "last_s")


def _leaderboard(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """The reference score, the live-video mean (with its evidence) and the jobs per leaderboard group."""
    board = analysis.leaderboard.with_columns(
        pl.when(pl.col("ranked")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("ranked_label"))
    # A group of unavailable runs only has no score (the reference would not list it), but its 0 jobs show.
    yield "leaderboard_score", _samples(board.filter(pl.col("jobs") > 0), LEADERBOARD_LABELS, "score")
    yield "live_video_score", _samples(board, (*LEADERBOARD_LABELS, "ranked_label"), "live_video_score")
    yield "leaderboard_jobs", _samples(board, LEADERBOARD_LABELS, "jobs")


def _event_parity(analysis: Analysis) -> Iterator[tuple[str, list[Sample]]]:
    """events_parity_ratio, events_audited_runs and events_findings for every window."""
    for window, length in WINDOWS.items():
        now, runs = analysis.computed_at, analysis.runs
        parity = event_parity(runs, now=now, window=length)
        yield "events_parity_ratio", _samples(parity, ("orchestrator",), "parity_ratio", (window,))
        yield "events_audited_runs", _samples(parity, ("orchestrator",), "audited_runs", (window,))
        findings = event_findings(runs, now=now, window=length)
        yield "events_findings", _samples(findings, ("orchestrator", "kind"), "runs", (window,))


def family_samples(analysis: Analysis, *, pushed_at: datetime) -> dict[str, list[Sample]]:
    """Every family's samples by family name (without the prefix); families without data map to []."""
    samples: dict[str, list[Sample]] = {spec.name: [] for spec in FAMILIES}
    for producer in (_run_counts, _baselines, _drift, _orchestrator_state, _leaderboard, _event_parity):
        for name, found in producer(analysis):
            samples[name] += found
    for name, found in samples.items():
        found.sort(key=lambda sample: sample[0])  # a stable order: diffs of two metrics files stay readable
    samples["push_timestamp_seconds"] = [((), as_utc(pushed_at).timestamp())]
    return samples


class _Families(Collector):
    """A collector that returns fixed, already built families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families, as built."""
        return list(self._families)


def build_registry(analysis: Analysis, *, pushed_at: datetime) -> CollectorRegistry:
    """A fresh registry holding every family of FAMILIES with this analysis's samples."""
    samples = family_samples(analysis, pushed_at=pushed_at)
    families = []
    for spec in FAMILIES:
        family = GaugeMetricFamily(spec.full_name, spec.help, labels=list(spec.labels))
        for labels, value in samples[spec.name]:
            family.add_metric(list(labels), value)
        families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


def exposition_text(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (what is pushed, or written to metrics.prom)."""
    return generate_latest(registry)
