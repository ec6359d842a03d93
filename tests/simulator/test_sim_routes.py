"""Every route of scope-api.md answers with the contract's shape (real loopback HTTP, plain httpx)."""

from __future__ import annotations

import io

from PIL import Image
from sim_helpers import FAST, ScopeHttp, wait_until

from simulator.catalog import CATALOG
from simulator.testing import SimHandle

STATUS_KEYS = {
    "connected", "connecting", "error", "connect_stage", "webrtc_connected", "app_id", "connection_id",
    "credentials_configured", "stats", "last_close_code", "last_close_reason",
}
PIPELINE_STATUS_KEYS = {
    "status", "pipeline_id", "load_params", "loaded_lora_adapters", "error", "loading_stage", "produces_video",
    "produces_audio",
}
HEADLESS_KEYS = {
    "frames_in", "frames_out", "elapsed_seconds", "fps_in", "fps_out", "pipeline_fps", "output_sinks",
    "input_source_enabled", "input_source_type", "relay_mode", "headless",
}
ASSET_KEYS = {"name", "path", "size_mb", "folder", "type", "created_at"}


def test_health(scope: ScopeHttp) -> None:
    body = scope.http.get("/health").json()
    assert body["status"] == "healthy" and body["version"] == "0.2.4"
    assert isinstance(body["timestamp"], str) and isinstance(body["server_start_time"], float)
    assert isinstance(body["git_commit"], str)
    assert scope.http.get("/api/v1/health").status_code == 404  # not under /api/v1


def test_hardware_info(scope: ScopeHttp, sim: SimHandle) -> None:
    body = scope.http.get("/api/v1/hardware/info").json()
    fields = sim.truth()["profile_fields"]
    assert body["vram_gb"] == round(fields["vram_total_mb"] / 1024, 2)
    assert {"spout", "ndi", "syphon"} <= body.keys()


def test_pipeline_schemas(scope: ScopeHttp) -> None:
    pipelines = scope.http.get("/api/v1/pipelines/schemas").json()["pipelines"]
    assert set(pipelines) == set(CATALOG)
    for pid, schema in pipelines.items():
        assert schema["id"] == pid
        assert {"supports_prompts", "inputs", "outputs", "requires_models", "min_dimension"} <= schema.keys()
        assert isinstance(schema["usage"], list) and schema["config_schema"]["type"] == "object"
    assert pipelines["longlive"]["supported_modes"] == ["text", "video"]
    assert pipelines["longlive"]["mode_defaults"]["video"]["width"] == 512
    assert pipelines["longlive"]["supports_prompts"] is True and pipelines["rife"]["supports_prompts"] is False
    assert pipelines["rife"]["usage"] == ["postprocessor"] and pipelines["rife"]["estimated_vram_gb"] is None
    assert pipelines["ltx2"]["plugin_name"] == "scope-ltx-2"
    assert pipelines["passthrough"]["supported_modes"] == ["video"]
    assert pipelines["controller-viz"]["supported_modes"] == ["text"]


def test_without_a_gpu_only_weight_free_pipelines_are_registered(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "has_gpu": False})
    pipelines = scope.http.get("/api/v1/pipelines/schemas").json()["pipelines"]
    assert "longlive" not in pipelines and {"passthrough", "gray", "controller-viz", "rife"} <= set(pipelines)
    assert scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]}).status_code == 200
    wait_until(lambda: scope.http.get("/api/v1/pipeline/status").json()["status"] == "error", what="error")
    assert any("Invalid pipeline ID: longlive" in line for line in scope.log_lines())


def test_cloud_connect_status_disconnect(scope: ScopeHttp) -> None:
    connect = scope.http.post("/api/v1/cloud/connect", json={"app_id": "daydream/scope/ws", "api_key": "k", "user_id": "u"})
    assert connect.status_code == 200
    assert STATUS_KEYS <= connect.json().keys() and connect.json()["connecting"] is True
    status = wait_until(lambda: (s := scope.http.get("/api/v1/cloud/status").json())["connected"] and s, what="connected")
    assert STATUS_KEYS <= status.keys() and status["connecting"] is False and status["error"] is None
    disconnect = scope.http.post("/api/v1/cloud/disconnect").json()
    assert STATUS_KEYS <= disconnect.keys() and disconnect["connected"] is False


def test_pipeline_load_and_status(scope: ScopeHttp) -> None:
    response = scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"], "load_params": {"height": 512}})
    assert response.status_code == 200
    assert response.json() == {"message": "Pipeline loading initiated successfully"}
    status = wait_until(scope._loaded_status, what="loaded")
    assert PIPELINE_STATUS_KEYS <= status.keys()
    assert status["pipeline_id"] == "longlive" and status["error"] is None and status["produces_video"] is True
    assert status["load_params"] == {"height": 512}


