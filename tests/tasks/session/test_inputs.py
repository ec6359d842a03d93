"""tasks/session/inputs.py: deterministic local inputs, upload-once logic, and session requests per mode."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from PIL import Image

from config.scenarios import INPUT_PLACEHOLDER
from config.settings import Settings, load_settings
from errors import Category, PhaseFailed
from tasks.session.inputs import (
    CLIP_FPS,
    CLIP_SECONDS,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    InputPaths,
    build_session_request,
    ensure_local_input,
    ensure_uploaded,
    generate_clip,
    generate_image,
    pipeline_nodes_to_load,
    pipelines_to_load,
)

CLIP = "/srv/scope/assets/loadtest-clip-0123abcd.mp4"
IMAGE = "/srv/scope/assets/loadtest-image-4567cdef.png"
BOTH = InputPaths(clip_path=CLIP, image_path=IMAGE)


@pytest.fixture(scope="module")
def clip_bytes() -> bytes:
    return generate_clip()


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(environ={})


def test_clip_is_deterministic(clip_bytes: bytes) -> None:
    assert hashlib.sha256(generate_clip()).digest() == hashlib.sha256(clip_bytes).digest()
    assert generate_clip(seed=1, duration_s=1.0) != generate_clip(seed=2, duration_s=1.0)


def test_clip_decodes_to_the_requested_size_and_length(clip_bytes: bytes) -> None:
    with av.open(io.BytesIO(clip_bytes)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "mpeg4")
        frames = list(container.decode(stream))
    assert len(frames) == round(CLIP_FPS * CLIP_SECONDS)
    assert {(f.width, f.height) for f in frames} == {(INPUT_WIDTH, INPUT_HEIGHT)}
    first, middle = frames[0].to_ndarray(format="gray"), frames[len(frames) // 2].to_ndarray(format="gray")
    assert abs(first.astype(int) - middle.astype(int)).mean() > 2  # the shapes move


def test_clip_falls_back_to_mpeg4_without_libx264(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.session.inputs.PREFERRED_CODEC", "no-such-encoder")
    data = generate_clip(duration_s=1.0)
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
        assert len(list(container.decode(video=0))) == CLIP_FPS


def test_image_is_a_deterministic_png() -> None:
    data = generate_image()
    assert data == generate_image()
    image = Image.open(io.BytesIO(data))
    image.verify()
    assert (image.format, image.size) == ("PNG", (INPUT_WIDTH, INPUT_HEIGHT))


def test_local_inputs_are_cached_under_content_names(tmp_path: Path, clip_bytes: bytes) -> None:
    path = ensure_local_input("video", tmp_path)
    assert path.name == f"loadtest-clip-{hashlib.sha256(clip_bytes).hexdigest()[:8]}.mp4"
    assert path.read_bytes() == clip_bytes
    modified_ns = path.stat().st_mtime_ns
    assert ensure_local_input("video", tmp_path) == path
    assert path.stat().st_mtime_ns == modified_ns  # reused, not rewritten
    image = ensure_local_input("image", tmp_path)
    assert image.name == f"loadtest-image-{hashlib.sha256(generate_image()).hexdigest()[:8]}.png"


def test_a_damaged_cache_file_is_regenerated(tmp_path: Path, clip_bytes: bytes) -> None:
    path = ensure_local_input("video", tmp_path)
    path.write_bytes(b"truncated")
    assert ensure_local_input("video", tmp_path).read_bytes() == clip_bytes


@dataclass
class FakeAsset:
    path: str
    name: str | None = None


@dataclass
class FakeAssetClient:
    """Records uploads; lists what was uploaded (optionally under a folder path)."""

    folder: str = "/srv/scope/assets"
    assets: list[FakeAsset] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    async def list_assets(self) -> list[FakeAsset]:
        return list(self.assets)

    async def upload_asset(self, filename: str, data: bytes) -> FakeAsset:
        self.uploads.append(filename)
        asset = FakeAsset(path=f"{self.folder}/{filename}", name=filename)
        self.assets.append(asset)
        return asset


async def test_ensure_uploaded_uploads_once_and_reuses_by_name(tmp_path: Path) -> None:
    client = FakeAssetClient()
    first = await ensure_uploaded(client, {"video", "image"}, tmp_path)
    second = await ensure_uploaded(client, {"video", "image"}, tmp_path)
    clip_name, image_name = ensure_local_input("video", tmp_path).name, ensure_local_input("image", tmp_path).name
    assert first == second == InputPaths(f"{client.folder}/{clip_name}", f"{client.folder}/{image_name}")
    assert sorted(client.uploads) == sorted([clip_name, image_name])


async def test_ensure_uploaded_matches_a_listed_path_without_name(tmp_path: Path) -> None:
    name = ensure_local_input("image", tmp_path).name
    client = FakeAssetClient(assets=[FakeAsset(path=f"/data/assets/{name}")])
    paths = await ensure_uploaded(client, {"image"}, tmp_path)
    assert paths == InputPaths(image_path=f"/data/assets/{name}")
    assert client.uploads == []


async def test_ensure_uploaded_for_text_mode_does_nothing(tmp_path: Path) -> None:
    client = FakeAssetClient()
    assert await ensure_uploaded(client, {"none"}, tmp_path) == InputPaths()
    assert client.uploads == [] and not any(tmp_path.iterdir())


async def test_ensure_uploaded_rejects_a_relative_server_path(tmp_path: Path) -> None:
    client = FakeAssetClient(folder="assets")
    with pytest.raises(PhaseFailed) as caught:
        await ensure_uploaded(client, {"video"}, tmp_path)
    assert caught.value.category == Category.PROTOCOL


def test_text_to_video_request(settings: Settings) -> None:
    scenario = settings.scenario("longlive_t2v_5m")
    kwargs, sink = build_session_request(scenario, InputPaths())
    assert kwargs == {
        "pipeline_id": "longlive",
        "input_mode": "text",
        "prompts": [{"text": scenario.prompts[0], "weight": 1.0}],
        "parameters": {"width": scenario.width, "height": scenario.height},
    }
    assert sink is None


def test_video_to_video_request(settings: Settings) -> None:
    scenario = settings.scenario("longlive_v2v_1m")
    request = build_session_request(scenario, BOTH, "a chosen prompt")
    assert request.kwargs["input_mode"] == "video"
    assert request.kwargs["input_source"] == {"enabled": True, "source_type": "video_file", "source_name": CLIP}
    assert request.kwargs["prompts"] == [{"text": "a chosen prompt", "weight": 1.0}]
    assert "first_frame_image" not in request.kwargs["parameters"]


def test_image_to_video_request(settings: Settings) -> None:
    scenario = settings.scenario("ltx2_i2v_5m")
    kwargs, _ = build_session_request(scenario, BOTH)
    assert kwargs["pipeline_id"] == "ltx2" and kwargs["input_mode"] == "text"
    assert kwargs["parameters"] == {"width": scenario.width, "height": scenario.height, "first_frame_image": IMAGE}
    assert "input_source" not in kwargs
    assert "first_frame_image" not in scenario.parameters  # the scenario is not mutated


@pytest.mark.parametrize("name", ["longlive_rife_v2v_5m", "video_depth_anything_longlive_rife_v2v_5m"])
def test_chain_request_fills_the_graph(settings: Settings, name: str) -> None:
    scenario = settings.scenario(name)
    kwargs, sink = build_session_request(scenario, BOTH)
    assert "pipeline_id" not in kwargs and "input_source" not in kwargs
    graph = kwargs["graph"]
    assert INPUT_PLACEHOLDER not in json.dumps(graph)
    assert [n["source_name"] for n in graph["nodes"] if n["type"] == "source"] == [CLIP]
    assert INPUT_PLACEHOLDER in json.dumps(scenario.graph)  # the template stays a template
    assert sink == scenario.sink_node_id
    assert sink in {n["id"] for n in graph["nodes"] if n["type"] == "sink"}
    pipeline_nodes = [n["pipeline_id"] for n in graph["nodes"] if n["type"] == "pipeline"]
    assert pipelines_to_load(scenario) == scenario.pipeline_ids
    assert sorted(pipelines_to_load(scenario)) == sorted(pipeline_nodes)
    assert [n["pipeline_id"] for n in pipeline_nodes_to_load(scenario) or []] == pipeline_nodes


def test_simple_scenario_loads_its_pipeline(settings: Settings) -> None:
    scenario = settings.scenario("ltx2_t2v_1m")
    assert pipelines_to_load(scenario) == ["ltx2"]
    assert pipeline_nodes_to_load(scenario) is None


@pytest.mark.parametrize(
    ("name", "inputs", "missing"),
    [("longlive_v2v_5m", InputPaths(image_path=IMAGE), "video"),
     ("ltx2_i2v_1m", InputPaths(clip_path=CLIP), "image"),
     ("longlive_rife_v2v_15m", InputPaths(), "video")],
)
def test_missing_input_is_a_harness_failure(settings: Settings, name: str, inputs: InputPaths, missing: str) -> None:
    with pytest.raises(PhaseFailed) as caught:
        build_session_request(settings.scenario(name), inputs)
    assert caught.value.category == Category.HARNESS
    assert name in caught.value.message and missing in caught.value.message
