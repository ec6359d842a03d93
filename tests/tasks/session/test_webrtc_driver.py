"""WebRTCDriver over real loopback WebRTC, against the test's answering peer behind a fake Scope client."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import pytest_asyncio

from errors import Category, PhaseFailed, ScopeTimeout
from tasks.scope.models import CloudStatus, SessionMetrics
from tasks.session import drivers  # noqa: F401  (the package imports without aiortc)
from tasks.session.driver import MediaPath, SessionPlan
from tasks.session.drivers import webrtc as webrtc_driver
from tasks.session.drivers.webrtc import WebRTCDriver, initial_parameters, webrtc_graph
from tasks.session.inputs import VIDEO, InputPaths, ensure_local_input
from tests.tasks.scope.test_webrtc_peer import OUTPUT_SIZE, Answerer, prompt_level, wait_for

pytestmark = pytest.mark.timeout(60)


class FakeScope(Answerer):
    """The Scope client calls the driver makes, over the answering peer; metrics list the first session."""

    def __init__(self, *, relay_mode: bool = False, cloud_connected: bool = False, list_all: bool = False) -> None:
        super().__init__()
        self.relay_mode, self.cloud_connected, self.list_all = relay_mode, cloud_connected, list_all
        self.deleted: list[str] = []
        self.rest_prompts: list[str] = []
        self.delete_delay_s = 0.0

    async def session_metrics(self) -> SessionMetrics:
        ids = list(self.sessions)[: None if self.list_all else 1]
        stats = {"frames_in": self.frames_in, "frames_out": 0, "relay_mode": self.relay_mode}
        return SessionMetrics.model_validate({"sessions": {sid: stats for sid in ids}, "gpu": {}})

    async def webrtc_delete(self, session_id: str) -> bool:
        await asyncio.sleep(self.delete_delay_s)
        self.deleted.append(session_id)
        return await self.end(session_id)

    async def cloud_status(self) -> CloudStatus:
        return CloudStatus(connected=self.cloud_connected)

    async def switch_prompt(self, text: str) -> None:
        self.rest_prompts.append(text)
        self.prompt = text


@pytest_asyncio.fixture(loop_scope="function")
async def scope():
    fake = FakeScope()
    yield fake
    await fake.close()


def plan_for(settings, name: str, prompt: str = "first", tmp_path=None) -> SessionPlan:
    scenario = settings.scenario(name)
    local = str(ensure_local_input(VIDEO, tmp_path)) if tmp_path is not None else None
    inputs = InputPaths(image_path="/assets/ref.png", local_clip_path=local)
    return SessionPlan(scenario=scenario, inputs=inputs, first_prompt=prompt, connection_id="run-42", user_id="u")


async def first_picture(driver: WebRTCDriver):
    await wait_for(lambda: driver.peer is not None and driver.peer.frames_received > 0)
    return await driver.tick(with_metrics=False)


def test_initial_parameters_name_pipelines_mode_prompt_and_the_i2v_image(demo_settings):
    t2v = initial_parameters(plan_for(demo_settings, "longlive_t2v_15s"))
    assert t2v == {"width": 512, "height": 512, "pipeline_ids": ["longlive"], "input_mode": "text",
                   "produces_video": True, "prompts": [{"text": "first", "weight": 1.0}]}
    i2v = initial_parameters(plan_for(demo_settings, "longlive_i2v_15s"))
    assert i2v["first_frame_image"] == "/assets/ref.png" and i2v["input_mode"] == "text"
    chain = initial_parameters(plan_for(demo_settings, "longlive_rife_v2v_15s"))
    assert chain["input_mode"] == "video" and chain["pipeline_ids"] == ["longlive", "rife"]
    sources = [node for node in chain["graph"]["nodes"] if node["type"] == "source"]
    assert sources == [{"id": "input", "type": "source", "source_mode": "video"}]


def test_the_graph_conversion_leaves_the_scenario_graph_alone(demo_settings):
    graph = demo_settings.scenario("longlive_rife_v2v_15s").graph
    webrtc_graph(graph)
    assert graph["nodes"][0]["source_mode"] == "video_file"


async def test_a_text_mode_session_from_start_to_stop(demo_settings, scope):
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
        tick = await first_picture(driver)
        assert tick.picture.luma.shape == (OUTPUT_SIZE, OUTPUT_SIZE) and tick.session_alive
        assert 0 < tick.t_s < 5 and tick.frame_seq >= 1 and tick.counters.frames_out >= 1
        later = await driver.tick(with_metrics=True)
        assert later.t_s >= tick.t_s and later.counters.frames_in == 0
        session_id = driver.peer.session_id
    finally:
        await driver.stop()
    await driver.stop()  # a second call neither raises nor deletes again
    assert scope.deleted == [session_id] and not scope.sessions
    assert scope.bodies[0]["connection_id"] == "run-42"
    figures = driver.receiver_figures()
    assert figures.frames_received >= 1 and figures.codec == "VP8" and figures.packets_received


async def test_a_tick_without_a_new_frame_repeats_its_sequence_number_and_time_moves_on(demo_settings, scope):
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
        await first_picture(driver)
        await scope.end(driver.peer.session_id)  # no more frames from here
        await wait_for(lambda: not driver.peer.channel_open or driver.peer.ended_reason is not None)
        a = await driver.tick(with_metrics=False)
        await asyncio.sleep(0.05)
        b = await driver.tick(with_metrics=False)
    finally:
        await driver.stop()
    assert a.frame_seq == b.frame_seq and b.t_s > a.t_s and not b.session_alive


async def test_video_mode_sends_the_clip(demo_settings, scope, tmp_path):
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await driver.start(plan_for(demo_settings, "longlive_v2v_15s", tmp_path=tmp_path))
        await wait_for(lambda: scope.frames_in >= 5)
        tick = await driver.tick(with_metrics=True)
    finally:
        await driver.stop()
    assert scope.bodies[0]["initialParameters"]["input_mode"] == "video"
    assert tick.counters.frames_in >= 5


async def test_a_prompt_switch_goes_over_the_data_channel_and_shows(demo_settings, scope):
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s", prompt="a"))
        await first_picture(driver)
        await wait_for(lambda: driver.peer.channel_open)
        await driver.switch_prompt("b")

        async def shows_b() -> bool:
            picture = (await driver.tick(with_metrics=False)).picture
            return abs(int(np.median(picture.luma)) - prompt_level("b")) <= 3

        deadline = time.monotonic() + 5
        while not await shows_b():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await driver.stop()
    assert scope.rest_prompts == []


async def test_a_prompt_switch_falls_back_to_rest_without_a_data_channel(demo_settings, scope, monkeypatch):
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
        monkeypatch.setattr(driver.peer, "send_parameters", lambda message: False)
        await driver.switch_prompt("b")
    finally:
        await driver.stop()
    assert scope.rest_prompts == ["b"]


@pytest.mark.parametrize(
    "relay_mode,cloud_connected,list_all,expected",
    [(True, True, True, MediaPath.RELAY), (False, True, True, MediaPath.LOCAL),
     (False, False, False, MediaPath.LOCAL)],
)
async def test_media_path_comes_from_what_scope_lists(demo_settings, relay_mode, cloud_connected, list_all, expected):
    scope = FakeScope(relay_mode=relay_mode, cloud_connected=cloud_connected, list_all=list_all)
    other = WebRTCDriver(scope, settings=demo_settings)  # listed first: ours is hidden unless list_all
    driver = WebRTCDriver(scope, settings=demo_settings)
    try:
        await other.start(plan_for(demo_settings, "longlive_t2v_15s"))
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
        assert await driver.media_path() == expected
    finally:
        await driver.stop()
        await other.stop()
        await scope.close()


async def test_an_unlisted_session_on_a_connected_instance_has_no_media_path(demo_settings):
    scope = FakeScope(cloud_connected=True)
    other, driver = WebRTCDriver(scope, settings=demo_settings), WebRTCDriver(scope, settings=demo_settings)
    try:
        await other.start(plan_for(demo_settings, "longlive_t2v_15s"))
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
        with pytest.raises(PhaseFailed):
            await driver.media_path()
    finally:
        await driver.stop()
        await other.stop()
        await scope.close()


async def test_leftovers_are_deleted_one_listed_session_at_a_time(demo_settings, scope):
    orphans = [WebRTCDriver(scope, settings=demo_settings) for _ in range(3)]
    try:
        for orphan in orphans:
            await orphan.start(plan_for(demo_settings, "longlive_t2v_15s"))
        ids = [orphan.peer.session_id for orphan in orphans]
        removed = await WebRTCDriver(scope, settings=demo_settings).remove_leftovers()
    finally:
        for orphan in orphans:
            await orphan.peer.close()  # the killed harness's side
    assert removed == 3 and scope.deleted == ids and not scope.sessions
    assert await WebRTCDriver(scope, settings=demo_settings).remove_leftovers() == 0


async def test_stop_after_a_cancelled_run_still_deletes_and_closes(demo_settings, scope):
    driver = WebRTCDriver(scope, settings=demo_settings)

    async def run() -> None:
        try:
            await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
            await asyncio.sleep(60)
        finally:
            await driver.stop()

    task = asyncio.ensure_future(run())
    await wait_for(lambda: driver.peer is not None and driver.peer.frames_received > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(scope.deleted) == 1 and not scope.sessions
    assert driver.peer.ended_reason is None  # our own ending is not "ended under us"


async def test_a_hanging_delete_is_bounded_and_reported_once(demo_settings, scope, monkeypatch):
    monkeypatch.setattr(webrtc_driver, "DELETE_TIMEOUT_S", 0.2)
    scope.delete_delay_s = 5.0
    driver = WebRTCDriver(scope, settings=demo_settings)
    await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
    started = time.monotonic()
    with pytest.raises(PhaseFailed) as caught:
        await driver.stop()
    assert caught.value.category == Category.NETWORK and time.monotonic() - started < 3
    await driver.stop()
    await wait_for(lambda: driver.peer._pc.connectionState == "closed")


async def test_a_failed_offer_leaves_nothing_to_delete(demo_settings, scope):
    async def unreachable(body):
        raise ScopeTimeout("no answer", route="POST /api/v1/webrtc/offer")

    scope.webrtc_offer = unreachable
    driver = WebRTCDriver(scope, settings=demo_settings)
    with pytest.raises(ScopeTimeout):
        await driver.start(plan_for(demo_settings, "longlive_t2v_15s"))
    await driver.stop()
    assert scope.deleted == []
