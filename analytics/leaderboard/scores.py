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

import polars as pl

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


def live_video_score_expr(fps: pl.Expr, target_fps: pl.Expr | float, first_frame_s: pl.Expr,
                          max_initial_latency_s: float) -> pl.Expr:
    """The live-video score of each stream, 0-1, as a Polars expression (the one formula).

    A missing fps or first frame scores 0 on that part; fps above the target counts as the target.
    """
    target = target_fps if isinstance(target_fps, pl.Expr) else pl.lit(float(target_fps))
    measured = fps.fill_nan(None)
    ratio = pl.when(measured.is_not_null()).then(pl.min_horizontal(measured.clip(lower_bound=0.0), target) / target)
    fps_score = (1.0 - (1.0 - ratio.fill_null(0.0)) ** 2).clip(lower_bound=0.0)
    latency = (1.0 - first_frame_s.clip(lower_bound=0.0) / max_initial_latency_s).clip(lower_bound=0.0)
    score = LIVE_FPS_WEIGHT * fps_score + LIVE_LATENCY_WEIGHT * latency.fill_nan(0.0).fill_null(0.0)
    return score.clip(0.0, 1.0)


def live_video_score(fps: float | None, target_fps: float, first_frame_s: float | None, *,
                     max_initial_latency_s: float) -> float:
    """The live-video score of one stream, 0-1 (`live_video_score_expr` on one row)."""
    if not target_fps > 0 or not max_initial_latency_s > 0:
        raise ValueError("target_fps and max_initial_latency_s must be positive")
    row = pl.DataFrame({"fps": [fps], "first_frame_s": [first_frame_s]},
                       schema={"fps": pl.Float64, "first_frame_s": pl.Float64})
    expr = live_video_score_expr(pl.col("fps"), target_fps, pl.col("first_frame_s"), max_initial_latency_s)
    return float(row.select(expr).item())


def evidence(jobs: int, min_jobs: int) -> str:
    """"sufficient" from `min_jobs` jobs on, else "insufficient evidence"."""
    return SUFFICIENT_EVIDENCE if jobs >= min_jobs else INSUFFICIENT_EVIDENCE
