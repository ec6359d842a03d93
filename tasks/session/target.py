"""Who a run is: its id, its start time and where it goes (the instance and its orchestrator)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The wall clock, in UTC, for timestamps (never for durations)."""
    return datetime.now(UTC)


def new_run_id(started_at: datetime) -> str:
    """A sortable, unique run id: UTC start second plus random hex."""
    return f"{started_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes: the Scope instance and the orchestrator it is pinned to."""

    scope_url: str
    orchestrator: str | None = None
    orchestrator_uri: str | None = None
    region: str | None = None
    scope_instance: str | None = None
    driver: str | None = None  # "webrtc" or "headless"; None: webrtc when the cloud is enabled
