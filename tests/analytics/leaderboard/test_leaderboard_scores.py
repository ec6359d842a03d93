"""The leaderboard's score formulas, recomputed from leaderboard.md's definitions."""

from __future__ import annotations

import math

import pytest

from analytics.leaderboard.scores import (
    ai_score, evidence, live_video_score, round_trip_score, transcoding_latency_score, transcoding_score,
)


def test_the_documented_example():
    rtt_score = round_trip_score(2.0, 5.0)
    assert rtt_score == pytest.approx(0.91461, abs=1e-5)
    assert ai_score(1.0, rtt_score) == pytest.approx(0.97011, abs=1e-5)


def test_the_median_scores_0_8_and_no_median_scores_0():
    assert round_trip_score(5.0, 5.0) == pytest.approx(0.8)
    assert round_trip_score(5.0, None) == 0.0 and round_trip_score(5.0, 0.0) == 0.0


def test_nothing_succeeded_scores_0():
    assert ai_score(0.0, 1.0) == 0.0 and transcoding_score(0.0, 1.0) == 0.0


def test_transcoding():
    assert transcoding_latency_score(2.0, 1.0) == pytest.approx(1 - math.exp(-2.0))
    assert transcoding_latency_score(2.0, 0.0) == 0.0
    assert transcoding_score(0.5, 0.8) == pytest.approx(0.4)


@pytest.mark.parametrize(("fps", "first_frame_s", "expected"), [
    (12.0, 0.0, 1.0),
    (24.0, 4.0, 0.7 + 0.3 * 0.5),  # above target: not penalised (the Job Tester's formula would give 0.15)
    (6.0, 4.0, 0.7 * (1 - 0.5 ** 2) + 0.3 * 0.5),
    (None, 2.0, 0.3 * 0.75),  # no fps measured: the fps part is 0
    (12.0, None, 0.7),  # no first frame: the latency part is 0
    (0.0, 9.0, 0.0),
])
def test_live_video_score(fps, first_frame_s, expected):
    assert live_video_score(fps, 12.0, first_frame_s, max_initial_latency_s=8.0) == pytest.approx(expected)


def test_evidence_floor():
    assert evidence(9, 10) == "insufficient evidence" and evidence(10, 10) == "sufficient"
