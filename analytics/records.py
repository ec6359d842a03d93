"""One frozen model per lake table: the single source of the Parquet schema and the DuckDB views.

Every landed row is one of these models. `lake.py` writes, reads and builds the catalog views
from `column_specs(model)`, so a column is declared exactly once, here, with its unit in its
name and a description that says what it measures (for timers: from which event to which).

Each table is partitioned by `date` (UTC), derived from the model's `partition_field` and
checked when given, so the Hive directory `date=YYYY-MM-DD` always agrees with the rows.

This module is a leaf: standard library and pydantic only (polars is imported inside
`polars_schema` so that callers which only need the models do not pay for it).
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

RunState = Literal["started", "final"]
Outcome = Literal["passed", "failed", "unavailable", "aborted"]
FailureCategory = Literal["network", "orchestrator", "runner", "protocol", "validation", "harness"]
FailurePhase = Literal["prepare", "connect", "load", "start", "stream", "cleanup"]
MediaDriverName = Literal["webrtc", "headless"]
MediaPathName = Literal["relay", "local", "headless"]
Mode = Literal["t2v", "v2v", "i2v"]
InputKind = Literal["none", "video", "image"]
# stale: frames_out did not advance and the frame did not change (a stall, judged by the stall check)
FrameVerdictName = Literal["valid", "black", "corrupt", "wrong_size", "frozen", "stale", "missing"]
BaselineScope = Literal["scenario", "orchestrator_scenario"]
DriftVerdict = Literal["regressed", "stable", "improved", "insufficient_data"]
EventsSourceName = Literal["kafka", "file", "none"]


def as_utc(value: dt.datetime) -> dt.datetime:
    """The same instant as a UTC-aware datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


UtcDatetime = Annotated[dt.datetime, AfterValidator(as_utc)]
# Run ids name files (`<run_id>-started.parquet`): keep them path- and glob-safe.
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
_UTC_ADAPTER: TypeAdapter[dt.datetime] = TypeAdapter(UtcDatetime)


def _date_field(source: str) -> Any:
    """The `date` partition column, derived from the `source` timestamp."""
    return Field(description=f"UTC date of `{source}`; the Hive partition `date=YYYY-MM-DD`")


