"""The leaderboard API's answers, computed from the lake: our relay runs plus the stats others posted.

(Interface first; the implementation follows.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from analytics.lake import Lake
from analytics.records import JobType


@dataclass(frozen=True)
class StatsQuery:
    """The selection of a leaderboard request: window (inclusive, UTC) and optional filters."""

    since: dt.datetime
    until: dt.datetime
    orchestrator: str | None = None  # lower case
    region: str | None = None  # upper case
    model: str | None = None
    pipeline: str | None = None
    job_type: JobType | None = None  # None: ai when model and pipeline are given, else transcoding

    @property
    def kind(self) -> JobType:
        """The job type selected (the reference's setJobTypeIfEmpty)."""
        if self.job_type is not None:
            return self.job_type
        return "ai" if self.model or self.pipeline else "transcoding"


class Leaderboard:
    """Answers of the leaderboard endpoints over one lake and one configuration."""

    def __init__(self, lake: Lake, settings: Any) -> None:
        self.lake, self.settings = lake, settings

    def aggregated_stats(self, query: StatsQuery) -> dict[str, dict[str, dict[str, Any]]]:
        """{orchestrator: {REGION: {success_rate, round_trip_score, score, + extras}}}."""
        raise NotImplementedError

    def raw_stats(self, query: StatsQuery) -> dict[str, list[dict[str, Any]]]:
        """{REGION: [Stats, newest first]} of query.orchestrator."""
        raise NotImplementedError

    def pipelines(self, query: StatsQuery) -> list[dict[str, Any]]:
        """[{id, models, regions}] of the AI jobs in the window."""
        raise NotImplementedError

    def regions(self) -> list[dict[str, str]]:
        """[{id, name, type}]: the reference's regions, config's extra ones, those our orchestrators are in."""
        raise NotImplementedError

    def region_known(self, region: str) -> bool:
        """Whether a posted stat's region (any case) is one of `regions()`."""
        raise NotImplementedError
