"""Measured figures against the simulator's ground truth: first-frame time and steady output fps.

Several healthy sessions (different seeds, so different first-frame draws; a single pipeline,
a frame-doubling chain in graph mode and a slower profile) run at once over loopback HTTP.
"""

from __future__ import annotations

import asyncio

import pytest

from analytics.lake import Lake
from tests.integration.sessions import run_on_simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DURATION_S = 11.0  # after the demo's 2 s fps warm-up, ~9 s of steady window
FIRST_FRAME_TOLERANCE_S = 0.15
FPS_TOLERANCE = 0.03
ORCHESTRATOR = "0x" + "cd" * 20

# (profile, scenario, seed): seeds change the simulator's first-frame draw per run
CASES = [
    ("healthy", "longlive_t2v_15s", 11),
    ("healthy", "longlive_t2v_15s", 12),
    ("healthy", "longlive_t2v_15s", 13),
    ("healthy", "longlive_rife_v2v_15s", 21),
    ("healthy", "longlive_rife_v2v_15s", 22),
    ("slow", "ltx2_t2v_15s", 31),
]
IDS = [f"{profile}-{scenario}-seed{seed}" for profile, scenario, seed in CASES]


async def _measure(profile: str, scenario: str, seed: int, settings, lake: Lake):
    return await run_on_simulator(settings, lake, profile=profile, seed=seed, scenario=scenario,
                                  duration_s=DURATION_S, orchestrator=ORCHESTRATOR)


@pytest.fixture(scope="module")
async def measured(demo_settings, tmp_path_factory):
    """Every case run once, all at the same time, each on its own simulated instance."""
    lake = Lake(tmp_path_factory.mktemp("accuracy"))
    results = await asyncio.gather(*(_measure(p, s, seed, demo_settings, lake) for p, s, seed in CASES))
    return dict(zip(IDS, results, strict=True))


@pytest.mark.parametrize("case", IDS)
def test_first_frame_matches_the_simulator(case, measured):
    record, truth = measured[case]
    assert record.outcome == "passed", record.failure_reason
    assert len(truth["sessions"]) == 1
    true_first_frame_s = truth["sessions"][-1]["first_frame_s"]
    assert record.first_frame_s == pytest.approx(true_first_frame_s, abs=FIRST_FRAME_TOLERANCE_S)


@pytest.mark.parametrize("case", IDS)
def test_steady_fps_matches_the_simulator(case, measured):
    record, truth = measured[case]
    assert record.outcome == "passed", record.failure_reason
    fps_true = truth["sessions"][-1]["fps_true"]
    assert record.fps_steady == pytest.approx(fps_true, rel=FPS_TOLERANCE)
    assert record.stream_s == pytest.approx(DURATION_S, abs=1.0)


def test_the_cases_cover_different_truths(measured):
    """The comparison means something only if the truths differ: draws per seed, rates per chain."""
    truths = {case: measured[case][1]["sessions"][-1] for case in IDS}
    first_frames = {round(t["first_frame_s"], 3) for t in truths.values()}
    assert len(first_frames) >= len(IDS) - 1
    single = truths[IDS[0]]
    doubled = truths[IDS[3]]
    assert doubled["pipeline_ids"] == ["longlive", "rife"] and doubled["graph"] is True
    assert doubled["fps_true"] == pytest.approx(2 * single["fps_true"])  # rife doubles the frame rate
    assert truths[IDS[-1]]["fps_true"] != single["fps_true"]
