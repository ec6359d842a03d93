"""WebRTCDriver against a real simulated Scope over loopback WebRTC: sessions, prompts, stop, leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.testing import SimHandle, running_simulator
from tasks.scope.client import ScopeClient
from tasks.session.driver import MediaPath, SessionPlan, Tick
from tasks.session.drivers.webrtc import WebRTCDriver
from tasks.session.frames import analyze_picture, frame_difference
from tasks.session.inputs import VIDEO, InputPaths, ensure_local_input

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
pytest.importorskip("simulator.webrtc", reason="the simulator's WebRTC endpoint is not there yet")

DEADLINE_S = 15.0
ROOT = Path(__file__).resolve().parents[2]
# A harness that holds a session and is then killed: prints the session id, then waits to die.
ORPHAN_SCRIPT = """
import asyncio, sys
from tasks.scope.client import ScopeClient
from tasks.scope.webrtc import OfferPlan, ScopePeer

async def main():
    client = ScopeClient(sys.argv[1])
    peer = ScopePeer(client)
    await peer.open(OfferPlan({"pipeline_ids": ["longlive"], "input_mode": "text",
                               "prompts": [{"text": "orphan", "weight": 1.0}]}))
    while peer.frames_received == 0:
        await asyncio.sleep(0.05)
    print(peer.session_id, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def until(condition: Callable[[], object], timeout_s: float = DEADLINE_S) -> None:
    """Return once `condition()` is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def loaded_client(sim: SimHandle, pipeline: str) -> ScopeClient:
    client = ScopeClient(sim.url)
    await client.load_pipelines([pipeline])
    await client.wait_until_loaded(timeout_s=DEADLINE_S)
    return client


def plan_for(settings, name: str, prompt: str, inputs_dir: Path) -> SessionPlan:
    local = str(ensure_local_input(VIDEO, inputs_dir)) if name.endswith("v2v_15s") else None
    return SessionPlan(scenario=settings.scenario(name), inputs=InputPaths(local_clip_path=local),
                       first_prompt=prompt, connection_id="run-webrtc-it", user_id="tester")


async def first_tick(driver: WebRTCDriver) -> Tick:
    await until(lambda: driver.peer is not None and driver.peer.frames_received > 0)
    return await driver.tick(with_metrics=False)


def live_sessions(sim: SimHandle) -> int:
    return sim.truth()["live_webrtc_sessions"]


async def test_a_video_session_sends_receives_and_stop_leaves_nothing_live(demo_settings, tmp_path):
    with running_simulator("healthy") as sim:
        client = await loaded_client(sim, "longlive")
        driver = WebRTCDriver(client, settings=demo_settings)
        try:
            await driver.start(plan_for(demo_settings, "longlive_v2v_15s", "a city", tmp_path))
            tick = await first_tick(driver)
            assert tick.picture.luma.shape == (512, 512) and 0 < tick.t_s < 5
            await until(lambda: sim.truth()["webrtc_sessions"][0]["frames_in"] > 10)
            with_metrics = await driver.tick(with_metrics=True)
            assert with_metrics.counters.frames_in > 0 and with_metrics.session_alive
            assert await driver.media_path() == MediaPath.LOCAL
        finally:
            await driver.stop()
            await client.aclose()
        await until(lambda: live_sessions(sim) == 0)
        truth = sim.truth()["webrtc_sessions"][0]
    assert truth["connection_id"] == "run-webrtc-it" and truth["mode"] == "video"
    assert driver.receiver_figures().frames_received >= 1


async def test_a_text_session_switches_its_prompt_over_the_data_channel(demo_settings, tmp_path):
    with running_simulator("healthy") as sim:
        client = await loaded_client(sim, "longlive")
        driver = WebRTCDriver(client, settings=demo_settings)
        try:
            await driver.start(plan_for(demo_settings, "longlive_t2v_15s", "a harbour at dawn", tmp_path))
            before = analyze_picture((await first_tick(driver)).picture.luma)
            await until(lambda: driver.peer.channel_open)
            await driver.switch_prompt("a glacier at night")

            async def moved() -> bool:
                now = analyze_picture((await driver.tick(with_metrics=False)).picture.luma)
                return (frame_difference(before, now) or 0.0) > 0.1

            deadline = time.monotonic() + DEADLINE_S
            while not await moved():
                assert time.monotonic() < deadline, "the output never moved after the switch"
                await asyncio.sleep(0.05)
        finally:
            await driver.stop()
            await client.aclose()
        await until(lambda: live_sessions(sim) == 0)
        assert "a glacier at night" in sim.truth()["webrtc_sessions"][0]["prompt_texts"]


async def test_a_session_ended_by_scope_is_seen_as_ended(demo_settings, tmp_path):
    with running_simulator("healthy") as sim:
        client = await loaded_client(sim, "longlive")
        driver = WebRTCDriver(client, settings=demo_settings)
        try:
            await driver.start(plan_for(demo_settings, "longlive_t2v_15s", "a forest", tmp_path))
            await first_tick(driver)
            await client.webrtc_delete(driver.peer.session_id)  # as if Scope ended it under us
            await until(lambda: driver.peer.ended_reason is not None)
            assert not (await driver.tick(with_metrics=False)).session_alive
        finally:
            await driver.stop()
            await client.aclose()
    assert "stream_stopped" in driver.peer.ended_reason or "closed" in driver.peer.ended_reason


async def test_a_killed_harness_leaves_a_session_that_the_next_run_removes(demo_settings):
    with running_simulator("healthy") as sim:
        client = await loaded_client(sim, "longlive")
        orphan = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, sim.url], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
        try:
            session_id = (await asyncio.wait_for(asyncio.to_thread(orphan.stdout.readline), DEADLINE_S)).strip()
            orphan.send_signal(signal.SIGKILL)
            orphan.wait(timeout=DEADLINE_S)
            assert live_sessions(sim) == 1  # Scope keeps a killed client's session (~30 s on real 0.2.4)
            removed = await WebRTCDriver(client, settings=demo_settings).remove_leftovers()
            await until(lambda: live_sessions(sim) == 0)
        finally:
            if orphan.poll() is None:
                orphan.kill()
                orphan.wait(timeout=DEADLINE_S)
            orphan.stdout.close()
            await client.aclose()
    assert removed == 1 and session_id
