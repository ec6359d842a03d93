"""Generated run history: plausible past runs, every one marked `generated`, for the demo, tests and benchmarks.

The analytics need days of runs before they say anything: drift wants 7 days of baseline and a
recent day, scores want 10 verdicts. `make demo`, the tests and the benchmarks get them here in
seconds instead of a week. No flow calls this module, so a production lake never holds a
generated run; where one is present, `measured_runs` leaves it out.

Shape of the history (`HistorySpec`), seeded and deterministic:
- every orchestrator x scenario series gets `runs_per_day` runs on each of `days` days before
  `end`, one in each equal slot of the day at a uniformly drawn moment, so each day of each
  series holds the same number of runs and the last day is drift's recent window;
- timings are lognormal around the orchestrator's medians (`TIMING_SIGMA`), scaled by the
  scenario's `speed`; steady fps is lognormal around the orchestrator's or the scenario's fps
  (`FPS_SIGMA`); a share of loads, spread evenly, are cold starts (`COLD_LOAD_S`);
- outcomes follow the orchestrator's weights along a low-discrepancy sequence, so any stretch
  of a series (one day, say) carries close to that mix, not a lucky or unlucky draw of it;
  a failure in a phase leaves that phase's figure and the later ones null, as a real run does;
- `Injection`s change matching series on the last day only: a metric scaled, or a share of
  runs failing. That is the change drift and the pass-rate alerts exist to catch.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from analytics.lake import Lake
from analytics.records import RunRecord, as_utc, polars_schema

Weights = tuple[tuple[str, float], ...]
DEFAULT_OUTCOMES: Weights = (("passed", 0.92), ("failed", 0.05), ("unavailable", 0.02), ("aborted", 0.01))
# (category, phase, check failed) of generated failures, taken in turn
FAILURE_KINDS = (("validation", "stream", "fps"), ("runner", "load", None), ("network", "stream", "stall"),
                 ("orchestrator", "connect", None))
PHASE_FIGURES = (("connect", "connect_s"), ("load", "load_s"), ("start", "first_frame_s"), ("stream", "fps_steady"))
TIMING_SIGMA = 0.15  # run-to-run spread of a warm orchestrator's timings (log scale)
FPS_SIGMA = 0.03
COLD_LOAD_S = 65.0
COLD_START_THRESHOLD_S = 60.0
HARD_CAP_EXTRA_S = 300.0
GOLDEN = (math.sqrt(5) - 1) / 2  # steps of the low-discrepancy sequences (Weyl): outcomes, cold starts
SILVER = math.sqrt(2) - 1
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class ScenarioShape:
    """A scenario as the history needs it: names, stream length, fps and how heavy it is."""

    name: str
    pipeline: str
    mode: str
    duration_s: float
    fps: float
    pipeline_ids: tuple[str, ...] = ()
    duration_class: str = ""
    speed: float = 1.0  # load and first-frame medians are multiplied by it


@dataclass(frozen=True)
class OrchestratorShape:
    """How one orchestrator behaves in the history: median timings, fps, outcome weights."""

    address: str
    connect_s: float = 0.5
    load_s: float = 0.6
    first_frame_s: float = 0.5
    fps: float | None = None  # None: the scenario's
    outcomes: Weights = DEFAULT_OUTCOMES
    failure: tuple[str, str, str | None] | None = None  # None: FAILURE_KINDS in turn


@dataclass(frozen=True)
class Injection:
    """A change on the last day of matching series (None matches any): a metric scaled, a share failing."""

    orchestrator: str | None = None
    scenario: str | None = None
    pipeline: str | None = None
    metric: str = "first_frame_s"
    factor: float = 1.0
    failed_share: float | None = None

    def matches(self, orchestrator: OrchestratorShape, scenario: ScenarioShape) -> bool:
        """Whether the injection applies to this orchestrator x scenario."""
        wanted = ((self.orchestrator, orchestrator.address), (self.scenario, scenario.name),
                  (self.pipeline, scenario.pipeline))
        return all(want is None or want.lower() == got.lower() for want, got in wanted)


@dataclass(frozen=True)
class HistorySpec:
    """What to generate: who, what, over which days ending when, how often, what changed, which seed."""

    orchestrators: tuple[OrchestratorShape, ...]
    scenarios: tuple[ScenarioShape, ...]
    end: dt.datetime
    days: int = 8
    runs_per_day: int = 12
    injections: tuple[Injection, ...] = ()
    cold_start_share: float = 0.0
    seed: int = 0
    run_id_prefix: str = field(default="gen")

    def __post_init__(self) -> None:
        if self.days < 1 or self.runs_per_day < 1:
            raise ValueError("a history needs at least one day and one run per day")
        if not self.orchestrators or not self.scenarios:
            raise ValueError("a history needs orchestrators and scenarios")


def _outcomes(weights: Weights, positions: np.ndarray) -> np.ndarray:
    """Outcomes at low-discrepancy positions in [0, 1) by their cumulative weights."""
    names = [name for name, _ in weights]
    cumulative = np.cumsum([w for _, w in weights]) / sum(w for _, w in weights)
    return np.asarray(names, dtype=object)[np.minimum(np.searchsorted(cumulative, positions, side="right"),
                                                      len(names) - 1)]


def _figures(rng: np.random.Generator, orchestrator: OrchestratorShape, scenario: ScenarioShape,
             n: int, cold_start_share: float) -> dict[str, np.ndarray]:
    """Lognormal timings and fps of n runs of one series; cold loads where drawn."""
    noise = lambda sigma: rng.lognormal(0.0, sigma, n)  # noqa: E731 - one draw per run
    load = orchestrator.load_s * scenario.speed * noise(TIMING_SIGMA)
    cold = (rng.random() + SILVER * np.arange(n)) % 1.0 < cold_start_share  # spread like the outcomes
    return {
        "connect_s": orchestrator.connect_s * noise(TIMING_SIGMA),
        "load_s": np.where(cold, COLD_LOAD_S * noise(TIMING_SIGMA / 2), load),
        "first_frame_s": orchestrator.first_frame_s * scenario.speed * noise(TIMING_SIGMA),
        "fps_steady": (orchestrator.fps or scenario.fps) * noise(FPS_SIGMA),
    }


def _inject(figures: dict[str, np.ndarray], outcomes: np.ndarray, positions: np.ndarray, last_day: np.ndarray,
            injections: Sequence[Injection]) -> None:
    """Apply the matching injections to the last day's runs, in place."""
    for injection in injections:
        figures[injection.metric] = np.where(last_day, figures[injection.metric] * injection.factor,
                                             figures[injection.metric])
        if injection.failed_share is not None:
            failing = _outcomes((("failed", injection.failed_share), ("passed", 1 - injection.failed_share)),
                                positions)
            outcomes[last_day] = failing[last_day]