class LakeRecord(BaseModel):
    """Base of every landed row: frozen, no unknown fields, `date` derived from `partition_field`.

    When the partition timestamp is optional and absent, `date` must be given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    partition_field: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _derive_date(cls, data: Any) -> Any:
        """Fill `date` from the partition timestamp; refuse a `date` that disagrees with it."""
        if not isinstance(data, dict) or data.get(cls.partition_field) is None:
            return data
        derived = _UTC_ADAPTER.validate_python(data[cls.partition_field]).date()
        given = data.get("date")
        if given is not None and dt.date.fromisoformat(str(given)) != derived:
            raise ValueError(f"date {given} does not match {cls.partition_field} (UTC date {derived})")
        return {**data, "date": derived}


class RunRecord(LakeRecord):
    """One state of one run: a `started` row when it begins, then its `final` row."""

    partition_field: ClassVar[str] = "started_at"

    run_id: RunId = Field(description="Unique id of the run; names its files and artifacts")
    state: RunState = Field(description="`started` (landed when the run begins) or `final` (its verdict)")
    scenario: str = Field(description="Scenario name, e.g. longlive_t2v_5m")
    pipeline: str = Field(description="Pipeline chain as configured, e.g. longlive+rife")
    pipeline_ids: tuple[str, ...] = Field(default=(), description="Scope pipeline ids loaded, in order")
    mode: Mode = Field(description="Input mode: t2v, v2v or i2v")
    duration_class: str = Field(description="Duration class of the scenario, e.g. 5m")
    planned_duration_s: float = Field(ge=0, description="Planned stream duration in seconds")
    hard_cap_s: float = Field(gt=0, description="Longest the whole run may take, start to final row, in seconds; "
                              "a run still without a final row after it counts as aborted")
    orchestrator: str | None = Field(default=None, description="Address of the orchestrator the harness assigned")
    orchestrator_uri: str | None = Field(default=None, description="Service URI of that orchestrator")
    region: str | None = Field(default=None, description="Region of that orchestrator")
    scope_instance: str = Field(description="Scope instance the run drove (its URL or configured name)")
    scope_version: str | None = Field(default=None, description="Scope version reported by /health")
    harness_version: str = Field(description="Version of this harness")
    generated: bool = Field(default=False, description="True for a run made up by analytics/history.py (demo, "
                            "tests, benchmarks), not measured; no flow lands one. Leave them out of scores and "
                            "published results (history.measured_runs, or WHERE NOT generated)")
    prefect_flow_run_id: str | None = Field(default=None, description="Prefect flow run id, when run by Prefect")
    started_at: UtcDatetime = Field(description="UTC wall clock when the run began (before any Scope call)")
    ended_at: UtcDatetime | None = Field(default=None, description="UTC wall clock when the run ended (final rows)")
    swept_at: UtcDatetime | None = Field(default=None, description="UTC time the orphan sweeper wrote this row; "
                                         "null when the run landed it itself")
    outcome: Outcome | None = Field(default=None, description="passed/failed/unavailable/aborted; null while started")
    failure_category: FailureCategory | None = Field(default=None, description="Category of the first failure")
    failure_phase: FailurePhase | None = Field(default=None, description="Lifecycle phase of the first failure")
    failure_reason: str | None = Field(default=None, description="The first failure in one actionable line")
    checks_failed: tuple[str, ...] = Field(default=(), description="Names of every failed check")
    connect_s: float | None = Field(default=None, description="POST /cloud/connect -> status connected, seconds")
    load_s: float | None = Field(default=None, description="POST /pipeline/load -> status loaded, seconds")
    first_frame_s: float | None = Field(default=None, description="POST /session/start answered -> first frame "
                                        "passing the frame checks, seconds")
    stream_s: float | None = Field(default=None, description="First frame -> end of the monitored stream, seconds")
    frames_sampled: int | None = Field(default=None, description="Sampling ticks during the stream")
    frames_valid: int | None = Field(default=None, description="Sampled frames with verdict valid")
    frames_black: int | None = Field(default=None, description="Sampled frames with verdict black")
    frames_corrupt: int | None = Field(default=None, description="Sampled frames with verdict corrupt")
    frames_wrong_size: int | None = Field(default=None, description="Sampled frames with verdict wrong_size")
    frames_frozen: int | None = Field(default=None, description="Sampled frames with verdict frozen")
    frames_missing: int | None = Field(default=None, description="Ticks where no frame could be fetched")
    fps_steady: float | None = Field(default=None, description="Steady output fps from frames_out after warm-up")
    fps_p50: float | None = Field(default=None, description="Median of per-interval output fps after warm-up")
    fps_p05: float | None = Field(default=None, description="5th percentile of per-interval output fps")
    stall_count: int | None = Field(default=None, description="Times frames_out stopped increasing too long")
    stall_s: float | None = Field(default=None, description="Total seconds frames_out did not increase (stalls)")
    freeze_s: float | None = Field(default=None, description="Longest run of frozen output, seconds")
    black_s: float | None = Field(default=None, description="Longest run of black output, seconds")
    prompt_switches: int | None = Field(default=None, description="Prompt switches made during the stream")
    prompt_switches_responded: int | None = Field(default=None, description="Switches the output responded to")
    vram_start_mb: float | None = Field(default=None, description="Allocated VRAM at stream start, MB")
    vram_end_mb: float | None = Field(default=None, description="Allocated VRAM at stream end, MB")
    vram_peak_mb: float | None = Field(default=None, description="Peak allocated VRAM during the stream, MB")
    vram_growth_mb: float | None = Field(default=None, description="Least-squares VRAM growth over the stream, MB")
    vram_total_mb: float | None = Field(default=None, description="Total VRAM of the GPU, MB")
    cold_start: bool | None = Field(default=None, description="load_s exceeded the cold-start threshold")
    connection_id: str | None = Field(default=None, description="Cloud connection id reported by Scope")
    prompt_pool: str | None = Field(default=None, description="Prompt pool the prompts came from")
    input_kind: InputKind = Field(default="none", description="Input given to the pipeline: none, video or image")
    width: int | None = Field(default=None, description="Requested output width, pixels")
    height: int | None = Field(default=None, description="Requested output height, pixels")
    artifacts_path: str | None = Field(default=None, description="Directory with log tail and evidence frames")
    media_driver: MediaDriverName | None = Field(default=None, description="How the harness drove the media: "
                                                 "webrtc (it is the browser) or headless (REST session)")
    media_path: MediaPathName | None = Field(default=None, description="Where the media went, from evidence: relay "
                                             "(through the orchestrator), local (Scope's own box) or headless; "
                                             "only relay runs say anything about an orchestrator's streaming")
    checks_skipped: tuple[str, ...] = Field(default=(), description='Checks that could not run, each '
                                            '"name: reason" (neither passed nor failed)')
    expected_fps: float | None = Field(default=None, description="Output fps the pipeline should reach (config)")
    fps_received: float | None = Field(default=None, description="Frames received / stream seconds after the "
                                       "warm-up, at the harness (webrtc)")
    fps_received_p50: float | None = Field(default=None, description="Median received fps over 1 s windows")
    fps_received_p05: float | None = Field(default=None, description="5th percentile received fps over 1 s windows")
    frames_received: int | None = Field(default=None, description="Output frames received and decoded (webrtc)")
    freeze_count: int | None = Field(default=None, description="Freezes by the W3C rule: an inter-frame gap > "
                                     "max(3 x mean of the last 30 gaps, mean + 150 ms)")
    freeze_total_s: float | None = Field(default=None, description="Total seconds of those freezes")
    frame_interval_p50_ms: float | None = Field(default=None, description="Median inter-frame arrival gap, ms")
    frame_interval_p95_ms: float | None = Field(default=None, description="95th percentile inter-frame gap, ms")
    frame_interval_max_ms: float | None = Field(default=None, description="Longest inter-frame arrival gap, ms")
    packets_received: int | None = Field(default=None, description="RTP packets received (peer connection stats)")
    packets_lost: int | None = Field(default=None, description="RTP packets lost (peer connection stats)")
    jitter_ms: float | None = Field(default=None, description="Receive jitter, ms (peer connection stats)")
    nack_count: int | None = Field(default=None, description="NACKs sent by the harness")
    pli_count: int | None = Field(default=None, description="PLIs sent by the harness")
    bitrate_kbps: float | None = Field(default=None, description="Received video bitrate, kbit/s")
    rtt_ms: float | None = Field(default=None, description="Round-trip time, ms, where the peer reports it")
    codec: str | None = Field(default=None, description="Negotiated video codec, e.g. VP8")
    prompt_switches_evaluated: int | None = Field(default=None, description="Switches whose response could be "
                                                  "judged (the rest say why in prompt_switches.reason)")
    prompt_latency_p50_s: float | None = Field(default=None, description="Median switch -> output responded, s")
    tick_errors: int | None = Field(default=None, description="Sampling ticks that failed and were retried")
    tick_lag_p95_ms: float | None = Field(default=None, description="95th percentile of how late the harness "
                                          "ran its sampling ticks, ms (its own load, not Scope's)")
    ticks_missed: int | None = Field(default=None, description="Sampling ticks skipped because the harness "
                                     "ran more than one interval late")
    interrupted_by: str | None = Field(default=None, description="What stopped the run early: SIGTERM, SIGINT, "
                                       "cancellation, hard cap (aborted runs)")
    events_source: EventsSourceName | None = Field(default=None, description="Where the run's Scope events came "
                                                   "from: kafka, or none (no source configured or reachable)")
    events_seen: int | None = Field(default=None, description="Scope lifecycle events joined to the run")
    events_findings: tuple[str, ...] = Field(default=(), description='Deviations of the events from the expected '
                                             'sequence for the media path, each "kind: detail" (missing, '
                                             'duplicated, out_of_order, null_ids, mismatched_ids, late, '
                                             'ttff_disagrees, fps_disagrees)')
    events_complete: bool | None = Field(default=None, description="The events told the whole story (no "
                                         "finding); null when there was no source")
    date: dt.date = _date_field("started_at")

    @model_validator(mode="after")
    def _outcome_matches_state(self) -> RunRecord:
        """A started row has no outcome yet; a final row must have one."""
        if self.state == "started" and self.outcome is not None:
            raise ValueError("a started row has no outcome")
        if self.state == "final" and self.outcome is None:
            raise ValueError("a final row needs an outcome")
        return self


class FrameSample(LakeRecord):
    """One sampling tick of a run's stream: metrics read and one frame fetched and checked."""

    partition_field: ClassVar[str] = "captured_at"

    run_id: RunId = Field(description="Run the tick belongs to")
    seq: int = Field(ge=0, description="Tick number within the run, from 0")
    t_s: float = Field(description="Seconds since the session start was answered")
    captured_at: UtcDatetime = Field(description="UTC wall clock of the tick")
    frame_bytes: int | None = Field(default=None, description="Size of the fetched JPEG, bytes; null if none")
    width: int | None = Field(default=None, description="Decoded frame width, pixels")
    height: int | None = Field(default=None, description="Decoded frame height, pixels")
    frame_fetch_ms: float | None = Field(default=None, description="GET /session/frame sent -> body read, ms")
    decode_ms: float | None = Field(default=None, description="Reduced-scale JPEG decode and luma stats, ms")
    luma_mean: float | None = Field(default=None, description="Mean luma 0-255 at reduced scale")
    luma_std: float | None = Field(default=None, description="Luma standard deviation 0-255 at reduced scale")
    black_fraction: float | None = Field(default=None, description="Share of pixels with luma <= black_luma_max")
    diff_prev: float | None = Field(default=None, description="Mean abs luma difference to the previous sampled "
                                    "frame, normalised 0-1")
    verdict: FrameVerdictName = Field(description="valid, black, corrupt, wrong_size, frozen, stale or missing")
    error: str | None = Field(default=None, description="Why the frame is missing or corrupt")
    fps_in: float | None = Field(default=None, description="Input fps reported by Scope")
    fps_out: float | None = Field(default=None, description="Output fps reported by Scope")
    frames_in: int | None = Field(default=None, description="Frames received by the session, cumulative")
    frames_out: int | None = Field(default=None, description="Frames produced by the session, cumulative")
    pipeline_fps: float | None = Field(default=None, description="Pipeline fps reported by Scope")
    vram_allocated_mb: float | None = Field(default=None, description="Allocated VRAM, MB")
    vram_reserved_mb: float | None = Field(default=None, description="Reserved VRAM, MB")
    date: dt.date = _date_field("captured_at")


