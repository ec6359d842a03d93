"""Inputs against the simulator over loopback HTTP: uploaded once per instance, accepted by session start."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path, PurePosixPath

import pytest

from config.settings import load_settings
from simulator.testing import running_simulator
from tasks.session.inputs import build_session_request, ensure_local_input, ensure_uploaded, pipelines_to_load
from tasks.scope.client import ScopeClient

pytestmark = pytest.mark.integration

QUICK = {"connect_s": 0.1, "load_s": 0.1, "first_frame_s": 0.2}
FIRST_FRAME_WAIT_S = 10.0
FRAME_POLL_S = 0.05


async def test_inputs_are_uploaded_once_per_instance(tmp_path: Path) -> None:
    with running_simulator("healthy", overrides=QUICK) as one, running_simulator("healthy", overrides=QUICK) as two:
        async with ScopeClient(one.url) as client:
            before = len(await client.list_assets())
            first = await ensure_uploaded(client, {"video", "image"}, tmp_path)
            after_first = len(await client.list_assets())
            second = await ensure_uploaded(client, {"video", "image"}, tmp_path)
            after_second = len(await client.list_assets())
            # the simulator shares this host, so the server-side files can be compared with ours
            served = {kind: Path(path).read_bytes() for kind, path in (("video", first.clip_path),
                                                                      ("image", first.image_path)) if path}
        async with ScopeClient(two.url) as other:
            elsewhere = await ensure_uploaded(other, {"video"}, tmp_path)
            assert len(await other.list_assets()) == 1
    assert after_first == before + 2
    assert after_second == after_first  # the second call found both by name and uploaded nothing
    assert second == first
    for server_path, kind in ((first.clip_path, "video"), (first.image_path, "image")):
        assert server_path is not None and PurePosixPath(server_path).is_absolute()
        local = ensure_local_input(kind, tmp_path)
        assert PurePosixPath(server_path).name == local.name
        assert served[kind] == local.read_bytes()
    assert elsewhere.clip_path is not None and elsewhere.clip_path != first.clip_path


async def _first_frame(client: ScopeClient, sink_node_id: str | None) -> bytes | None:
    """Poll the session's frame until one arrives or the wait runs out."""
    deadline = time.monotonic() + FIRST_FRAME_WAIT_S
    while time.monotonic() < deadline:
        frame = await client.get_frame(sink_node_id=sink_node_id)
        if frame is not None:
            return frame
        await asyncio.sleep(FRAME_POLL_S)
    return None


@pytest.mark.parametrize(
    "name",
    ["longlive_t2v_1m", "longlive_v2v_1m", "ltx2_i2v_1m", "longlive_rife_v2v_5m",
     "video_depth_anything_longlive_rife_v2v_5m"],
)
async def test_built_requests_start_sessions_that_produce_frames(tmp_path: Path, name: str) -> None:
    scenario = load_settings(environ={}).scenario(name)
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as client:
            inputs = await ensure_uploaded(client, {scenario.input_kind}, tmp_path)
            await client.load_pipelines(pipelines_to_load(scenario))
            await client.wait_until_loaded(timeout_s=FIRST_FRAME_WAIT_S)
            request, sink = build_session_request(scenario, inputs)
            await client.start_session(**request)
            frame = await _first_frame(client, sink)
            assert await client.stop_session()
        truth = sim.truth()
    assert frame is not None and frame[:2] == b"\xff\xd8"
    [session] = truth["sessions"]
    assert sorted(session["pipeline_ids"]) == sorted(scenario.pipeline_ids)
    assert session["prompt_texts"][0] == scenario.prompts[0]
