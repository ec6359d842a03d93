"""The harness configuration: one frozen pydantic tree, loaded once at the edge.

``load_settings()`` reads a YAML file (default ``config/default.yaml``, or the path in
``$LOADTEST_CONFIG``), the prompt pools under ``prompts_dir`` and the graph templates under
``graphs_dir`` (both relative to the YAML file), and returns ``Settings``. Every problem
becomes ``ConfigError(file, key, problem)`` with a dotted key such as
``scenarios[2].modes[0]``. Secrets never come from the file: the cloud api key is read
from the environment variable named by ``cloud.api_key_env``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from config.expansion import check_settings, expand_settings
from config.events import EventsSettings
from config.leaderboard import LeaderboardSettings
from config.loading import close_matches, load_graph_templates, load_prompt_pools, read_mapping
from config.loading import translate_validation_error
from config.scenarios import Mode, Scenario
from errors import ConfigError

CONFIG_ENV_VAR = "LOADTEST_CONFIG"
DEFAULT_CONFIG_NAME = "default.yaml"
DEFAULT_PROMPTS_DIR = "prompts"
DEFAULT_GRAPHS_DIR = "graphs"
DEFAULT_API_KEY_ENV = "SCOPE_CLOUD_API_KEY"
DEFAULT_CAPABILITY = "live-video-to-video"
DEFAULT_MODEL_IDS = ("scope",)
DEFAULT_WIDTH = 512
DEFAULT_HEIGHT = 512
LOCAL_HOST = "127.0.0.1"
# Keys the YAML may hold beside the Settings fields; the loader resolves them to files.
FILE_ONLY_KEYS = ("prompts_dir", "graphs_dir")
# Settings fields the loader fills itself; a YAML file must not set them.
LOADER_ONLY_KEYS = ("graph_templates", "source_file")

STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
URL_PATTERN = re.compile(r"^https?://\S+$")
HHMM_PATTERN = re.compile(r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# Prefect's server takes leases of 60 s to a day (api/concurrency_limits_v2.py, lease_duration).
MIN_SLOT_LEASE_S = 60.0
MAX_SLOT_LEASE_S = 86400.0
DEFAULT_SLOT_LEASE_S = 120.0
DEFAULT_START_ALLOWANCE_S = 300.0


def _matching(pattern: re.Pattern[str], expected: str) -> AfterValidator:
    """A validator that rejects strings not matching ``pattern``, saying what was expected."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"expected {expected}")
        return value

    return AfterValidator(check)


Url = Annotated[str, _matching(URL_PATTERN, "an http:// or https:// URL")]
HHMM = Annotated[str, _matching(HHMM_PATTERN, 'a UTC time "HH:MM" between 00:00 and 24:00')]
Name = Annotated[str, _matching(NAME_PATTERN, "a name of letters, digits and _ . + -")]
AppId = Annotated[str, _matching(re.compile(r".*/ws$"), 'an app id ending in "/ws" (Scope requires it)')]