class PromptSwitchRecord(LakeRecord):
    """One prompt switch of a run and whether the output responded to it."""

    partition_field: ClassVar[str] = "switched_at"

    run_id: RunId = Field(description="Run the switch belongs to")
    seq: int = Field(ge=0, description="Switch number within the run, from 0")
    t_s: float = Field(description="Seconds since the session start was answered, at the switch")
    switched_at: UtcDatetime | None = Field(default=None, description="UTC wall clock of the switch request")
    prompt_from: str = Field(description="Prompt before the switch")
    prompt_to: str = Field(description="Prompt after the switch")
    noise_p95: float | None = Field(default=None, description="95th percentile of frame-to-frame diffs before "
                                    "the switch, normalised 0-1")
    response_diff: float | None = Field(default=None, description="Median diff of post-switch frames to the last "
                                        "pre-switch frame, normalised 0-1")
    responded: bool = Field(description="response_diff exceeded prompt_margin x noise_p95 in time")
    prompt_latency_s: float | None = Field(default=None, description="Switch request -> output responded, seconds")
    evaluated: bool = Field(default=True, description="The response could be judged (enough noise before, "
                            "the whole window seen); responded is meaningful only when true")
    reason: str | None = Field(default=None, description="Why the switch was not judged, or why it failed")
    date: dt.date = Field(description="UTC date of `switched_at` (else of the run's start); the Hive partition "
                          "`date=YYYY-MM-DD`")