def _failure_columns(outcomes: np.ndarray, orchestrator: OrchestratorShape, first: int) -> dict[str, list]:
    """Category, phase, reason and failed checks of each run (null unless it failed, unavailable or aborted)."""
    columns: dict[str, list] = {"failure_category": [], "failure_phase": [], "failure_reason": [],
                                "checks_failed": []}
    for index, outcome in enumerate(outcomes):
        category, phase, check = orchestrator.failure or FAILURE_KINDS[(first + index) % len(FAILURE_KINDS)]
        if outcome == "unavailable":
            category, phase, check = "orchestrator", "connect", None
        elif outcome == "aborted":
            category, phase, check = "harness", None, None
        elif outcome != "failed":
            category = phase = check = None
        columns["failure_category"].append(category)
        columns["failure_phase"].append(phase)
        columns["failure_reason"].append(None if category is None else f"generated {category} failure")
        columns["checks_failed"].append([check] if check else [])
    return columns


def _null_unmeasured(figures: dict[str, np.ndarray], outcomes: np.ndarray, phases: list) -> None:
    """Null the figure of the failed phase and every later one; unavailable and aborted runs measured nothing."""
    order = [phase for phase, _ in PHASE_FIGURES]
    for step, (_, figure) in enumerate(PHASE_FIGURES):
        cut = np.array([o in ("unavailable", "aborted") or (o == "failed" and p in order and order.index(p) <= step)
                        for o, p in zip(outcomes, phases)], dtype=bool)
        figures[figure] = np.where(cut, np.nan, figures[figure])


def _series(spec: HistorySpec, rng: np.random.Generator, orchestrator: OrchestratorShape,
            scenario: ScenarioShape, first: int) -> dict[str, object]:
    """The columns of one orchestrator x scenario series, runs in time order."""
    n = spec.days * spec.runs_per_day
    slot_s = SECONDS_PER_DAY / spec.runs_per_day
    offset_s = (np.arange(n) + rng.random(n)) * slot_s
    last_day = offset_s >= (spec.days - 1) * SECONDS_PER_DAY
    positions = (rng.random() + GOLDEN * np.arange(n)) % 1.0
    outcomes = _outcomes(orchestrator.outcomes, positions)
    figures = _figures(rng, orchestrator, scenario, n, spec.cold_start_share)
    _inject(figures, outcomes, positions, last_day, [i for i in spec.injections if i.matches(orchestrator, scenario)])
    failures = _failure_columns(outcomes, orchestrator, first)
    _null_unmeasured(figures, outcomes, failures["failure_phase"])
    streamed = ~np.isnan(figures["first_frame_s"])
    stream_s = np.where(streamed, np.where(outcomes == "passed", scenario.duration_s, scenario.duration_s / 3), np.nan)
    busy_s = np.nansum([figures["connect_s"], figures["load_s"], figures["first_frame_s"], stream_s], axis=0)
    return {"offset_s": offset_s, "outcome": outcomes, "orchestrator": orchestrator.address,
            "scenario": scenario.name, **figures, **failures, "stream_s": stream_s, "wall_s": busy_s + 2.0,
            "cold_start": np.where(np.isnan(figures["load_s"]), np.nan, figures["load_s"] > COLD_START_THRESHOLD_S)}


