"""Measured figures against the simulator's ground truth, through the WebRTC relay: first-frame time,
the fps received, and freezes counted by the W3C rule against the freeze bursts injected.

Several healthy sessions (different seeds, so different first-frame draws; a single pipeline,
a frame-doubling chain fed the clip as a track, and a slower profile) run at once over loopback.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

import pytest

from analytics.lake import Lake
from tasks.session.lifecycle import run_session
from tasks.session.target import RunTarget
from tests.integration.sessions import simulator_process, until_measured, void_measurement

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DURATION_S = 11.0  # after the demo's 2 s fps warm-up, ~9 s of steady window
FIRST_FRAME_TOLERANCE_S = 0.15
FPS_TOLERANCE = 0.03
ORCHESTRATOR = "0x" + "cd" * 20
CONCURRENT_RUNS = 3
# A run whose own sampling ran this late was timed on a starved machine: measured again (the
# first-frame tolerance is 150 ms).
MAX_TICK_LAG_MS = 100.0

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


async def run_on_started_simulators(settings, lake: Lake, cases: list[tuple[str, dict | None, int, str]]):
    """(record, truth) per case (profile, overrides, seed, scenario), a few at a time, each on its own
    simulator process, all started before the first run (a starting Python process would eat the CPU
    the harness's frame timing needs)."""
    gate = asyncio.Semaphore(CONCURRENT_RUNS)
    with ExitStack() as stack:
        sims = [stack.enter_context(simulator_process(profile, overrides=overrides, seed=seed))
                for profile, overrides, seed, _ in cases]

        async def measure(sim, scenario):
            async with gate:
                record = await until_measured(
                    lambda: run_session(settings=settings, scenario=settings.scenario(scenario),
                                        target=RunTarget(scope_url=sim.url, orchestrator=ORCHESTRATOR),
                                        lake=lake, duration_s=DURATION_S),
                    lambda run: void_measurement(run, max_tick_lag_ms=MAX_TICK_LAG_MS))
                return record, sim.truth()

        return await asyncio.gather(*(measure(sim, case[3]) for sim, case in zip(sims, cases, strict=True)))


@pytest.fixture(scope="module")
async def measured(demo_settings, tmp_path_factory):
    """Every case run once."""
    cases = [(profile, None, seed, scenario) for profile, scenario, seed in CASES]
    results = await run_on_started_simulators(demo_settings, Lake(tmp_path_factory.mktemp("accuracy")), cases)
    return dict(zip(IDS, results, strict=True))


def _session_truth(truth: dict) -> dict:
    """The measured run's WebRTC session as the simulator saw it (the last: void attempts came before)."""
    assert 1 <= len(truth["webrtc_sessions"]) <= 3 and truth["live_webrtc_sessions"] == 0
    return truth["webrtc_sessions"][-1]


@pytest.mark.parametrize("case", IDS)
def test_first_frame_matches_the_simulator(case, measured):
    record, truth = measured[case]
    assert record.outcome == "passed", record.failure_reason
    assert record.media_path == "relay"
    true_first_frame_s = _session_truth(truth)["first_frame_s"]
    assert record.first_frame_s == pytest.approx(true_first_frame_s, abs=FIRST_FRAME_TOLERANCE_S)


@pytest.mark.parametrize("case", IDS)
def test_fps_received_matches_the_simulator(case, measured):
    record, truth = measured[case]
    assert record.outcome == "passed", record.failure_reason
    fps_true = _session_truth(truth)["fps_true"]
    assert record.fps_received == pytest.approx(fps_true, rel=FPS_TOLERANCE)
    assert record.fps_steady == pytest.approx(fps_true, rel=FPS_TOLERANCE)  # the stall/fps checks' own figure
    assert record.freeze_count == 0
    assert record.stream_s == pytest.approx(DURATION_S, abs=1.0)


def test_the_cases_cover_different_truths(measured):
    """The comparison means something only if the truths differ: draws per seed, rates per chain."""
    truths = {case: _session_truth(measured[case][1]) for case in IDS}
    first_frames = {round(t["first_frame_s"], 3) for t in truths.values()}
    assert len(first_frames) >= len(IDS) - 1
    single = truths[IDS[0]]
    doubled = truths[IDS[3]]
    assert doubled["pipeline_ids"] == ["longlive", "rife"] and doubled["mode"] == "video"
    assert doubled["fps_true"] == pytest.approx(2 * single["fps_true"])  # rife doubles the frame rate
    assert truths[IDS[-1]]["fps_true"] != single["fps_true"]


BURSTS = (1, 2, 4)


@pytest.fixture(scope="module")
async def bursts_measured(demo_settings, tmp_path_factory):
    """One run per injected burst count."""
    cases = [("freeze_bursts", {"fault_after_s": 2.0, "freeze_burst_count": b, "freeze_burst_every_s": 2.0}, 0,
              "longlive_t2v_15s") for b in BURSTS]
    results = await run_on_started_simulators(demo_settings, Lake(tmp_path_factory.mktemp("bursts")), cases)
    return dict(zip(BURSTS, results, strict=True))


@pytest.mark.parametrize("bursts", BURSTS)
def test_freezes_counted_equal_the_bursts_injected(bursts, bursts_measured):
    record, truth = bursts_measured[bursts]
    injected = _session_truth(truth)["freeze_bursts"]
    assert injected["count"] == bursts
    assert record.freeze_count == bursts, record.failure_reason
    burst_s = sum(end - start for start, end in injected["times"])
    assert record.freeze_total_s == pytest.approx(burst_s, abs=0.25 * bursts)