class OrchestratorSnapshot(LakeRecord):
    """One orchestrator as one discovery saw it."""

    partition_field: ClassVar[str] = "snapshot_at"

    snapshot_at: UtcDatetime = Field(description="UTC wall clock of the discovery")
    address: str = Field(description="Orchestrator address (its identity)")
    uri: str | None = Field(default=None, description="Orchestrator service URI")
    region: str | None = Field(default=None, description="Region")
    source: str = Field(description="Discovery source: gateway, json_url or static")
    pipelines: tuple[str, ...] = Field(default=(), description="Pipelines it offers")
    models: tuple[str, ...] = Field(default=(), description="Models it offers")
    offers_scope: bool | None = Field(default=None, description="It offers Scope real-time video")
    gpu_name: str | None = Field(default=None, description="GPU model name")
    gpu_vram_mb: float | None = Field(default=None, description="GPU memory, MB")
    capacity: int | None = Field(default=None, description="Concurrent sessions it accepts")
    capacity_in_use: int | None = Field(default=None, description="Sessions in use at the snapshot")
    warm: bool | None = Field(default=None, description="Its models were loaded (warm) at the snapshot")
    date: dt.date = _date_field("snapshot_at")


class BaselineRecord(LakeRecord):
    """A rolling P50/P95 of one metric for one series (scenario, or orchestrator x scenario)."""

    partition_field: ClassVar[str] = "computed_at"

    computed_at: UtcDatetime = Field(description="UTC wall clock of the computation")
    scope: BaselineScope = Field(description="Series key kind: scenario or orchestrator_scenario")
    scenario: str = Field(description="Scenario of the series")
    orchestrator: str | None = Field(default=None, description="Orchestrator of the series (orchestrator_scenario)")
    metric: str = Field(description="Run column summarised, e.g. first_frame_s")
    p50: float | None = Field(default=None, description="Median over the window, in the metric's unit")
    p95: float | None = Field(default=None, description="95th percentile over the window, in the metric's unit")
    n: int = Field(ge=0, description="Samples in the window")
    window_days: int = Field(gt=0, description="Window length, days")
    date: dt.date = _date_field("computed_at")


