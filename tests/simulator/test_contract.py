"""The simulator answers like real Scope 0.2.4: every recorded call replayed over loopback HTTP.

`tests/fixtures/scope-0.2.4/http-contract.json` holds what a real 0.2.4 server answered, one
entry per call, in call order (idle -> bad loads -> load -> session -> stop -> after). The
replay runs once, in that order, against a simulator set up like the recorded machine (no
GPU, so only the weight-free pipelines; passthrough loads at once); then each label is one
test case comparing status code and shape (field names and JSON types, nested as recorded).

The recording keeps answers, not requests. Each request below is derived from the label,
the recorded answer and scope-api.md (the unknown id is `nosuch-pipe`, the unknown route
`/api/v1/no-such-route`, the sink `no-such-sink`); where the recording carries a value of the request
(the prompt "a", the asset name "cmp-clip") it is reused. Before the replay passthrough is
loaded, because the recorded "status idle" reads it loaded.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from simulator.testing import running_simulator

RECORDING = Path(__file__).resolve().parents[1] / "fixtures" / "scope-0.2.4" / "http-contract.json"
ENTRIES: list[dict[str, Any]] = json.loads(RECORDING.read_text())
LABELS = [entry["label"] for entry in ENTRIES]
# The recorded machine: no GPU, weight-free pipelines that load at once.
RECORDED_SETUP = {"has_gpu": False, "load_s": 0.0, "connect_s": 0.05, "first_frame_s": 0.3, "load_status_lag_s": 0.0}
UNKNOWN_ID = "nosuch-pipe"
TRUNCATED = "{...}"  # the recorder's mark for an object it did not descend into
MAX_DEPTH = 4  # objects this deep are recorded as TRUNCATED
POLL_S = 0.02
WAIT_S = 10.0
SETTLED_READS = 5  # readings after the last change that show a status stays put


@dataclass
class Observed:
    """What the simulator answered for one label."""

    status: int | None = None
    content_type: str = ""
    body: Any = None
    states: list[str] = field(default_factory=list)  # status sequences
    errors: list[Any] = field(default_factory=list)
    statuses_before: list[int] = field(default_factory=list)  # frame polls before the first frame
    failure: str | None = None  # the replay step itself broke


def shape_of(value: Any, depth: int = 0) -> Any:
    """The recorder's summary of a JSON value: field -> type name, first item of a list, deep objects cut."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return TRUNCATED
        return {key: shape_of(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [shape_of(value[0], depth + 1)] if value else []
    return type(value).__name__


def differences(real: Any, simulated: Any, where: str = "body") -> list[str]:
    """Where two shapes differ, as readable lines (empty when they are the same)."""
    if real == simulated:
        return []
    if isinstance(real, dict) and isinstance(simulated, dict):
        lines = [f"{where}: simulator lacks {key!r}" for key in sorted(real.keys() - simulated.keys())]
        lines += [f"{where}: simulator adds {key!r}" for key in sorted(simulated.keys() - real.keys())]
        for key in sorted(real.keys() & simulated.keys()):
            lines += differences(real[key], simulated[key], f"{where}.{key}")
        return lines
    if isinstance(real, list) and isinstance(simulated, list) and real and simulated:
        return differences(real[0], simulated[0], f"{where}[0]")
    return [f"{where}: real {json.dumps(real)}, simulator {json.dumps(simulated)}"]


def collapsed(states: list[str]) -> list[str]:
    """A status sequence without repeats."""
    return [state for index, state in enumerate(states) if index == 0 or state != states[index - 1]]


def tiny_clip() -> bytes:
    """A one-second 64x64 H.264 clip (the recording uploaded a small clip named cmp-clip)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(10):
            pixels = np.full((64, 64, 3), 20 * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


class Replay:
    """Sends each label's request to one simulator and keeps what it answered."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.asset_path = ""

    def call(self, method: str, path: str, **request: Any) -> Observed:
        """One request; the body decoded when it is JSON."""
        response = self.http.request(method, path, **request)
        content_type = response.headers.get("content-type", "")
        body = response.json() if content_type.startswith("application/json") else f"<{content_type}>"
        return Observed(status=response.status_code, content_type=content_type, body=body)

    def status_readings(self, *, until: Callable[[list[str]], bool]) -> Observed:
        """Read `/pipeline/status` every POLL_S until `until(states)`, then SETTLED_READS more."""
        observed, deadline = Observed(), time.monotonic() + WAIT_S
        while not until(observed.states) and time.monotonic() < deadline:
            self._read_status(observed)
            time.sleep(POLL_S)
        for _ in range(SETTLED_READS):
            self._read_status(observed)
        return observed

    def _read_status(self, observed: Observed) -> None:
        body = self.http.get("/api/v1/pipeline/status").json()
        observed.states.append(body["status"])
        observed.errors.append(body["error"])

    def first_frame(self) -> Observed:
        """Poll `/session/frame` until the first frame; keep the statuses seen before it."""
        observed, deadline = Observed(), time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            response = self.http.get("/api/v1/session/frame")
            if response.status_code == 200:
                observed.status, observed.content_type = 200, response.headers.get("content-type", "")
                return observed
            observed.statuses_before.append(response.status_code)
            time.sleep(POLL_S)
        return observed

    def upload(self) -> Observed:
        """Upload the test clip and remember where the simulator stored it."""
        observed = self.call("POST", "/api/v1/assets", params={"filename": "cmp-clip.mp4"}, content=tiny_clip())
        self.asset_path = observed.body.get("path", "") if isinstance(observed.body, dict) else ""
        return observed

    def start_video(self) -> Observed:
        """Start a passthrough session on the uploaded clip."""
        source = {"enabled": True, "source_type": "video_file", "source_name": self.asset_path}
        body = {"pipeline_id": "passthrough", "input_mode": "video", "input_source": source}
        return self.call("POST", "/api/v1/session/start", json=body)


def back_to_not_loaded(states: list[str]) -> bool:
    """True once the status read `error` and then `not_loaded`."""
    return "error" in states and "not_loaded" in states[states.index("error"):]


def _requests(replay: Replay) -> dict[str, Callable[[], Observed]]:
    """Each label's request, in the recorded order."""
    def get(path: str, **request: Any) -> Callable[[], Observed]:
        return lambda: replay.call("GET", path, **request)

    def post(path: str, **request: Any) -> Callable[[], Observed]:
        return lambda: replay.call("POST", path, **request)

    status, stop, frame = "/api/v1/pipeline/status", "/api/v1/session/stop", "/api/v1/session/frame"
    metrics, params, load = "/api/v1/session/metrics", "/api/v1/session/parameters", "/api/v1/pipeline/load"
    cloud = "/api/v1/cloud"
    return {
        "health": get("/health"),
        "status idle": get(status),
        "stop no session": post(stop),
        "frame no session": get(frame),
        "metrics no session": get(metrics),
        "params no session GET": get(params),
        "params no session POST": post(params, json={"prompts": [{"text": "a", "weight": 1.0}]}),
        "load {}": post(load, json={}),
        "load unknown": post(load, json={"pipeline_ids": [UNKNOWN_ID]}),
        "status after unknown load (t, status, error)": lambda: replay.status_readings(until=back_to_not_loaded),
        "start pipeline not loaded": post("/api/v1/session/start", json={"pipeline_id": "passthrough"}),
        "stop after that": post(stop),
        "start no pipeline_id": post("/api/v1/session/start", json={"input_mode": "text"}),
        "load passthrough": post(load, json={"pipeline_ids": ["passthrough"]}),
        "load passthrough status seq": lambda: replay.status_readings(until=lambda states: "loaded" in states),
        "status loaded": get(status),
        "upload asset": replay.upload,
        "list assets": get("/api/v1/assets"),
        "start passthrough video": replay.start_video,
        "first frame": replay.first_frame,
        "frame quality=0": get(frame, params={"quality": 0}),
        "frame": get(frame),
        "frame wrong sink": get(frame, params={"sink_node_id": "no-such-sink"}),
        "metrics in session": get(metrics),
        "params POST prompts": post(params, json={"prompts": [{"text": "new", "weight": 1.0}]}),
        "params POST {}": post(params, json={}),
        "params GET": get(params),
        "logs tail 3": get("/api/v1/logs/tail", params={"lines": 3}),
        "logs tail 0": get("/api/v1/logs/tail", params={"lines": 0}),
        "hardware": get("/api/v1/hardware/info"),
        "schemas": get("/api/v1/pipelines/schemas"),
        "schema pipeline ids": get("/api/v1/pipelines/schemas"),
        "cloud status": get(f"{cloud}/status"),
        "cloud connect {}": post(f"{cloud}/connect", json={}),
        "cloud status after": get(f"{cloud}/status"),
        "cloud disconnect": post(f"{cloud}/disconnect"),
        "stop": post(stop),
        "metrics after stop": get(metrics),
        "frame after stop": get(frame),
        "stop again": post(stop),
        "unknown route": get("/api/v1/no-such-route"),
    }


def _observe(step: Callable[[], Observed]) -> Observed:
    try:
        return step()
    except Exception as exc:  # one broken step fails its own label, not the whole replay
        return Observed(failure=f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def replayed() -> Iterator[dict[str, Observed]]:
    """Every label's answer from one simulator set up like the recorded machine, replayed in call order."""
    with running_simulator("healthy", overrides=RECORDED_SETUP, seed=24) as sim:
        with httpx.Client(base_url=sim.url, timeout=5.0) as http:
            replay = Replay(http)
            assert replay.call("POST", "/api/v1/pipeline/load", json={"pipeline_ids": ["passthrough"]}).status == 200
            replay.status_readings(until=lambda states: "loaded" in states)
            steps = _requests(replay)
            assert list(steps) == LABELS, "the replay must follow the recording's labels and order"
            yield {label: _observe(step) for label, step in steps.items()}


def check_call(entry: dict[str, Any], observed: Observed) -> None:
    """Same status code and shape as the recorded answer; an error's text detail word for word."""
    assert observed.status == entry["status"], f"status {observed.status}, real {entry['status']}: {observed.body}"
    if isinstance(entry["body"], str) and entry["body"].startswith("<image/jpeg"):
        assert observed.content_type == "image/jpeg"
        return
    assert differences(entry["shape"], shape_of(observed.body)) == []
    if isinstance(entry["body"], dict) and isinstance(entry["body"].get("detail"), str):
        # Clients tell "no session" from "no such route" by these texts: they are part of the contract.
        assert observed.body["detail"] == entry["body"]["detail"]


def check_sequence(entry: dict[str, Any], observed: Observed) -> None:
    """The same status readings, repeats aside, and `error` never set (the recorder wrote "" for null)."""
    real_states = [reading[1] for reading in entry["seq"]]
    assert collapsed(observed.states) == collapsed(real_states)
    assert all(not error for error in observed.errors)


def check_first_frame(entry: dict[str, Any], observed: Observed) -> None:
    """A first frame arrives; until then the frame route answers 404."""
    assert observed.status == 200 and observed.content_type == "image/jpeg"
    assert set(observed.statuses_before) <= {404}


def check_schema_ids(entry: dict[str, Any], observed: Observed) -> None:
    """The same pipelines, and passthrough's entry has the recorded shape down to its config fields."""
    pipelines = observed.body["pipelines"]
    assert sorted(pipelines) == entry["ids"]
    assert differences(entry["passthrough"], shape_of(pipelines["passthrough"]), "passthrough") == []


@pytest.mark.parametrize("label", LABELS)
def test_simulator_answers_like_scope_0_2_4(label: str, replayed: dict[str, Observed]) -> None:
    entry, observed = ENTRIES[LABELS.index(label)], replayed[label]
    assert observed.failure is None, observed.failure
    if "seq" in entry:
        check_sequence(entry, observed)
    elif "first_frame_s" in entry:
        check_first_frame(entry, observed)
    elif "ids" in entry:
        check_schema_ids(entry, observed)
    else:
        check_call(entry, observed)


def test_labels_are_unique() -> None:
    assert len(set(LABELS)) == len(LABELS)


def test_other_methods_on_unknown_routes_are_405() -> None:
    # Not in the recording: scope-api.md's answer for a POST where only Scope's frontend GET matches.
    with running_simulator("healthy", overrides=RECORDED_SETUP) as sim:
        with httpx.Client(base_url=sim.url, timeout=5.0) as http:
            post_unknown = http.post("/api/v1/no-such-route", json={})
            get_post_only = http.get("/api/v1/session/stop")
    assert post_unknown.status_code == 405
    assert get_post_only.status_code == 404 and get_post_only.json() == {"detail": "Frontend not built"}
