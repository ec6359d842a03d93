"""The leaderboard's scores, as leaderboard.md (and livepeer/leaderboard-serverless's code) define them.

AI jobs, per orchestrator x region over the selected stats:
    k = -ln(0.8) / median_rtt          (median over the selection's succeeded, non-zero-rtt stats)
    round_trip_score = exp(-k x rtt)   (rtt: the group's average; 0.8 at the median)
    score = 0.65 x success_rate + 0.35 x round_trip_score, and 0 when success_rate is 0
Transcoding:
    latency_score = 1 - exp(-seg_duration / rtt)   (0 when rtt is 0)
    score = success_rate x latency_score

Live video (the AI Job Tester's score of a stream), with two deliberate changes:
    fps_score = max(0, 1 - (1 - min(fps, target) / target)^2)   output above target is not penalised
    latency_score = max(0, 1 - first_frame_s / max_initial_latency_s)
    score = clamp(0.7 x fps_score + 0.3 x latency_score, 0, 1)
and an aggregate over fewer than `min_jobs` jobs is "insufficient evidence", not a rank.
"""

from __future__ import annotations

import math

SCORE_AT_MEDIAN = 0.8
SUCCESS_WEIGHT, RTT_WEIGHT = 0.65, 0.35
LIVE_FPS_WEIGHT, LIVE_LATENCY_WEIGHT = 0.7, 0.3
INSUFFICIENT_EVIDENCE = "insufficient evidence"
SUFFICIENT_EVIDENCE = "sufficient"


def round_trip_score(rtt: float, median_rtt: float | None) -> float:
    """exp(-k x rtt) with k set so that the median scores 0.8; 0 without a positive median (no basis)."""
    if median_rtt is None or not median_rtt > 0:
        return 0.0
    k = -math.log(SCORE_AT_MEDIAN) / median_rtt
    return math.exp(-k * rtt)


def ai_score(success_rate: float, rtt_score: float) -> float:
    """0.65 x success_rate + 0.35 x round_trip_score; 0 when nothing succeeded."""
    if success_rate == 0:
        return 0.0
    return SUCCESS_WEIGHT * success_rate + RTT_WEIGHT * rtt_score


def transcoding_latency_score(seg_duration: float, rtt: float) -> float:
    """1 - exp(-seg_duration / rtt); 0 for a zero round trip (the reference's rule)."""
    if rtt == 0:
        return 0.0
    return 1.0 - math.exp(-(seg_duration / rtt))


def transcoding_score(success_rate: float, latency_score: float) -> float:
    """success_rate x latency_score; 0 when nothing succeeded."""
    if success_rate == 0:
        return 0.0
    return success_rate * latency_score


def live_fps_score(fps: float | None, target_fps: float) -> float:
    """1 at or above target, falling quadratically to 0 at 0 fps (no fps measured: 0)."""
    if fps is None or not math.isfinite(fps) or not target_fps > 0:
        return 0.0
    ratio = min(max(fps, 0.0), target_fps) / target_fps
    return max(0.0, 1.0 - (1.0 - ratio) ** 2)


def live_latency_score(first_frame_s: float | None, max_initial_latency_s: float) -> float:
    """1 for an instant first frame, 0 at or beyond the maximum (no first frame: 0)."""
    if first_frame_s is None or not math.isfinite(first_frame_s) or not max_initial_latency_s > 0:
        return 0.0
    return max(0.0, 1.0 - max(first_frame_s, 0.0) / max_initial_latency_s)


def live_video_score(fps: float | None, target_fps: float, first_frame_s: float | None, *,
                     max_initial_latency_s: float) -> float:
    """The live-video score of one stream, 0-1."""
    score = (LIVE_FPS_WEIGHT * live_fps_score(fps, target_fps)
             + LIVE_LATENCY_WEIGHT * live_latency_score(first_frame_s, max_initial_latency_s))
    return min(1.0, max(0.0, score))


def evidence(jobs: int, min_jobs: int) -> str:
    """"sufficient" from `min_jobs` jobs on, else "insufficient evidence"."""
    return SUFFICIENT_EVIDENCE if jobs >= min_jobs else INSUFFICIENT_EVIDENCE
