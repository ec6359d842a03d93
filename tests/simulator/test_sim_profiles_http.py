"""Every profile's fault, observed over real loopback HTTP and reported by /_sim/truth."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from sim_helpers import FAST, ScopeHttp, decodes, frame_diff, luma_thumb, wait_until

from simulator.profiles import PROFILES
from simulator.testing import SimHandle

FAULT_AFTER_S = 0.3
PROMPT = [{"text": "a lighthouse on a cliff", "weight": 1.0}]


def _stream(scope: ScopeHttp, sim: SimHandle, profile: str, **overrides: object) -> bytes:
    """Switch to `profile`, load longlive, start a session and return its first frame."""
    fields = PROFILES[profile].model_fields
    sim.set_profile(profile, {k: v for k, v in {**FAST, "fault_after_s": FAULT_AFTER_S, **overrides}.items() if k in fields})
    scope.load("longlive")
    scope.start(pipeline_id="longlive", prompts=PROMPT)
    return scope.wait_frame()


def _fault_kinds(sim: SimHandle) -> list[str]:
    return [fault["kind"] for fault in sim.truth()["faults"]]


def _after_fault(sim: SimHandle) -> None:
    """Wait until the profile's fault shows in the truth."""
    wait_until(lambda: sim.truth()["faults"], what="the fault to start")


def _status(scope: ScopeHttp, key: str = "status") -> object:
    return scope.http.get("/api/v1/pipeline/status").json()[key]


def test_every_profile_of_the_contract_exists() -> None:
    assert set(PROFILES) == {
        "healthy", "slow", "cold_start", "connect_fail", "connect_timeout", "load_error", "no_capacity", "crash",
        "stall", "frozen", "black", "corrupt", "wrong_size", "prompt_insensitive", "low_fps", "vram_leak",
        "vram_ceiling", "slow_http", "hang_http", "conn_reset",
        "packet_loss", "added_latency", "freeze_bursts", "relay_drop",  # relay media path (WebRTC)
        "events_null_ids", "events_no_heartbeats", "events_no_session_events",  # Kafka lifecycle events
        "events_cloud_connection_id",
    }


def test_healthy(scope: ScopeHttp, sim: SimHandle) -> None:
    first = _stream(scope, sim, "healthy")
    later = scope.next_frame(first)
    assert decodes(later) and 0.01 <= frame_diff(first, later) <= 0.05
    truth = sim.truth()
    assert truth["profile"] == "healthy" and truth["faults"] == []
    assert truth["sessions"][0]["fps_true"] == 12.0 and not truth["sessions"][0]["crashed"]