class DriftRecord(LakeRecord):
    """Whether one series' recent values regressed against its baseline."""

    partition_field: ClassVar[str] = "computed_at"

    computed_at: UtcDatetime = Field(description="UTC wall clock of the computation")
    scope: BaselineScope = Field(description="Series key kind: scenario or orchestrator_scenario")
    scenario: str = Field(description="Scenario of the series")
    orchestrator: str | None = Field(default=None, description="Orchestrator of the series (orchestrator_scenario)")
    metric: str = Field(description="Run column compared, e.g. first_frame_s")
    baseline_p50: float | None = Field(default=None, description="Baseline median, in the metric's unit")
    recent_median: float | None = Field(default=None, description="Median of the recent samples, metric's unit")
    change_ratio: float | None = Field(default=None, description="Relative change, positive = worse (0.2 = 20 %)")
    p_value: float | None = Field(default=None, description="One-sided Mann-Whitney U p-value (recent worse)")
    n_recent: int = Field(ge=0, description="Recent samples")
    n_baseline: int = Field(ge=0, description="Baseline samples")
    verdict: DriftVerdict = Field(description="regressed, stable, improved or insufficient_data")
    date: dt.date = _date_field("computed_at")


class ScoreRecord(LakeRecord):
    """The pass rate and quality score of one orchestrator for one pipeline."""

    partition_field: ClassVar[str] = "computed_at"

    computed_at: UtcDatetime = Field(description="UTC wall clock of the computation")
    orchestrator: str = Field(description="Orchestrator address")
    pipeline: str = Field(description="Pipeline chain")
    window_days: int = Field(gt=0, description="Window of runs scored, days")
    runs: int = Field(ge=0, description="Runs with a verdict (passed or failed) in the window")
    passed: int = Field(ge=0, description="Runs passed in the window")
    pass_rate: float | None = Field(default=None, description="passed / runs, 0-1")
    wilson_low: float | None = Field(default=None, description="Wilson 95 % interval lower bound of the pass rate")
    wilson_high: float | None = Field(default=None, description="Wilson 95 % interval upper bound of the pass rate")
    sufficient_evidence: bool = Field(description="Enough runs (10+) to rank")
    latency_score: float | None = Field(default=None, description="Latency score 0-1, higher is better")
    fps_score: float | None = Field(default=None, description="FPS score 0-1, higher is better")
    score: float | None = Field(default=None, description="Overall score 0-1, higher is better")
    date: dt.date = _date_field("computed_at")