class Thresholds(BaseModel):
    """Phase limits, sampling cadence and check thresholds (quality.md's defaults)."""

    model_config = STRICT

    connect_timeout_s: float = Field(120.0, gt=0, description="cloud connect -> connected")
    load_timeout_s: float = Field(300.0, gt=0, description="pipeline load -> loaded")
    first_frame_timeout_s: float = Field(60.0, gt=0, description="session start answered -> first good frame")
    sample_interval_s: float = Field(0.5, gt=0, description="stream tick: metrics + one frame")
    first_frame_poll_s: float = Field(0.1, gt=0, description="poll period while waiting for the first frame")
    prompt_switch_interval_s: float = Field(30.0, gt=0, description="time between prompt switches")
    freeze_s: float = Field(2.0, gt=0, description="longest tolerated frozen output")
    stall_timeout_s: float = Field(10.0, gt=0, description="longest tolerated frames_out standstill")
    min_fps: float = Field(6.0, gt=0, description="lowest passing steady output fps")
    black_s: float = Field(2.0, gt=0, description="longest tolerated black output")
    prompt_margin: float = Field(2.0, ge=1.0, description="post-switch diff must exceed margin x p95 noise")
    prompt_response_s: float = Field(10.0, gt=0, description="time allowed for a prompt switch to show")
    vram_leak_tolerance_mb: float = Field(200.0, ge=0, description="tolerated VRAM growth over a stream")
    max_vram_percent: float = Field(90.0, gt=0, le=100, description="peak allocated / total ceiling")
    black_luma_max: int = Field(25, ge=0, le=255, description="a pixel at or below this luma is black")
    black_fraction_min: float = Field(0.98, gt=0, le=1, description="share of black pixels of a black frame")
    frozen_diff_max: float = Field(0.001, ge=0, lt=1, description="normalised diff at or below it is frozen")
    fps_warmup_s: float = Field(5.0, ge=0, description="stream start ignored by the steady fps")
    cold_start_threshold_s: float = Field(60.0, gt=0, description="load_s above it counts as a cold start")
    cleanup_timeout_s: float = Field(30.0, gt=0, description="session stop and teardown limit")
    min_fps_ratio: float = Field(0.5, ge=0, le=1, description="steady fps must also reach this share of the "
                                 "pipeline's expected_fps (the fps check uses the larger bar)")
    tick_error_grace_s: float = Field(3.0, ge=0, description="failing ticks (network) are retried with back-off "
                                      "for this long before the stream fails")
    max_tick_lag_ms: float = Field(500.0, gt=0, description="p95 lateness of the harness's own sampling ticks "
                                   "above which its figures say nothing about Scope (harness_lag); one tick "
                                   "interval: later than that, ticks are missed")

    @model_validator(mode="after")
    def _poll_faster_than_sampling(self) -> Thresholds:
        """First-frame polling exists to be finer than the stream tick."""
        if self.first_frame_poll_s > self.sample_interval_s:
            raise ValueError("first_frame_poll_s must not exceed sample_interval_s")
        return self


class Budget(BaseModel):
    """How much testing each orchestrator gets per day, and when."""

    model_config = STRICT

    daily_percent: float = Field(20.0, gt=0, le=100, description="share of a day an orchestrator is under test")
    min_run_gap_mins: float = Field(5.0, ge=0, description="pause between two runs on one orchestrator")
    max_run_duration_mins: float = Field(30.0, gt=0, description="longest scenario duration allowed")
    schedule_start: HHMM = Field("00:00", description="UTC start of the daily window")
    schedule_end: HHMM = Field("24:00", description="UTC end of the window; before start wraps midnight")
    blacklist_after_failures: int = Field(5, ge=1, description="consecutive failures before a blacklist")
    unavailable_backoff_mins: float = Field(30.0, ge=0, description="wait after an `unavailable` run")

    @model_validator(mode="after")
    def _window_not_empty(self) -> Budget:
        """A window that starts where it ends would never run anything."""
        if _minute_of_day(self.schedule_start) == _minute_of_day(self.schedule_end):
            raise ValueError("schedule_start equals schedule_end: the window is empty")
        return self

    def is_open(self, at: time) -> bool:
        """True when the UTC time of day ``at`` lies in [schedule_start, schedule_end)."""
        start, end = _minute_of_day(self.schedule_start), _minute_of_day(self.schedule_end)
        now = at.hour * 60 + at.minute
        return start <= now < end if start < end else (now >= start or now < end)


