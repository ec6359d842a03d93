"""The Stats contract and a run as one job."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from analytics.leaderboard.stats import Stats, body_sha256, stats_body, stats_of_run

VALID = {"region": "FRA", "orchestrator": "0xab", "success_rate": 1, "round_trip_time": 2.5, "timestamp": 1725029035,
         "model": "longlive", "pipeline": "live-video-to-video"}
ENDED = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.timezone.utc)
RUN = {"run_id": "r1", "outcome": "failed", "orchestrator": "0xABC", "region": "us-east", "pipeline": "longlive+rife",
       "scenario": "longlive_rife_v2v_1m", "mode": "v2v", "first_frame_s": 3.5, "fps_received": 10.0,
       "failure_category": "orchestrator", "failure_phase": "stream", "failure_reason": "stalled 12 s",
       "checks_failed": ("stall", "fps"), "ended_at": ENDED, "cold_start": False}


def test_the_reference_sample_parses_and_is_an_ai_job():
    stats = Stats.model_validate_json(json.dumps(VALID | {"errors": [{"count": 1, "error_code": "HTTP-STATUS-503"}],
                                                          "unknown_field": 1}))
    assert stats.job_type == "ai" and stats.errors[0].error_code == "HTTP-STATUS-503"


@pytest.mark.parametrize(("field", "value"), [
    ("success_rate", "1"), ("success_rate", 1.5), ("timestamp", 1.5), ("timestamp", True), ("round_trip_time", -1),
    ("region", "F R A"), ("orchestrator", ""), ("model", "a\nb"), ("model", "x" * 257), ("round_trip_time", None),
])
def test_wrong_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError) as error:
        Stats.model_validate_json(json.dumps(VALID | {field: value}))
    assert error.value.errors()[0]["loc"][0] == field


def test_non_finite_numbers_are_refused():
    with pytest.raises(ValidationError, match="round_trip_time"):
        Stats.model_validate_json(json.dumps(VALID).replace('"round_trip_time": 2.5', '"round_trip_time": NaN'))


def test_a_failed_run_maps_onto_one_job_with_its_failed_checks():
    stats = stats_of_run(RUN, live_video_score=0.4)
    assert (stats.region, stats.orchestrator, stats.success_rate, stats.round_trip_time) == ("US-EAST", "0xabc", 0.0, 3.5)
    assert (stats.model, stats.pipeline, stats.model_is_warm) == ("longlive+rife", "live-video-to-video", True)
    assert [e.error_code for e in stats.errors] == ["stall", "fps"]
    assert "orchestrator in stream: stalled 12 s" in stats.errors[0].message
    assert stats.timestamp == int(ENDED.timestamp()) and stats.run_id() == "r1"
    assert json.loads(stats.response_payload)["live_video_score"] == 0.4


def test_the_same_run_gives_the_same_bytes():
    first, second = stats_body(stats_of_run(RUN)), stats_body(stats_of_run(dict(RUN)))
    assert first == second and body_sha256(first) == body_sha256(second)
    assert Stats.model_validate_json(first) == stats_of_run(RUN)


@pytest.mark.parametrize("outcome", ["unavailable", "aborted", None])
def test_only_passed_and_failed_runs_are_jobs(outcome):
    with pytest.raises(ValueError, match="only passed and failed"):
        stats_of_run(RUN | {"outcome": outcome})