class EventRecord(LakeRecord):
    """One Scope lifecycle event seen during a run (an envelope of Scope's Kafka stream)."""

    partition_field: ClassVar[str] = "received_at"

    run_id: RunId = Field(description="The run the event was joined to")
    received_at: UtcDatetime = Field(description="UTC wall clock when the harness read the event")
    event_id: str = Field(description="The envelope's id (a UUID)")
    type: str = Field(description="The event type (data.type), e.g. stream_started")
    emitted_at: UtcDatetime | None = Field(default=None, description="When Scope emitted it (data.timestamp, ms)")
    session_id: str | None = Field(default=None, description="Scope's session id")
    connection_id: str | None = Field(default=None, description="The connection id (the harness's run id in its "
                                      "WebRTC offer; the manifest id on the cloud side)")
    user_id: str | None = Field(default=None, description="The user id of the offer")
    pipeline_ids: tuple[str, ...] = Field(default=(), description="Pipelines the event names")
    payload: str = Field(description="The event's data object as JSON text")
    source: EventsSourceName = Field(description="kafka or file")
    topic: str | None = Field(default=None, description="Kafka topic read")
    partition: int | None = Field(default=None, description="Kafka partition")
    offset: int | None = Field(default=None, description="Kafka offset in that partition")
    date: dt.date = _date_field("received_at")


JobType = Literal["ai", "transcoding"]
OutboxStatus = Literal["posted", "duplicate", "failed", "rejected", "expired"]


class LeaderboardStatRecord(LakeRecord):
    """One Stats object another tester (or this harness) posted to our leaderboard API and we accepted."""

    partition_field: ClassVar[str] = "stat_at"

    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the exact body bytes; names the "
                             "file, so one signed body lands at most once")
    received_at: UtcDatetime = Field(description="UTC wall clock when the API accepted the body (the reference's "
                                     "event_time: since/until select on it)")
    poster: str = Field(description="Who posted: the peer address and the User-Agent (the shared secret names no one)")
    stat_at: UtcDatetime = Field(description="The body's `timestamp` as a UTC time")
    timestamp: int = Field(description="The body's `timestamp`, unix seconds (when the tester ran the job)")
    job_type: JobType = Field(description="ai when the body names a model and a pipeline, else transcoding")
    region: str = Field(description="Region id the tester posted from, upper case (e.g. FRA)")
    orchestrator: str = Field(description="Orchestrator address, lower case")
    success_rate: float = Field(description="Share of the job that succeeded, 0-1")
    round_trip_time: float = Field(description="Round trip of the job, seconds")
    errors_json: str = Field(description="The body's `errors` list as JSON text")
    model: str | None = Field(default=None, description="AI: the model (for Scope streams: the Scope pipeline)")
    pipeline: str | None = Field(default=None, description="AI: the Livepeer pipeline, e.g. live-video-to-video")
    model_is_warm: bool | None = Field(default=None, description="AI: the model was warm")
    input_parameters: str | None = Field(default=None, description="AI: the job's input parameters (JSON text)")
    response_payload: str | None = Field(default=None, description="AI: the job's response (JSON text)")
    seg_duration: float | None = Field(default=None, description="Transcoding: segment duration, seconds")
    segments_sent: int | None = Field(default=None, description="Transcoding: segments sent")
    segments_received: int | None = Field(default=None, description="Transcoding: segments received")
    upload_time: float | None = Field(default=None, description="Transcoding: upload time, seconds")
    download_time: float | None = Field(default=None, description="Transcoding: download time, seconds")
    transcode_time: float | None = Field(default=None, description="Transcoding: transcode time, seconds")
    run_id: str | None = Field(default=None, description="The harness run the stat describes, when "
                               "input_parameters names one (a scope-loadtest poster)")
    date: dt.date = _date_field("stat_at")


