"""Configuration of the leaderboard API we serve and of the leaderboards we post our runs to.

Secrets never come from the file: the API's HMAC secret is read from the environment variable
named by `api.secret_env` (default LEADERBOARD_SECRET), each target's from its own `secret_env`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_SECRET_ENV = "LEADERBOARD_SECRET"
DEFAULT_WINDOW_HOURS = 24.0  # the reference's START_TIME_WINDOW
DEFAULT_BODY_LIMIT_BYTES = 64 * 1024
DEFAULT_REPLAY_WINDOW_S = 24 * 3600.0
DEFAULT_FUTURE_SKEW_S = 300.0
DEFAULT_TARGET_FPS = 12.0  # the AI Job Tester's default target
DEFAULT_MAX_INITIAL_LATENCY_S = 8.0  # the AI Job Tester's default
DEFAULT_MIN_JOBS_TO_RANK = 10
_URL = re.compile(r"^https?://[^\s/@]+(/\S*)?$")


def _http_url(value: str) -> str:
    """An http(s) URL without credentials in it (a secret in a URL would be logged)."""
    if not _URL.match(value):
        raise ValueError("expected an http:// or https:// URL without user:password@")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class ApiSettings(BaseModel):
    """The leaderboard API this harness serves (`loadtest api`)."""

    model_config = STRICT

    host: str = Field("127.0.0.1", min_length=1, description="address `loadtest api` binds by default")
    port: int = Field(8088, ge=1, le=65535, description="port `loadtest api` binds by default")
    window_hours: float = Field(DEFAULT_WINDOW_HOURS, gt=0, description="window without since/until "
                                "(the reference's START_TIME_WINDOW)")
    secret_env: str = Field(DEFAULT_SECRET_ENV, pattern=ENV_NAME, description="variable holding the HMAC "
                            "secret of POST /api/post_stats; unset or empty disables POST (503)")
    body_limit_bytes: int = Field(DEFAULT_BODY_LIMIT_BYTES, ge=1024, le=1024 * 1024,
                                  description="largest POST body accepted (413 above)")
    replay_window_s: float = Field(DEFAULT_REPLAY_WINDOW_S, gt=0, description="a posted timestamp older "
                                   "than this is refused as a possible replay")
    future_skew_s: float = Field(DEFAULT_FUTURE_SKEW_S, ge=0, description="a posted timestamp this far "
                                 "ahead of our clock is refused")
    extra_regions: dict[str, str] = Field(default_factory=dict, description="region id -> display name, "
                                          "accepted beside the reference's regions and those discovery saw")


class LeaderboardTarget(BaseModel):
    """A leaderboard our finished relay runs are posted to."""

    model_config = STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="names the target in the "
                      "outbox and in `loadtest publish --status`")
    url: HttpUrl = Field(description="the leaderboard's base URL; stats go to <url>/api/post_stats")
    secret_env: str = Field(DEFAULT_SECRET_ENV, pattern=ENV_NAME, description="variable holding its secret")
    timeout_s: float = Field(10.0, gt=0, le=120, description="per POST")


class OutboxSettings(BaseModel):
    """How the outbox posts: back-off, age limit, batch size."""

    model_config = STRICT

    backoff_s: float = Field(30.0, gt=0, description="wait after a run's first failed attempt; doubles")
    backoff_max_s: float = Field(3600.0, gt=0, description="longest wait between two attempts")
    max_age_hours: float = Field(24.0, gt=0, description="a run older than this is not posted any more "
                                 "(expired); keep it within the receivers' replay window")
    batch_size: int = Field(200, ge=1, le=10_000, description="posts per target per publish round")


class LiveVideoScoring(BaseModel):
    """The live-video score (the AI Job Tester's formula, with our two improvements)."""

    model_config = STRICT

    default_target_fps: float = Field(DEFAULT_TARGET_FPS, gt=0, description="target when a run has no "
                                      "expected_fps and its pipeline none in config")
    max_initial_latency_s: float = Field(DEFAULT_MAX_INITIAL_LATENCY_S, gt=0, description="first frame "
                                         "latency scoring 0")
    min_jobs_to_rank: int = Field(DEFAULT_MIN_JOBS_TO_RANK, ge=1, description="fewer jobs read "
                                  '"insufficient evidence" instead of a score')


class LeaderboardSettings(BaseModel):
    """The leaderboard section: the API we serve, the targets we post to, the outbox, the live-video score."""

    model_config = STRICT

    api: ApiSettings = Field(default_factory=ApiSettings)
    targets: list[LeaderboardTarget] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    live_video: LiveVideoScoring = Field(default_factory=LiveVideoScoring)

    def target(self, name: str) -> LeaderboardTarget | None:
        """The target called `name`, if configured."""
        return next((t for t in self.targets if t.name == name), None)