def test_slow(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("slow")
    scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    load_s = sim.truth()["loads"][0]["load_s"]
    assert 1.0 <= load_s <= 6.0  # lognormal around 2 s, clamped to [0.5x, 3x]
    wait_until(lambda: _status(scope) == "loading", what="loading")
    sim.set_profile("slow", {"load_s": 0.05, "first_frame_s": 0.05})
    scope.load("longlive")
    scope.start(pipeline_id="longlive")
    assert sim.truth()["sessions"][0]["fps_true"] == 8.0


def test_cold_start(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("cold_start")
    scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    first = sim.truth()["loads"][0]
    assert first["cold"] is True and first["load_s"] >= 32.5
    wait_until(lambda: _status(scope) == "loading", what="loading")
    scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    second = sim.truth()["loads"][1]
    assert second["cold"] is False and second["load_s"] < 5 and sim.truth()["loads"][0]["superseded"] is True


def test_connect_fail(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("connect_fail", {"connect_s": 0.05})
    assert scope.http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"}).json()["connecting"] is True
    status = wait_until(lambda: (s := scope.http.get("/api/v1/cloud/status").json())["error"] and s)
    assert (status["connected"], status["connecting"], status["error"]) == (False, False, "All orchestrators failed (3 tried)")
    assert sim.truth()["connects"][-1]["result"] == "failed" and _fault_kinds(sim) == ["connect_fail"]


def test_connect_timeout(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("connect_timeout")
    scope.http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})
    time.sleep(0.3)  # longer than any healthy connect under the fast profile
    status = scope.http.get("/api/v1/cloud/status").json()
    assert status["connecting"] is True and status["connected"] is False and status["error"] is None
    truth = sim.truth()
    assert truth["connects"][-1] == {**truth["connects"][-1], "result": "timeout", "connect_s": None}
    assert truth["faults"][0]["kind"] == "connect_timeout" and truth["faults"][0]["ended_at"] is None
    scope.http.post("/api/v1/cloud/disconnect")
    assert sim.truth()["faults"][0]["ended_at"] is not None


def test_load_error(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("load_error", {"load_s": 0.2})
    scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    wait_until(lambda: _status(scope) == "loading", what="loading")
    status = wait_until(lambda: (s := scope.http.get("/api/v1/pipeline/status").json())["status"] != "loading" and s)
    assert status["status"] == "error" and status["error"] is None
    assert _status(scope) == "not_loaded"
    assert any("CUDA error: out of memory" in line for line in scope.log_lines())
    assert sim.truth()["loads"][0]["failed"] is True and _fault_kinds(sim) == ["load_error"]


def test_no_capacity(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("no_capacity", {"connect_s": 0.05})
    response = scope.http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    assert response.status_code == 503 and response.json() == {"detail": "Cloud request failed: 503 OrchestratorBusy"}
    scope.http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})
    status = wait_until(lambda: (s := scope.http.get("/api/v1/cloud/status").json())["error"] and s)
    assert status["error"] == "All orchestrators failed (1 tried): OrchestratorBusy"
    assert set(_fault_kinds(sim)) == {"no_capacity"} and sim.truth()["connects"][-1]["result"] == "busy"


def test_crash(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "crash")
    wait_until(lambda: scope.metrics()["sessions"] == {}, what="the session to vanish")
    assert scope.http.get("/api/v1/session/frame").status_code == 404
    assert scope.http.post("/api/v1/session/stop").status_code == 404
    assert any("RuntimeError: CUDA error" in line for line in scope.log_lines())
    truth = sim.truth()
    assert truth["sessions"][0]["crashed"] is True and truth["active_session"] is False
    assert _fault_kinds(sim) == ["crash"]


def test_stall(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "stall")
    _after_fault(sim)
    count, frame = scope.frames_out(), scope.frame()
    time.sleep(0.25)  # three frame intervals at 12 fps
    assert scope.frames_out() == count and scope.frame() == frame
    assert _fault_kinds(sim) == ["stall"]


def test_frozen(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "frozen")
    _after_fault(sim)
    count, frame = scope.frames_out(), scope.frame()
    wait_until(lambda: scope.frames_out() > count + 2, what="frames_out to grow")
    assert scope.frame() == frame
    assert _fault_kinds(sim) == ["frozen"]


def test_black(scope: ScopeHttp, sim: SimHandle) -> None:
    healthy = _stream(scope, sim, "black")
    black = wait_until(lambda: (f := scope.frame()) and luma_thumb(f).mean() < 25 and f, what="black frames")
    luma = np.asarray(Image.open(io.BytesIO(black)).convert("L"))
    assert (luma <= 25).mean() >= 0.98 and luma_thumb(healthy).mean() > 60
    assert frame_diff(black, scope.next_frame(black)) > 0.001  # still a little sensor noise
    assert _fault_kinds(sim) == ["black"]


def test_corrupt(scope: ScopeHttp, sim: SimHandle) -> None:
    healthy = _stream(scope, sim, "corrupt")
    assert decodes(healthy)
    bad = wait_until(lambda: (f := scope.frame()) and not decodes(f) and f, what="corrupt frames")
    assert bad.startswith(b"\xff\xd8")
    assert _fault_kinds(sim) == ["corrupt"]


def test_wrong_size(scope: ScopeHttp, sim: SimHandle) -> None:
    first = _stream(scope, sim, "wrong_size")
    assert Image.open(io.BytesIO(first)).size == (384, 384)
    sim.set_profile("wrong_size", {**FAST, "wrong_size": [320, 240]})
    scope.start(pipeline_id="longlive", parameters={"width": 512, "height": 512})
    assert Image.open(io.BytesIO(scope.wait_frame())).size == (320, 240)
    assert "wrong_size" in _fault_kinds(sim)


def test_prompt_insensitive(scope: ScopeHttp, sim: SimHandle) -> None:
    before = _stream(scope, sim, "prompt_insensitive")
    scope.switch_prompt("a desert caravan at noon")
    time.sleep(0.15)  # past the 0.05 s prompt latency
    after = [scope.next_frame(before)]
    after.append(scope.next_frame(after[-1]))
    assert all(0.001 < frame_diff(before, frame) < 0.06 for frame in after)
    assert sim.truth()["sessions"][0]["prompt_texts"][-1] == "a desert caravan at noon"
    assert _fault_kinds(sim) == ["prompt_insensitive"]


def test_low_fps(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "low_fps")
    headless = scope.metrics()["sessions"]["headless"]
    session = sim.truth()["sessions"][0]
    assert session["fps_true"] == 3.0
    assert headless["frames_out"] == int((headless["elapsed_seconds"] - session["first_frame_s"]) * 3.0) + 1
    assert _fault_kinds(sim) == ["low_fps"]


def test_vram_leak(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "vram_leak", leak_mb_per_s=2000.0)
    first = scope.metrics()["gpu"]["vram_allocated_mb"]
    time.sleep(0.2)
    assert scope.metrics()["gpu"]["vram_allocated_mb"] > first + 200
    assert _fault_kinds(sim) == ["vram_leak"]


def test_vram_ceiling(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "vram_ceiling")
    gpu = scope.metrics()["gpu"]
    assert gpu["vram_allocated_mb"] / gpu["vram_total_mb"] >= 0.94
    assert _fault_kinds(sim) == ["vram_ceiling"]


def test_slow_http(scope: ScopeHttp, sim: SimHandle) -> None:
    sim.set_profile("slow_http", {**FAST, "http_delay_s": 0.2})
    started = time.monotonic()
    assert scope.http.get("/health").status_code == 200
    assert time.monotonic() - started >= 0.2  # the server sleeps before answering
    assert _fault_kinds(sim) == ["slow_http"]


def test_hang_http(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "hang_http")
    _after_fault(sim)
    for path in ("/api/v1/session/metrics", "/api/v1/session/frame"):
        with pytest.raises(httpx.ReadTimeout):
            scope.http.get(path, timeout=0.3)
    assert scope.http.get("/health").status_code == 200
    assert scope.http.post("/api/v1/session/stop").status_code == 200
    assert _fault_kinds(sim) == ["hang_http"]


def test_conn_reset(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "conn_reset")
    _after_fault(sim)
    for path in ("/api/v1/session/metrics", "/api/v1/session/frame", "/api/v1/session/parameters"):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{scope.url}{path}", timeout=2.0)
    assert scope.http.post("/api/v1/session/stop").status_code == 200
    assert _fault_kinds(sim) == ["conn_reset"]


def test_switching_a_running_session_into_a_fault(scope: ScopeHttp, sim: SimHandle) -> None:
    _stream(scope, sim, "healthy")
    sim.set_profile("stall", {**FAST, "fault_after_s": 0.1})
    _after_fault(sim)
    fault = sim.truth()["faults"][0]
    assert fault["kind"] == "stall" and fault["session_id"] == sim.truth()["sessions"][0]["session_id"]
    scope.http.post("/api/v1/session/stop")
    assert sim.truth()["faults"][0]["ended_at"] is not None