class OutboxAttemptRecord(LakeRecord):
    """One attempt to post one of our runs to one leaderboard target (the outbox is these rows plus the runs)."""

    partition_field: ClassVar[str] = "attempted_at"

    run_id: RunId = Field(description="The relay run posted")
    target: str = Field(description="Name of the leaderboard target (config leaderboard.targets)")
    attempt: int = Field(ge=1, description="1 for the first attempt of this run at this target, then 2, 3, ...")
    attempted_at: UtcDatetime = Field(description="UTC wall clock when the attempt began")
    status: OutboxStatus = Field(description="posted (2xx), duplicate (409: it had landed before), failed "
                                 "(retried later), rejected (4xx: never retried), expired (too old to post)")
    http_status: int | None = Field(default=None, description="HTTP status answered; null when none came back")
    error: str | None = Field(default=None, description="Why the attempt did not post, one line (no secrets)")
    latency_ms: float | None = Field(default=None, description="Request sent -> answer read, ms")
    body_sha256: str | None = Field(default=None, description="SHA-256 of the body posted")
    next_attempt_at: UtcDatetime | None = Field(default=None, description="Earliest retry (failed attempts)")
    date: dt.date = _date_field("attempted_at")


TABLES: dict[str, type[LakeRecord]] = {
    "runs": RunRecord,
    "frames": FrameSample,
    "prompt_switches": PromptSwitchRecord,
    "orchestrators": OrchestratorSnapshot,
    "baselines": BaselineRecord,
    "drift": DriftRecord,
    "scores": ScoreRecord,
    "events": EventRecord,
    "leaderboard_stats": LeaderboardStatRecord,
    "leaderboard_outbox": OutboxAttemptRecord,
}

ColumnKind = Literal["str", "int", "float", "bool", "datetime", "date"]
_KINDS: dict[type, ColumnKind] = {  # bool before int: bool is an int subclass
    bool: "bool", int: "int", float: "float", str: "str", dt.datetime: "datetime", dt.date: "date",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a table: name, scalar kind, whether it is a list and may be null."""

    name: str
    kind: ColumnKind
    is_list: bool
    nullable: bool
    description: str


def _kind_of(annotation: Any) -> tuple[ColumnKind, bool, bool]:
    """(kind, is_list, nullable) of a field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        kind, is_list, _ = _kind_of(inner[0])
        return kind, is_list, len(inner) < len(args)
    if origin is Annotated:
        return _kind_of(args[0])
    if origin is Literal:
        return "str", False, False
    if origin in (list, tuple):
        kind, _, _ = _kind_of(args[0])
        return kind, True, False
    for python_type, kind in _KINDS.items():
        if isinstance(annotation, type) and issubclass(annotation, python_type):
            return kind, False, False
    raise TypeError(f"no lake column type for {annotation!r}")


def column_specs(model: type[LakeRecord]) -> list[ColumnSpec]:
    """The columns of a table, in the model's field order."""
    specs = []
    for name, field in model.model_fields.items():
        kind, is_list, nullable = _kind_of(field.annotation)
        specs.append(ColumnSpec(name, kind, is_list, nullable, field.description or ""))
    return specs


def polars_schema(model: type[LakeRecord]) -> dict[str, Any]:
    """The Polars schema of a table: the one schema used to write and read its Parquet files."""
    import polars as pl  # here, not at the top: keeps this module a leaf

    scalars = {"str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "bool": pl.Boolean(),
               "datetime": pl.Datetime("us", "UTC"), "date": pl.Date()}
    return {c.name: pl.List(scalars[c.kind]) if c.is_list else scalars[c.kind] for c in column_specs(model)}