INPUT_KINDS = {"t2v": "none", "v2v": "video", "i2v": "image"}


def _series_frame(spec: HistorySpec, rng: np.random.Generator, orchestrator: OrchestratorShape,
                  scenario: ScenarioShape, first: int) -> pl.DataFrame:
    """One series as a frame: its generated columns plus the scenario's constants."""
    columns = _series(spec, rng, orchestrator, scenario, first)
    cold = columns.pop("cold_start")
    frame = pl.DataFrame(columns, nan_to_null=True, schema_overrides={"checks_failed": pl.List(pl.String)})
    return frame.with_columns(
        cold_start=pl.Series(cold, nan_to_null=True).cast(pl.Boolean), pipeline=pl.lit(scenario.pipeline),
        pipeline_ids=pl.lit(list(scenario.pipeline_ids), dtype=pl.List(pl.String)), mode=pl.lit(scenario.mode),
        input_kind=pl.lit(INPUT_KINDS.get(scenario.mode, "none")),
        duration_class=pl.lit(scenario.duration_class or f"{scenario.duration_s:g}s"),
        planned_duration_s=pl.lit(float(scenario.duration_s)),
        hard_cap_s=pl.lit(float(scenario.duration_s) + HARD_CAP_EXTRA_S),
        fps_p50=pl.col("fps_steady"),
    )


def generate_history(spec: HistorySpec) -> pl.DataFrame:
    """Final rows of every generated run, in the lake's runs schema, `generated` true, oldest first."""
    rng = np.random.default_rng(spec.seed)
    end = as_utc(spec.end)
    start = end - dt.timedelta(days=spec.days)
    parts, first = [], 0
    for orchestrator in spec.orchestrators:
        for scenario in spec.scenarios:
            parts.append(_series_frame(spec, rng, orchestrator, scenario, first))
            first += parts[-1].height
    runs = pl.concat(parts, how="diagonal_relaxed").sort("offset_s", "orchestrator", "scenario")
    started = pl.lit(start) + pl.duration(microseconds=(pl.col("offset_s") * 1e6).round().cast(pl.Int64))
    stamp = end.strftime("%Y%m%dT%H%M%S")
    runs = runs.with_columns(started_at=started).with_columns(
        run_id=pl.format(f"{spec.run_id_prefix}-{stamp}-s{spec.seed}-{{}}", pl.int_range(pl.len()).cast(pl.String)
                         .str.zfill(6)),
        state=pl.lit("final"), scope_instance=pl.lit("generated"), harness_version=pl.lit("generated"),
        media_path=pl.lit("relay"),  # as if streamed through the orchestrator: what a verdict on it needs
        generated=pl.lit(True), ended_at=pl.col("started_at") + pl.duration(microseconds=(pl.col("wall_s") * 1e6)
                                                                               .round().cast(pl.Int64)),
        date=pl.col("started_at").dt.date(),
    )
    return runs_schema_frame(runs)


def runs_schema_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with exactly the runs table's columns, in order and types; absent ones null (lists empty)."""
    schema = polars_schema(RunRecord)
    columns = []
    for name, dtype in schema.items():
        if name in frame.columns:
            columns.append(pl.col(name).cast(dtype))
        elif isinstance(dtype, pl.List):
            columns.append(pl.lit([], dtype=dtype).alias(name))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(columns)


def history_records(frame: pl.DataFrame) -> list[RunRecord]:
    """The generated runs as validated records (for Lake.land)."""
    return [RunRecord.model_validate(row) for row in frame.iter_rows(named=True)]


def land_history(lake: Lake, frame: pl.DataFrame) -> int:
    """Land the generated runs as one file per UTC day, `generated-<first run id>`; returns runs landed."""
    if frame.height:
        lake.land("runs", history_records(frame), file_stem=f"generated-{frame['run_id'][0]}")
    return frame.height


def measured_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The runs that were measured: generated ones left out (a frame without the column has none)."""
    if "generated" not in runs.columns:
        return runs
    return runs.filter(~pl.col("generated").fill_null(False))
