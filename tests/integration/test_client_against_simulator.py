"""The Scope client against the simulator over real loopback HTTP: every route, quirk and fault."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError
from pydantic import SecretStr

from simulator.testing import running_simulator
from errors import (
    Category,
    CloudCredentialsMissing,
    NoCapacity,
    Phase,
    PhaseFailed,
    PhaseTimeout,
    ScopeHTTPError,
    ScopeTimeout,
    ScopeUnreachable,
    mentions_no_capacity,
)
from tasks.scope.client import ScopeClient, ScopeTimeouts
from tasks.scope.models import CloudStatus, Prompt, SessionMetrics
from tasks.scope.preflight import preflight

pytestmark = pytest.mark.integration

T = TypeVar("T")
QUICK = {"connect_s": 0.1, "load_s": 0.1, "first_frame_s": 0.2, "load_status_lag_s": 0.02}
SHORT = ScopeTimeouts(connect_s=1.0, read_s=0.5, frame_s=0.5, upload_s=5.0, stream_s=5.0)
CREDENTIALS = {"app_id": "daydream/scope-app/ws", "api_key": SecretStr("sk-sim-0123456789")}
SIZE = 512


async def eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout_s: float = 10.0
) -> T:
    """Read until `done` holds; fail the test with the last value after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s; last value {value!r}")
        await asyncio.sleep(0.05)


async def start_text_session(scope: ScopeClient, prompt: str = "a red fox in the snow") -> bytes:
    """Load longlive, start a text session, and return its first frame."""
    assert await scope.stop_session() is False  # stop before start, nothing was running
    await scope.load_pipelines(["longlive"])
    await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02)
    started = await scope.start_session(
        pipeline_id="longlive",
        prompts=[Prompt(text=prompt)],
        parameters={"width": SIZE, "height": SIZE},
    )
    assert started.status == "ok" and started.pipeline_id == "longlive"
    frame = await eventually(scope.get_frame, lambda f: f is not None)
    assert frame is not None
    return frame


async def after_fault(sim: Any, kind: str) -> None:
    """Wait until the simulator's truth says the fault `kind` has begun."""

    async def faults() -> list[dict[str, Any]]:
        return sim.truth()["faults"]

    await eventually(faults, lambda found: any(f["kind"] == kind for f in found))


def decode(frame: bytes) -> Image.Image:
    """The frame decoded as an 8-bit luma image."""
    image = Image.open(io.BytesIO(frame))
    image.load()
    return image.convert("L")