def test_session_start_and_stop(scope: ScopeHttp) -> None:
    scope.load("longlive")
    started = scope.start(pipeline_id="longlive", prompts=[{"text": "a red fox", "weight": 1.0}])
    assert started == {"status": "ok", "input_mode": "text", "cloud_mode": False, "pipeline_id": "longlive"}
    stopped = scope.http.post("/api/v1/session/stop")
    assert stopped.status_code == 200
    assert stopped.json() == {"status": "ok", "message": "Headless session stopped"}


def test_session_frame_is_jpeg(scope: ScopeHttp) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    wait_until(lambda: scope.frame(), what="first frame")
    response = scope.http.get("/api/v1/session/frame", params={"quality": 70})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size == (512, 512)


def test_session_metrics(scope: ScopeHttp) -> None:
    assert scope.metrics()["sessions"] == {}
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    body = scope.metrics()
    assert HEADLESS_KEYS <= body["sessions"]["headless"].keys()
    assert body["sessions"]["headless"]["headless"] is True and body["sessions"]["headless"]["output_sinks"] == {}
    assert body["gpu"] == {}  # 0.2.4 reads a torch attribute that does not exist, even with a GPU


def test_session_metrics_report_gpu_figures_when_the_profile_says(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("healthy", {**FAST, "reports_gpu_memory": True})
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    assert {"vram_allocated_mb", "vram_reserved_mb", "vram_total_mb"} <= scope.metrics()["gpu"].keys()


def test_session_parameters_post_and_get(scope: ScopeHttp) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive", parameters={"noise_scale": 0.5})
    posted = scope.http.post("/api/v1/session/parameters", json={"prompts": [{"text": "snow", "weight": 1.0}], "seed": 3})
    assert posted.status_code == 200
    parameters = scope.http.get("/api/v1/session/parameters").json()["parameters"]
    assert parameters["noise_scale"] == 0.5 and parameters["seed"] == 3
    assert parameters["prompts"] == [{"text": "snow", "weight": 1.0}]


def test_session_output_ts(scope: ScopeHttp) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    with scope.http.stream("GET", "/api/v1/session/output.ts") as response:
        assert response.status_code == 200 and response.headers["content-type"] == "video/mp2t"
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= 188 * 4:
                break
    assert all(data[i * 188] == 0x47 for i in range(4))  # MPEG-TS sync bytes


def test_assets_upload_and_list(scope: ScopeHttp, sample_clip: bytes) -> None:
    response = scope.http.post("/api/v1/assets", params={"filename": "clip.mp4"}, content=sample_clip)
    assert response.status_code == 200
    asset = response.json()
    assert ASSET_KEYS <= asset.keys() and asset["type"] == "video" and asset["name"] == "clip"
    assert asset["path"].startswith("/") and asset["path"].endswith("clip.mp4")
    with open(asset["path"], "rb") as stored:
        assert stored.read() == sample_clip
    listed = scope.http.get("/api/v1/assets").json()["assets"]
    assert any(entry["path"] == asset["path"] for entry in listed)
    assert scope.http.get("/api/v1/assets", params={"type": "image"}).json()["assets"] == [
        entry for entry in listed if entry["type"] == "image"
    ]


def test_logs_tail(scope: ScopeHttp) -> None:
    body = scope.http.get("/api/v1/logs/tail", params={"lines": 5}).json()
    assert isinstance(body["lines"], list) and isinstance(body["offset"], int)
    scope.load("longlive")
    newer = scope.http.get("/api/v1/logs/tail", params={"lines": 1000, "since_offset": body["offset"]}).json()
    assert newer["offset"] > body["offset"]
    assert any("Loading 1 pipeline(s): [('longlive', 'longlive')]" in line for line in newer["lines"])
    assert all("Assets directory" not in line for line in newer["lines"])


def test_sim_truth_shape(scope: ScopeHttp, sim: SimHandle) -> None:
    scope.load("longlive")
    scope.start(pipeline_id="longlive", prompts=[{"text": "dunes", "weight": 1.0}])
    truth = sim.truth()
    assert {"orchestrator_url", "orchestrator_address", "profile", "sessions", "faults", "leaked_sessions",
            "active_session", "loads", "connects"} <= truth.keys()
    (session,) = truth["sessions"]
    assert {"session_id", "pipeline_ids", "prompt_texts", "started_at", "first_frame_s", "fps_true", "frames_out",
            "stopped", "replaced", "crashed"} <= session.keys()
    assert session["prompt_texts"] == ["dunes"] and truth["active_session"] is True
    assert {"pipeline_ids", "load_s", "cold", "failed"} <= truth["loads"][0].keys()


def test_sim_profile_and_reset(sim: SimHandle) -> None:
    answer = sim.set_profile("stall", {"fault_after_s": 1.5})
    assert answer["profile"] == "stall" and answer["fields"]["fault_after_s"] == 1.5
    assert sim.truth()["profile"] == "stall"
    for bad in (("nope", {}), ("healthy", {"fault_after_s": 1.0}), ("slow", {"fps_out": -1})):
        try:
            sim.set_profile(*bad)
        except ValueError as exc:
            assert str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
    assert sim.reset()["profile"] == "stall"
