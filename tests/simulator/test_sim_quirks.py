"""Every quirk of scope-api.md, reproduced over real loopback HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sim_helpers import FAST, ScopeHttp, frame_diff, wait_until

from simulator.testing import SimHandle

GRAPH = {
    "nodes": [
        {"id": "input", "type": "source", "source_mode": "video_file", "source_name": "{path}"},
        {"id": "longlive", "type": "pipeline", "pipeline_id": "longlive"},
        {"id": "rife", "type": "pipeline", "pipeline_id": "rife"},
        {"id": "output", "type": "sink"},
        {"id": "preview", "type": "sink"},
    ],
    "edges": [
        {"from": "input", "from_port": "video", "to_node": "longlive", "to_port": "video", "kind": "stream"},
        {"from": "longlive", "from_port": "video", "to_node": "rife", "to_port": "video", "kind": "stream"},
        {"from": "rife", "from_port": "video", "to_node": "output", "to_port": "video", "kind": "stream"},
        {"from": "longlive", "from_port": "video", "to_node": "preview", "to_port": "video", "kind": "stream"},
    ],
}


def _graph(path: str) -> dict:
    nodes = [dict(node, source_name=path) if node["type"] == "source" else node for node in GRAPH["nodes"]]
    return {"nodes": nodes, "edges": GRAPH["edges"]}


def _upload(scope: ScopeHttp, name: str, data: bytes) -> str:
    return scope.http.post("/api/v1/assets", params={"filename": name}, content=data).json()["path"]


def _cloud_status(scope: ScopeHttp) -> dict:
    return scope.http.get("/api/v1/cloud/status").json()


# -- cloud -------------------------------------------------------------------------------------


def test_connect_without_any_credentials_is_a_500_wrapping_a_400(scope: ScopeHttp, monkeypatch) -> None:
    monkeypatch.delenv("SCOPE_CLOUD_APP_ID", raising=False)
    response = scope.http.post("/api/v1/cloud/connect", json={})
    assert response.status_code == 500
    assert "400: cloud credentials not configured" in response.json()["detail"]


def test_connect_falls_back_to_the_server_environment(scope: ScopeHttp, sim: SimHandle, monkeypatch) -> None:
    monkeypatch.setenv("SCOPE_CLOUD_APP_ID", "daydream/scope-app/ws")
    monkeypatch.setenv("SCOPE_CLOUD_API_KEY", "sk-env")
    answer = scope.http.post("/api/v1/cloud/connect", json={}).json()
    assert answer["connecting"] is True and answer["app_id"] == "daydream/scope-app/ws"
    assert answer["credentials_configured"] is True
    status = wait_until(lambda: (s := _cloud_status(scope))["connected"] and s, what="connected")
    assert status["connection_id"] and "orchestrator_url" not in status  # Scope names it only in the log
    assert all("sk-env" not in line for line in scope.log_lines())


def test_app_id_must_end_in_ws(scope: ScopeHttp, sim: SimHandle) -> None:
    answer = scope.http.post("/api/v1/cloud/connect", json={"app_id": "daydream/scope-app", "api_key": "k"})
    assert answer.status_code == 200 and answer.json()["connecting"] is True
    status = wait_until(lambda: (s := _cloud_status(scope))["error"] and s, what="connect error")
    assert status["error"].startswith("Invalid cloud app id") and not status["connected"] and not status["connecting"]
    assert sim.truth()["connects"][-1]["result"] == "invalid_app_id"


def test_connect_proceeds_in_the_background(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "connect_s": 0.4})
    answer = scope.http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"}).json()
    assert answer["connecting"] is True and answer["connected"] is False and answer["connection_id"] is None
    status = wait_until(lambda: (s := _cloud_status(scope))["connected"] and s, what="connected")
    assert len(status["connection_id"]) == 16 and status["connect_stage"] == "connected"
    assert sim.truth()["connects"][-1] == {**sim.truth()["connects"][-1], "result": "connected", "connect_s": 0.4}


# -- pipeline load -----------------------------------------------------------------------------


def test_load_needs_a_list(scope: ScopeHttp) -> None:
    assert scope.http.post("/api/v1/pipeline/load", json={}).status_code == 400
    assert scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": []}).status_code == 400
    pipelines = [{"node_id": "a", "pipeline_id": "passthrough", "load_params": {"x": 1}}]
    assert scope.http.post("/api/v1/pipeline/load", json={"pipelines": pipelines}).status_code == 200
    status = wait_until(scope._loaded_status, what="loaded")
    assert status["pipeline_id"] == "passthrough" and status["load_params"] == {"x": 1}


def test_status_reads_not_loaded_for_a_moment_after_the_request(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "load_s": 0.6, "load_status_lag_s": 0.3})
    scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    seen = [scope.http.get("/api/v1/pipeline/status").json()["status"]]
    while seen[-1] != "loaded":
        seen.append(wait_until(lambda: scope.http.get("/api/v1/pipeline/status").json()["status"]))
    states = [state for i, state in enumerate(seen) if i == 0 or state != seen[i - 1]]
    assert states == ["not_loaded", "loading", "loaded"]


def test_unknown_pipeline_is_accepted_then_reads_error_once(scope: ScopeHttp, sim: SimHandle) -> None:
    assert scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["no-such-pipeline"]}).status_code == 200
    status = wait_until(lambda: (s := scope.http.get("/api/v1/pipeline/status").json())["status"] == "error" and s)
    assert status["error"] is None
    assert scope.http.get("/api/v1/pipeline/status").json()["status"] == "not_loaded"
    lines = scope.log_lines()
    cause = next(i for i, line in enumerate(lines) if "Invalid pipeline ID: no-such-pipeline" in line)
    assert any("Some pipelines failed to load" in line for line in lines[cause + 1:])  # the generic line comes last
    assert sim.truth()["loads"][-1]["failed"] is True


def test_a_load_replaces_the_loaded_set(scope: ScopeHttp) -> None:
    scope.load("longlive", "rife")
    status = scope.load("passthrough")
    assert status["pipeline_id"] == "passthrough" and "pipeline_ids" not in status
    response = scope.http.post("/api/v1/session/start", json={"pipeline_id": "longlive"})
    assert response.status_code == 500


# -- session start -----------------------------------------------------------------------------


def test_start_needs_a_pipeline_or_a_graph(scope: ScopeHttp) -> None:
    response = scope.http.post("/api/v1/session/start", json={"input_mode": "text"})
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


def test_simple_mode_needs_the_pipeline_loaded(scope: ScopeHttp) -> None:
    response = scope.http.post("/api/v1/session/start", json={"pipeline_id": "longlive"})
    assert response.status_code == 500
    assert response.json() == {"detail": "FrameProcessor failed to start (check logs for details)"}
    assert any("not loaded" in line for line in scope.log_lines())


def test_video_pipelines_need_an_input(scope: ScopeHttp, sample_clip: bytes) -> None:
    scope.load("passthrough")
    response = scope.http.post("/api/v1/session/start", json={"pipeline_id": "passthrough"})
    assert response.status_code == 500 and response.json()["detail"].startswith("FrameProcessor failed to start")
    path = _upload(scope, "in.mp4", sample_clip)
    source = {"enabled": True, "source_type": "video_file", "source_name": path}
    scope.start(pipeline_id="passthrough", input_mode="video", input_source=source)
    metrics = wait_until(lambda: (m := scope.metrics())["sessions"]["headless"]["frames_out"] and m)
    assert metrics["sessions"]["headless"]["input_source_enabled"] is True
    assert metrics["sessions"]["headless"]["frames_in"] == 0


def test_v2v_output_reflects_the_input_clip(scope: ScopeHttp, sample_clip: bytes) -> None:
    path = _upload(scope, "orange.mp4", sample_clip)
    scope.load("longlive")
    scope.start(pipeline_id="longlive", prompts=[{"text": "forest", "weight": 1.0}])
    text_mode = scope.wait_frame()
    scope.start(pipeline_id="longlive", input_mode="video", prompts=[{"text": "forest", "weight": 1.0}],
                input_source={"enabled": True, "source_type": "video_file", "source_name": path})
    video_mode = scope.wait_frame()
    hue = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB"), np.float32).mean(axis=(0, 1)) for f in (text_mode, video_mode)]
    # The orange clip pulls the picture towards red and away from blue.
    assert hue[1][0] - hue[1][2] > hue[0][0] - hue[0][2] + 20


def test_graph_mode_loads_its_own_pipelines_and_counts_every_sink(scope: ScopeHttp, sim: SimHandle, sample_clip: bytes) -> None:
    path = _upload(scope, "g.mp4", sample_clip)
    started = scope.start(graph=_graph(path), prompts=[{"text": "city", "weight": 1.0}])
    assert started["graph"] is True and started["cloud_mode"] is False
    assert scope.http.get("/api/v1/pipeline/status").json()["pipeline_id"] == "longlive"  # the first of the chain
    output = scope.wait_frame(sink_node_id="output")
    assert scope.wait_frame(sink_node_id="preview")
    assert output.startswith(b"\xff\xd8")
    assert scope.http.get("/api/v1/session/frame", params={"sink_node_id": "nope"}).status_code == 404
    headless = scope.metrics()["sessions"]["headless"]
    session = sim.truth()["sessions"][-1]
    assert headless["output_sinks"] == {}  # Scope's NDI/Spout outputs, not the graph's sinks
    assert session["fps_true"] == 2 * 24.0  # two sinks, and rife doubles longlive's 12 fps
    expected = 2 * (int((headless["elapsed_seconds"] - session["first_frame_s"]) * 24.0) + 1)
    assert abs(headless["frames_out"] - expected) <= 2


@pytest.mark.parametrize(
    "graph",
    [
        {"nodes": [{"id": "a", "type": "pipeline", "pipeline_id": "gray"}], "edges": []},  # no sink
        {"nodes": [{"id": "a", "type": "sink"}, {"id": "a", "type": "sink"}], "edges": []},  # duplicate id
        {"nodes": [{"id": "out", "type": "sink"}], "edges": [{"from": "ghost", "to_node": "out"}]},  # unknown node
        {"nodes": [{"id": "out", "type": "wormhole"}], "edges": []},  # unknown type
    ],
)
def test_graph_validation_is_a_400(scope: ScopeHttp, graph: dict) -> None:
    response = scope.http.post("/api/v1/session/start", json={"graph": graph})
    assert response.status_code == 400 and isinstance(response.json()["detail"], str)


def test_second_start_replaces_the_first_without_stopping_it(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "reports_gpu_memory": True})  # 0.2.4 itself answers gpu {}
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    first_vram = scope.metrics()["gpu"]["vram_allocated_mb"]
    scope.start(pipeline_id="longlive")
    truth = sim.truth()
    assert truth["leaked_sessions"] == 1 and truth["active_session"] is True
    assert [(s["replaced"], s["stopped"]) for s in truth["sessions"]] == [(True, False), (False, False)]
    assert scope.metrics()["gpu"]["vram_allocated_mb"] > first_vram + 1000  # the leaked one still holds memory
    assert scope.http.post("/api/v1/session/stop").status_code == 200
    assert scope.http.post("/api/v1/session/stop").json() == {"detail": "No active headless session"}


def test_stop_without_session_is_a_404(scope: ScopeHttp) -> None:
    response = scope.http.post("/api/v1/session/stop")
    assert response.status_code == 404 and response.json() == {"detail": "No active headless session"}


def test_frame_404_before_the_first_frame_and_quality_bounds(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "first_frame_s": 0.5})
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    early = scope.http.get("/api/v1/session/frame")
    assert early.status_code == 404 and early.json()["detail"].startswith("No frame available")
    assert scope.wait_frame()
    for quality in (0, 101):
        assert scope.http.get("/api/v1/session/frame", params={"quality": quality}).status_code == 422
    small, big = (len(scope.http.get("/api/v1/session/frame", params={"quality": q}).content) for q in (10, 95))
    assert small < big


def test_metrics_without_gpu(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "has_gpu": False})
    assert scope.metrics() == {"sessions": {}, "gpu": {}}
    assert scope.http.get("/api/v1/hardware/info").json()["vram_gb"] is None


def test_prompt_switch_changes_the_look_strongly(scope: ScopeHttp, sim: SimHandle) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive", prompts=[{"text": "a quiet harbour at dawn", "weight": 1.0}])
    frames = [scope.wait_frame()]
    for _ in range(4):
        frames.append(scope.next_frame(frames[-1]))
    noise = [frame_diff(a, b) for a, b in zip(frames, frames[1:])]
    assert all(0.01 <= diff <= 0.05 for diff in noise), noise
    scope.switch_prompt("a neon city in the rain")
    switched = wait_until(lambda: (f := scope.frame()) and frame_diff(f, frames[-1]) > 0.12 and f, what="new look")
    assert frame_diff(switched, frames[-1]) > 2 * max(noise)
    assert sim.truth()["sessions"][-1]["prompt_texts"] == ["a quiet harbour at dawn", "a neon city in the rain"]


def test_requested_size_is_honoured(scope: ScopeHttp) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive", parameters={"width": 576, "height": 320})
    assert Image.open(io.BytesIO(scope.wait_frame())).size == (576, 320)
    scope.http.post("/api/v1/session/parameters", json={"width": 256, "height": 256})
    assert Image.open(io.BytesIO(scope.wait_frame())).size == (256, 256)
    assert scope.http.post("/api/v1/session/parameters", json={"noise_scale": 1.5}).status_code == 422


def test_frames_out_grows_at_the_pipeline_rate(scope: ScopeHttp, sim: SimHandle) -> None:
    scope.load("longlive", "rife")
    scope.start(pipeline_id="longlive")
    wait_until(lambda: scope.frames_out() > 5, what="frames")
    headless = scope.metrics()["sessions"]["headless"]
    session = sim.truth()["sessions"][-1]
    assert session["fps_true"] == 24.0
    expected = int((headless["elapsed_seconds"] - session["first_frame_s"]) * 24.0) + 1
    assert abs(headless["frames_out"] - expected) <= 1


def test_assets_refuse_a_bad_extension(scope: ScopeHttp) -> None:
    response = scope.http.post("/api/v1/assets", params={"filename": "notes.txt"}, content=b"hello")
    assert response.status_code == 400 and "Invalid file type" in response.json()["detail"]
    assert scope.http.post("/api/v1/assets", params={"filename": "../x.png"}, content=b"x").status_code == 400


def test_logs_tail_bounds(scope: ScopeHttp) -> None:
    for lines in (0, 1001):
        assert scope.http.get("/api/v1/logs/tail", params={"lines": lines}).status_code == 422
    assert len(scope.http.get("/api/v1/logs/tail", params={"lines": 1}).json()["lines"]) <= 1


def test_i2v_reference_image_tints_the_output(scope: ScopeHttp) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 60, 230)).save(buffer, "PNG")
    path = _upload(scope, "blue.png", buffer.getvalue())
    scope.load("ltx2")
    scope.start(pipeline_id="ltx2", prompts=[{"text": "waves", "weight": 1.0}])
    plain = scope.wait_frame()
    scope.start(pipeline_id="ltx2", prompts=[{"text": "waves", "weight": 1.0}], parameters={"first_frame_image": path})
    tinted = scope.wait_frame()
    blue = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB"), np.float32).mean(axis=(0, 1))[2] for f in (plain, tinted)]
    assert blue[1] > blue[0] + 10