def luma_difference(a: bytes, b: bytes) -> float:
    """Mean absolute luma difference of two frames, 0-1, at a quarter of their size."""
    first, second = (np.asarray(decode(f).resize((SIZE // 4, SIZE // 4)), np.float32) for f in (a, b))
    return float(np.abs(first - second).mean() / 255)


def mean_luma(frame: bytes) -> float:
    """Mean luma of a frame, 0-255."""
    return float(np.asarray(decode(frame), np.float32).mean())


async def frames_produced(scope: ScopeClient, count: int) -> None:
    """Wait until the session has put out `count` more frames."""
    start = (await headless(scope)).frames_out or 0
    await eventually(lambda: headless(scope), lambda h: (h.frames_out or 0) >= start + count)


async def headless(scope: ScopeClient) -> Any:
    """The session counters, asserting there is a session."""
    metrics = await scope.session_metrics()
    assert metrics.headless is not None
    return metrics.headless


# -- every route on a healthy instance ------------------------------------------------------


async def test_capability_routes():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            health = await scope.health()
            hardware = await scope.hardware_info()
            schemas = await scope.pipeline_schemas()
            status = await scope.pipeline_status()
    assert health.status == "healthy" and health.version == "0.2.4"
    assert hardware.vram_gb is not None and hardware.vram_gb > 0
    assert {"longlive", "rife", "passthrough"} <= set(schemas)
    assert "text" in schemas["longlive"].supported_modes
    assert status.status == "not_loaded"


async def test_session_lifecycle_and_parameters():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            first = await start_text_session(scope, "a red fox in the snow")
            assert decode(first).size == (SIZE, SIZE)
            counters = await headless(scope)
            later = await eventually(
                lambda: headless(scope), lambda h: (h.frames_out or 0) > (counters.frames_out or 0)
            )
            assert later.fps_out is None or later.fps_out > 0
            await scope.update_parameters({"noise_scale": 0.4})
            await scope.switch_prompt("a blue whale in the deep sea", weight=0.8)
            parameters = await scope.get_parameters()
            assert parameters.get("noise_scale") == 0.4
            assert parameters.get("prompts") == [{"text": "a blue whale in the deep sea", "weight": 0.8}]
            assert await scope.stop_session() is True
            assert await scope.stop_session() is False
            assert (await scope.session_metrics()).headless is None
        truth = sim.truth()
    [session] = truth["sessions"]
    assert session["stopped"] and not session["replaced"] and session["pipeline_ids"] == ["longlive"]
    assert session["prompt_texts"][0] == "a red fox in the snow"


async def test_frame_is_none_before_the_first_frame_and_bad_quality_is_422():
    with running_simulator("healthy", overrides={**QUICK, "first_frame_s": 2.0}) as sim:
        async with ScopeClient(sim.url) as scope:
            assert await scope.get_frame() is None  # no session at all
            await scope.load_pipelines(["longlive"])
            await scope.wait_until_loaded(timeout_s=10.0)
            await scope.start_session(pipeline_id="longlive", prompts=[Prompt(text="x")])
            assert await scope.get_frame() is None  # started, first frame not out yet
            with pytest.raises(ScopeHTTPError) as caught:
                await scope.get_frame(quality=0)
    assert caught.value.status == 422 and caught.value.category == Category.PROTOCOL


async def test_requests_scope_refuses_are_protocol_or_runner_errors():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            with pytest.raises(ScopeHTTPError) as no_lists:
                await scope.load_pipelines()
            with pytest.raises(ScopeHTTPError) as no_pipeline:
                await scope.start_session(prompts=[Prompt(text="x")])
            with pytest.raises(ScopeHTTPError) as not_loaded:
                await scope.start_session(pipeline_id="longlive")
            with pytest.raises(ScopeHTTPError) as bad_extension:
                await scope.upload_asset("clip.exe", b"MZ")
    assert (no_lists.value.status, no_lists.value.category) == (400, Category.PROTOCOL)
    assert (no_pipeline.value.status, no_pipeline.value.category) == (422, Category.PROTOCOL)
    assert (not_loaded.value.status, not_loaded.value.category) == (500, Category.RUNNER)
    assert "FrameProcessor failed to start" in (not_loaded.value.detail or "")
    assert (bad_extension.value.status, bad_extension.value.category) == (400, Category.PROTOCOL)


def tiny_clip(path: Path) -> bytes:
    """A one-second 64x64 MPEG-4 clip, as a test input."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(10):
            pixels = np.full((64, 64, 3), 20 * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path.read_bytes()


def chain_graph(source_path: str) -> dict[str, Any]:
    """scope-api.md's longlive+rife graph over a video file."""
    chain = ["input", "longlive", "rife", "output"]
    nodes = [
        {"id": "input", "type": "source", "source_mode": "video_file", "source_name": source_path},
        {"id": "longlive", "type": "pipeline", "pipeline_id": "longlive"},
        {"id": "rife", "type": "pipeline", "pipeline_id": "rife"},
        {"id": "output", "type": "sink"},
    ]
    edges = [
        {"from": a, "from_port": "video", "to_node": b, "to_port": "video", "kind": "stream"}
        for a, b in zip(chain, chain[1:])
    ]
    return {"nodes": nodes, "edges": edges}


async def test_assets_graph_session_and_output_stream(tmp_path):
    clip = tiny_clip(tmp_path / "in.mp4")
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            asset = await scope.upload_asset("in.mp4", clip)
            assert asset.path.startswith("/") and asset.path.endswith(".mp4")
            assert asset.type == "video"
            assert asset.path in [listed.path for listed in await scope.list_assets()]
            started = await scope.start_session(
                input_mode="video", graph=chain_graph(asset.path), prompts=[Prompt(text="x")]
            )
            assert started.graph is True
            frame = await eventually(lambda: scope.get_frame(sink_node_id="output"), lambda f: f is not None)
            assert frame is not None and decode(frame).size == (SIZE, SIZE)
            stream = await scope.read_output_ts(max_bytes=188 * 20)
    assert len(stream) == 188 * 20 and stream[0] == 0x47  # MPEG-TS packets start with the sync byte


async def test_logs_tail_reads_only_what_is_new():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            before = await scope.logs_tail(lines=1000)
            await scope.load_pipelines(["longlive"])
            await scope.wait_until_loaded(timeout_s=10.0)
            after = await scope.logs_tail(lines=1000, since_offset=before.offset)
            assert after.offset > before.offset
            assert after.lines and any("longlive" in line for line in after.lines)
            nothing_new = await scope.logs_tail(since_offset=after.offset)
    assert nothing_new.lines == [] and nothing_new.offset == after.offset


async def test_second_start_replaces_the_first_and_leaks_it():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            await scope.start_session(pipeline_id="longlive", prompts=[Prompt(text="second")])
            truth = sim.truth()
    assert truth["leaked_sessions"] == 1
    first, second = truth["sessions"]
    assert first["replaced"] and not first["stopped"] and not second["replaced"]


# -- cloud --------------------------------------------------------------------------------------


async def cloud_settled(scope: ScopeClient) -> CloudStatus:
    """Poll the cloud status until connect is no longer in progress."""
    return await eventually(scope.cloud_status, lambda status: not status.connecting)


async def test_cloud_connect_and_disconnect():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            started = await scope.cloud_connect(**CREDENTIALS, user_id="loadtest")
            assert started.connecting or started.connected
            connected = await cloud_settled(scope)
            assert connected.connected and connected.connection_id
            disconnected = await scope.cloud_disconnect()
    assert disconnected.connected is False


async def test_cloud_connect_without_any_credentials():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            with pytest.raises(CloudCredentialsMissing) as caught:
                await scope.cloud_connect()
    assert caught.value.status == 500 and caught.value.category == Category.HARNESS


async def test_connect_fail_ends_with_the_error_in_the_status():
    with running_simulator("connect_fail", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.cloud_connect(**CREDENTIALS)
            status = await cloud_settled(scope)
    assert status.failed and status.error == "All orchestrators failed (3 tried)"


async def test_connect_timeout_stays_connecting():
    with running_simulator("connect_timeout", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.cloud_connect(**CREDENTIALS)
            await asyncio.sleep(1.0)  # ten times the connect latency of QUICK
            status = await scope.cloud_status()
    assert status.connecting and not status.connected and not status.error


async def test_no_capacity_on_connect_and_on_load():
    with running_simulator("no_capacity", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.cloud_connect(**CREDENTIALS)
            status = await cloud_settled(scope)
            with pytest.raises(NoCapacity) as caught:
                await scope.load_pipelines(["longlive"])
    assert status.failed and mentions_no_capacity(status.error)
    assert caught.value.status == 503 and caught.value.category == Category.ORCHESTRATOR
    assert "OrchestratorBusy" in (caught.value.detail or "")


# -- loading ---------------------------------------------------------------------------------


async def test_load_error_fails_with_the_reason_from_the_log():
    with running_simulator("load_error", overrides={"load_s": 0.3}) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.load_pipelines(["longlive"])
            with pytest.raises(PhaseFailed) as caught:
                await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.05)
            log = await scope.logs_tail(lines=1000)
            after = await scope.pipeline_status()
            truth = sim.truth()
    assert (caught.value.category, caught.value.phase) == (Category.RUNNER, Phase.LOAD)
    # The cause is the pipeline's own error; the log's last error line is only Scope's generic summary.
    assert "CUDA error: out of memory while loading pipeline weights (pipeline longlive)" in caught.value.message
    assert log.lines[-1].endswith("Some pipelines failed to load") and "Some pipelines" not in caught.value.message
    assert after.status == "not_loaded" and after.error is None  # error reads once
    assert truth["loads"][-1]["failed"] is True


async def test_unknown_pipeline_is_accepted_and_fails_later():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.load_pipelines(["no-such-pipeline"])
            with pytest.raises(PhaseFailed) as caught:
                await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02, not_loaded_grace_s=2.0)
    assert caught.value.message.endswith(": Invalid pipeline ID: no-such-pipeline")


async def test_a_loaded_left_over_from_the_previous_load_is_not_taken_for_the_new_one():
    # For a moment after the request the status still reads what it read before: passthrough, loaded.
    with running_simulator("healthy", overrides={**QUICK, "load_s": 0.3, "load_status_lag_s": 0.25}) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.load_pipelines(["passthrough"])
            await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02, expected_ids=["passthrough"])
            await scope.load_pipelines(["gray"])
            unchecked = await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02)
            checked = await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02, expected_ids=["gray"])
    assert unchecked.pipeline_id == "passthrough"  # what a caller that names no ids gets
    assert checked.status == "loaded" and checked.pipeline_id == "gray"


async def test_a_load_replaced_by_another_fails():
    with running_simulator("healthy", overrides={**QUICK, "load_s": 0.3}) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.load_pipelines(["gray"])
            await eventually(scope.pipeline_status, lambda status: status.status == "loading")
            waiting = asyncio.create_task(
                scope.wait_until_loaded(timeout_s=10.0, poll_s=0.02, expected_ids=["gray"])
            )
            await scope.load_pipelines(["passthrough"])  # someone else's load replaces ours
            with pytest.raises(PhaseFailed, match="another load replaced it"):
                await waiting


async def test_routes_the_server_lacks_are_errors_not_empty_answers():
    # Under an unknown prefix every route is missing: GET meets Scope's frontend catch-all, POST a 405.
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(f"{sim.url}/no-such-prefix") as scope:
            with pytest.raises(ScopeHTTPError, match="Frontend not built") as frame:
                await scope.get_frame()
            with pytest.raises(ScopeHTTPError) as stop:
                await scope.stop_session()
    assert (frame.value.status, stop.value.status) == (404, 405)


async def test_schemas_feed_the_preflight():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            schemas = await scope.pipeline_schemas()
    assert schemas["rife"].supports_prompts is False and schemas["rife"].usage == ["postprocessor"]
    assert schemas["longlive"].supports_prompts is True and schemas["longlive"].estimated_vram_gb
    assert preflight(schemas, ["longlive", "rife"], "t2v", wants_prompts=True).problem is None
    rife_alone = preflight(schemas, ["rife"], "t2v", wants_prompts=True)
    assert rife_alone.problem == "rife has no text mode" and rife_alone.prompts_unsupported


async def test_parameters_without_a_session_are_accepted_and_reach_nothing():
    with running_simulator("healthy", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            applied = await scope.update_parameters({"prompts": [{"text": "a", "weight": 1.0}]})
            current = await scope.get_parameters()
    assert applied == {"prompts": [{"text": "a", "weight": 1.0}], "prompt_interpolation_method": "linear",
                       "vace_context_scale": 1.0}
    assert current == {}


async def test_cold_start_times_out_then_loads():
    with running_simulator("cold_start", overrides={**QUICK, "cold_load_s": 1.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            await scope.load_pipelines(["longlive"])
            with pytest.raises(PhaseTimeout) as caught:
                await scope.wait_until_loaded(timeout_s=0.3, poll_s=0.05)
            loaded = await scope.wait_until_loaded(timeout_s=10.0, poll_s=0.05)
            truth = sim.truth()
    assert (caught.value.category, caught.value.phase) == (Category.RUNNER, Phase.LOAD)
    assert loaded.status == "loaded" and truth["loads"][0]["cold"] is True


# -- faults during the stream ------------------------------------------------------------------


async def test_crash_makes_the_session_vanish():
    with running_simulator("crash", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            metrics = await eventually(scope.session_metrics, lambda m: m.headless is None)
            frame = await scope.get_frame()
            stopped = await scope.stop_session()
            log = await scope.logs_tail(lines=1000)
            truth = sim.truth()
    assert isinstance(metrics, SessionMetrics) and frame is None and stopped is False
    assert any("RuntimeError: CUDA error" in line for line in log.lines)
    assert truth["sessions"][0]["crashed"] is True


async def test_stall_freezes_counter_and_frame():
    with running_simulator("stall", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            await after_fault(sim, "stall")
            before, frame_before = await headless(scope), await scope.get_frame()
            await asyncio.sleep(0.5)  # six frame periods of a healthy longlive
            after, frame_after = await headless(scope), await scope.get_frame()
    assert after.frames_out == before.frames_out and frame_after == frame_before


async def test_frozen_keeps_counting_with_the_same_frame():
    with running_simulator("frozen", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            await after_fault(sim, "frozen")
            await frames_produced(scope, 2)  # the latest frame now comes from after the fault
            frame_before = await scope.get_frame()
            await frames_produced(scope, 2)
            frame_after = await scope.get_frame()
    assert frame_before is not None and frame_after == frame_before


async def test_black_frames_are_dark_but_still_moving():
    with running_simulator("black", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            healthy = await start_text_session(scope)
            await after_fault(sim, "black")
            await frames_produced(scope, 2)
            first = await scope.get_frame()
            second = await eventually(scope.get_frame, lambda f: f != first)
    assert mean_luma(healthy) > 25
    assert first is not None and second is not None
    assert mean_luma(first) < 25 and mean_luma(second) < 25


async def test_corrupt_frames_do_not_decode():
    with running_simulator("corrupt", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url) as scope:
            healthy = await start_text_session(scope)
            await after_fault(sim, "corrupt")
            await frames_produced(scope, 2)
            frame = await scope.get_frame()
    decode(healthy)
    assert frame is not None and frame[:2] == b"\xff\xd8"
    with pytest.raises((UnidentifiedImageError, OSError, SyntaxError)):
        decode(frame)


async def test_wrong_size_from_the_first_frame():
    with running_simulator("wrong_size", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            frame = await start_text_session(scope)
    assert decode(frame).size == (384, 384)


async def test_prompt_switch_changes_the_look():
    with running_simulator("healthy", overrides={**QUICK, "prompt_latency_s": 0.1}) as sim:
        async with ScopeClient(sim.url) as scope:
            before = await start_text_session(scope, "a red fox in the snow")
            await scope.switch_prompt("a neon city at night")
            after = await eventually(
                scope.get_frame, lambda f: f is not None and luma_difference(before, f) > 0.12
            )
    assert after is not None


async def test_prompt_insensitive_keeps_the_first_look_but_moves():
    with running_simulator("prompt_insensitive", overrides={**QUICK, "prompt_latency_s": 0.1}) as sim:
        async with ScopeClient(sim.url) as scope:
            before = await start_text_session(scope, "a red fox in the snow")
            await scope.switch_prompt("a neon city at night")
            await asyncio.sleep(0.5)  # five times the prompt latency a healthy instance shows
            after = await eventually(scope.get_frame, lambda f: f is not None and f != before)
    assert after is not None and luma_difference(before, after) < 0.12


async def test_low_fps_counts_slowly():
    with running_simulator("low_fps", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            stats = await eventually(lambda: headless(scope), lambda h: (h.elapsed_seconds or 0) > 1.5)
    assert stats.frames_out is not None and stats.elapsed_seconds
    assert stats.frames_out / stats.elapsed_seconds < 6


async def allocated_mb(scope: ScopeClient) -> float:
    """The session's allocated VRAM, asserting the metrics report it."""
    gpu = (await scope.session_metrics()).gpu
    assert gpu is not None and gpu.vram_allocated_mb is not None
    return gpu.vram_allocated_mb


async def test_vram_leak_grows_and_vram_ceiling_sits_high():
    with running_simulator("vram_leak", overrides={**QUICK, "leak_mb_per_s": 200.0}) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            start_mb = await allocated_mb(scope)
            await eventually(lambda: allocated_mb(scope), lambda now_mb: now_mb > start_mb + 50)
    with running_simulator("vram_ceiling", overrides=QUICK) as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            gpu = (await scope.session_metrics()).gpu
    assert gpu is not None and gpu.vram_allocated_mb and gpu.vram_total_mb
    assert gpu.vram_allocated_mb / gpu.vram_total_mb > 0.9


async def test_slow_instance_loads_and_streams():
    with running_simulator("slow") as sim:
        async with ScopeClient(sim.url) as scope:
            await start_text_session(scope)
            await frames_produced(scope, 3)
            truth = sim.truth()
    assert truth["loads"][0]["load_s"] > 0.5 and not truth["loads"][0]["failed"]


async def test_slow_http_still_works():
    with running_simulator("slow_http", overrides={**QUICK, "http_delay_s": 0.1}) as sim:
        async with ScopeClient(sim.url) as scope:
            health = await scope.health()
            frame = await start_text_session(scope)
            counters = await headless(scope)
    assert health.status == "healthy" and decode(frame).size == (SIZE, SIZE)
    assert counters.frames_out


async def test_hang_http_times_out_metrics_and_frames():
    with running_simulator("hang_http", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url, timeouts=SHORT) as scope:
            await start_text_session(scope)
            await after_fault(sim, "hang_http")
            with pytest.raises(ScopeTimeout) as metrics_error:
                await scope.session_metrics()
            with pytest.raises(ScopeTimeout):
                await scope.get_frame()
            health = await scope.health()  # the rest of the server still answers
    assert metrics_error.value.category == Category.NETWORK
    assert metrics_error.value.route == "GET /api/v1/session/metrics"
    assert health.status == "healthy"


async def test_conn_reset_is_unreachable():
    with running_simulator("conn_reset", overrides={**QUICK, "fault_after_s": 0.5}) as sim:
        async with ScopeClient(sim.url, timeouts=SHORT) as scope:
            await start_text_session(scope)
            await after_fault(sim, "conn_reset")
            with pytest.raises(ScopeUnreachable) as metrics_error:
                await scope.session_metrics()
            with pytest.raises(ScopeUnreachable):
                await scope.get_frame()
            status = await scope.pipeline_status()  # not a /session/* route
    assert metrics_error.value.category == Category.NETWORK and status.status == "loaded"