def _minute_of_day(hhmm: str) -> int:
    """``"07:30"`` -> 450."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class StaticOrchestrator(BaseModel):
    """An orchestrator named in config instead of discovered."""

    model_config = STRICT

    address: str = Field(min_length=1, description="on-chain address or any stable id")
    uri: Url
    region: str | None = None


class Discovery(BaseModel):
    """Where orchestrators come from and which capability a Scope-capable one offers."""

    model_config = STRICT

    refresh_interval_hours: float = Field(4.0, gt=0)
    gateway_urls: list[Url] = Field(default_factory=list, description="go-livepeer /getNetworkCapabilities bases")
    registered_orchestrators_urls: list[Url] = Field(default_factory=list)
    json_list_urls: list[Url] = Field(default_factory=list, description="plain JSON lists of orchestrators")
    orchestrators: list[StaticOrchestrator] = Field(default_factory=list)
    capability: str = Field(DEFAULT_CAPABILITY, min_length=1)
    model_ids: list[str] = Field(default_factory=lambda: list(DEFAULT_MODEL_IDS), min_length=1)
    timeout_s: float = Field(10.0, gt=0, description="per discovery HTTP call")


class MaxSessions(BaseModel):
    """Concurrent sessions one harness process holds, per media driver (measured-facts.md).

    headless: one process held 128 REST sessions at p95 tick lag 30 ms (~70 % of a core) and fell
    behind at 192; half of 128 leaves room for the other core being busy and for larger frames.
    webrtc: this harness's client sends its clip pre-encoded (no encoding per session) and decodes
    ~1 ms per frame: `make bench` measured ~3 % of a core per 15-fps video session and held 16
    sessions with 0 % of frames lost (the simulator in its own process); 12 leaves headroom. A
    process that also hosts its Scope servers (the demo's embedded fleet) needs fewer.
    """

    model_config = STRICT

    webrtc: int = Field(12, ge=1, description="WebRTC sessions (receive, decode, sample checks in this process)")
    headless: int = Field(64, ge=1, description="headless REST sessions (2 Hz sampling + frame checks)")


class DispatchSettings(BaseModel):
    """What one dispatch process may run at once, and how it treats Scope instances that fail to start."""

    model_config = STRICT

    max_concurrent_sessions: MaxSessions = Field(default_factory=MaxSessions)
    instance_backoff_s: float = Field(10.0, gt=0, description="wait after an instance's first failed start")
    instance_backoff_max_s: float = Field(600.0, gt=0, description="longest wait; doubles per failed start")
    instance_log_files: int = Field(3, ge=1, description="log files kept per managed instance (rotated)")
    instance_log_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="size at which a log rotates")
    slot_lease_s: float = Field(
        DEFAULT_SLOT_LEASE_S, ge=MIN_SLOT_LEASE_S, le=MAX_SLOT_LEASE_S,
        description="lease on the orchestrator and instance slots a run holds, renewed while it lives; a "
        "holder that dies frees them within this plus the Prefect server's repossessor loop (15 s)")
    start_allowance_s: float = Field(
        DEFAULT_START_ALLOWANCE_S, gt=0,
        description="a run may take this long to start: a worker picks it up (runs sent to a work queue), "
        "then its slots come free; dispatch waits for a queued run at most this plus the scenario's hard cap")


class CloudSettings(BaseModel):
    """Livepeer cloud connection; the api key comes from the environment only."""

    model_config = STRICT

    enabled: bool = True
    app_id: AppId | None = Field(None, description="Scope requires it to end in /ws")
    api_key_env: str = Field(DEFAULT_API_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key: SecretStr | None = Field(None, description="read from $api_key_env by load_settings")
    user_id: str | None = None


class ScopeInstanceConfig(BaseModel):
    """A Scope server the harness drives: static (a URL) or managed (a command it starts)."""

    model_config = STRICT

    name: Name
    kind: Literal["static", "managed"] = "static"
    url: Url | None = None
    orchestrator: str | None = Field(None, description="address runs on this instance are attributed to")
    command: str | None = Field(None, description='managed only, e.g. "daydream-scope --port {port}"')
    port: int | None = Field(None, ge=1, le=65535, description="managed only; None picks a free port")
    startup_timeout_s: float = Field(60.0, gt=0, description="managed start -> /health answers")
    driver: Literal["webrtc", "headless"] | None = Field(
        None, description="media driver of runs on this instance; None: the config's media_driver")
    work_queue: Name | None = Field(
        None, description="work queue (pool scope-loadtest) of the worker on this instance's host; "
        "None: dispatch runs its runs in its own process")

    @model_validator(mode="after")
    def _kind_has_its_fields(self) -> ScopeInstanceConfig:
        """Static instances need a url; managed ones a command with a {port} slot."""
        if self.kind == "static" and self.url is None:
            raise ValueError("a static instance needs a url")
        if self.kind == "managed" and (self.command is None or "{port}" not in self.command):
            raise ValueError("a managed instance needs a command containing {port}")
        return self

    def base_url(self, port: int | None = None) -> str:
        """The instance's URL: the configured one, or loopback at the (given) port."""
        if self.url is not None:
            return self.url.rstrip("/")
        return f"http://{LOCAL_HOST}:{port or self.port}"

    def command_args(self, port: int) -> list[str]:
        """The managed command as argv with ``{port}`` filled in."""
        if self.command is None:
            raise ConfigError("<instance>", f"{self.name}.command", "a static instance has no command")
        return shlex.split(self.command.replace("{port}", str(port)))


class PipelineConfig(BaseModel):
    """One entry of the pipeline registry (a single pipeline or a chain)."""

    model_config = STRICT

    pipeline_ids: list[str] = Field(min_length=1, description="chain members in order")
    modes: list[Mode] = Field(min_length=1)
    width: int = Field(DEFAULT_WIDTH, gt=0)
    height: int = Field(DEFAULT_HEIGHT, gt=0)
    expected_fps: float = Field(gt=0)
    graph_template: str | None = Field(None, description="file name under graphs_dir")
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _size_in_fields(self) -> PipelineConfig:
        """One place for the output size, so a scenario never sees two answers."""
        if {"width", "height"} & set(self.parameters):
            raise ValueError("set the size with the width/height fields, not in parameters")
        return self


class ScenarioSpec(BaseModel):
    """A scenario entry of the YAML: a pipeline x modes x durations (minutes)."""

    model_config = STRICT

    pipeline: str
    modes: list[Mode] = Field(min_length=1)
    durations: list[Annotated[float, Field(gt=0)]] = Field(min_length=1, description="minutes; 0.25 = 15 s")
    prompts_pool: str | None = None
    prompts_pools: list[str] | None = Field(None, min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    graph_template: str | None = Field(None, description="overrides the pipeline's template")

    @model_validator(mode="after")
    def _one_pool_key(self) -> ScenarioSpec:
        """prompts_pool and prompts_pools are alternatives."""
        if self.prompts_pool is not None and self.prompts_pools is not None:
            raise ValueError("give prompts_pool or prompts_pools, not both")
        return self

    def pools(self) -> list[str]:
        """The pool names this spec draws prompts from."""
        return [name for _, name in self.pool_keys()]

    def pool_keys(self) -> list[tuple[str, str]]:
        """(key path inside the spec, pool name) pairs, for precise errors."""
        if self.prompts_pool is not None:
            return [("prompts_pool", self.prompts_pool)]
        return [(f"prompts_pools[{i}]", name) for i, name in enumerate(self.prompts_pools or [])]


class Settings(BaseModel):
    """The whole configuration; checked for broken references when built."""

    model_config = STRICT

    thresholds: Thresholds = Field(default_factory=Thresholds)
    budget: Budget = Field(default_factory=Budget)
    discovery: Discovery = Field(default_factory=Discovery)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    media_driver: Literal["auto", "webrtc", "headless"] = Field(
        "auto", description="how runs drive media; auto: webrtc when cloud.enabled (only WebRTC relays "
        "through the orchestrator in Scope 0.2.4), else headless")
    instances: list[ScopeInstanceConfig] = Field(default_factory=list)
    leaderboard: LeaderboardSettings = Field(default_factory=LeaderboardSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    scenarios: list[ScenarioSpec] = Field(default_factory=list)
    prompt_pools: dict[str, list[str]] = Field(default_factory=dict)
    graph_templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source_file: str = Field("<memory>", description="the YAML file the tree came from")

    @model_validator(mode="after")
    def _references_hold(self) -> Settings:
        """Pipelines, pools, templates and names referenced by scenarios exist and fit."""
        check_settings(self)
        return self

    def expand_scenarios(self) -> list[Scenario]:
        """Every (spec, mode, duration) as a named Scenario, in YAML order."""
        return expand_settings(self)

    def driver_for(self, instance_driver: str | None) -> str:
        """The media driver of a run: the instance's own choice, else media_driver, auto resolved."""
        choice = instance_driver or self.media_driver
        if choice == "auto":
            return "webrtc" if self.cloud.enabled else "headless"
        return choice

    def scenario(self, name: str) -> Scenario:
        """The scenario called ``name``; ConfigError listing close names when unknown."""
        scenarios = {s.name: s for s in self.expand_scenarios()}
        if name not in scenarios:
            problem = f"unknown scenario {name!r}" + close_matches(name, scenarios)
            raise ConfigError(self.source_file, "scenario", problem)
        return scenarios[name]


def default_config_path() -> Path:
    """``config/default.yaml`` beside this module."""
    return Path(__file__).resolve().parent / DEFAULT_CONFIG_NAME


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check a config file (None: $LOADTEST_CONFIG, else the default); ConfigError on any problem."""
    env = os.environ if environ is None else environ
    config_path = Path(path or env.get(CONFIG_ENV_VAR) or default_config_path())
    file = str(config_path)
    raw = read_mapping(config_path)
    _reject_loader_keys(raw, file)
    data = {key: value for key, value in raw.items() if key not in FILE_ONLY_KEYS}
    data["prompt_pools"] = _merged_pools(raw, config_path)
    data["graph_templates"] = load_graph_templates(_sub_dir(raw, "graphs_dir", DEFAULT_GRAPHS_DIR, config_path))
    data["cloud"] = _cloud_with_key(raw.get("cloud"), env, file)
    data["source_file"] = file
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        file_keys = [k for k in Settings.model_fields if k not in LOADER_ONLY_KEYS] + list(FILE_ONLY_KEYS)
        raise translate_validation_error(exc, file=file, model=Settings, top_level_keys=file_keys) from None


def _reject_loader_keys(raw: dict[str, Any], file: str) -> None:
    """Keys only the loader may fill, and secrets, do not belong in the file."""
    for key in LOADER_ONLY_KEYS:
        if key in raw:
            raise ConfigError(file, key, "unknown key (filled by the loader, not the file)")
    cloud = raw.get("cloud")
    if isinstance(cloud, dict) and "api_key" in cloud:
        problem = "secrets do not belong in config files: set the environment variable named by cloud.api_key_env"
        raise ConfigError(file, "cloud.api_key", problem)


def _sub_dir(raw: dict[str, Any], key: str, default: str, config_path: Path) -> Path:
    """A directory named in the YAML (or its default), relative to the YAML file."""
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(str(config_path), key, f"expected a directory path, got {value!r}")
    return config_path.parent / value


def _merged_pools(raw: dict[str, Any], config_path: Path) -> Any:
    """Pools from the prompt files plus any inline ``prompt_pools`` (a name may not be in both)."""
    pools: dict[str, Any] = dict(load_prompt_pools(_sub_dir(raw, "prompts_dir", DEFAULT_PROMPTS_DIR, config_path)))
    inline = raw.get("prompt_pools", {})
    if not isinstance(inline, dict):
        return inline  # pydantic reports the wrong type with its key
    for name in inline:
        if name in pools:
            raise ConfigError(str(config_path), f"prompt_pools.{name}", "pool also defined by a prompts_dir file")
    return pools | inline


def _cloud_with_key(cloud: Any, env: Mapping[str, str], file: str) -> Any:
    """The cloud section with ``api_key`` taken from the environment variable it names."""
    if cloud is None:
        cloud = {}
    if not isinstance(cloud, dict):
        return cloud  # pydantic reports the wrong type with its key
    key_env = cloud.get("api_key_env", DEFAULT_API_KEY_ENV)
    secret = env.get(key_env) if isinstance(key_env, str) else None
    return cloud | {"api_key": SecretStr(secret)} if secret else cloud


def format_config_error(err: ConfigError) -> str:
    """The error as one line a person can act on: file, key, problem."""
    problem = " ".join(str(err.problem).split())
    return f"config error: {err.file}: {err.key}: {problem}"
