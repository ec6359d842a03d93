"""Test inputs: a deterministic clip and reference image, and the session request built on them.

Inputs are drawn locally (no downloads) from a seed, cached under
``$LOADTEST_DATA_DIR/inputs`` as ``loadtest-clip-<sha8>.mp4`` / ``loadtest-image-<sha8>.png``
(the hash is of the content, so a name is unique per content) and uploaded to a Scope
instance's assets folder only when the instance does not list that name yet.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple, Protocol

import av
import numpy as np
from PIL import Image

from config.scenarios import INPUT_PLACEHOLDER, Scenario, graph_needs_input
from errors import Category, Phase, PhaseFailed

DATA_DIR_ENV = "LOADTEST_DATA_DIR"
DEFAULT_DATA_DIR = "data"
INPUTS_SUBDIR = "inputs"
INPUT_WIDTH = 512
INPUT_HEIGHT = 512
CLIP_FPS = 12
CLIP_SECONDS = 4.0
INPUT_SEED = 0
SHAPE_COUNT = 6
# Bump when the drawing changes so cached files made by the old drawing are not reused.
GENERATOR_VERSION = 1
PREFERRED_CODEC = "libx264"
FALLBACK_CODEC = "mpeg4"
VIDEO = "video"
IMAGE = "image"
FILE_NAMING = {VIDEO: ("loadtest-clip", "mp4"), IMAGE: ("loadtest-image", "png")}


class AssetClient(Protocol):
    """The two ScopeClient methods inputs need."""

    async def list_assets(self) -> list[Any]:
        """Assets on the instance, each with `path` (and maybe `name`)."""

    async def upload_asset(self, filename: str, data: bytes) -> Any:
        """Store a file; the answer's `path` is absolute on the Scope host."""


@dataclass(frozen=True)
class InputPaths:
    """Server-side absolute paths of the uploaded inputs (None when not needed), and the local clip
    a WebRTC driver sends as its track (it is never uploaded)."""

    clip_path: str | None = None
    image_path: str | None = None
    local_clip_path: str | None = None


@dataclass(frozen=True)
class InputRecipe:
    """Everything that decides an input's content; its hash names the cache pointer."""

    kind: str
    seed: int = INPUT_SEED
    width: int = INPUT_WIDTH
    height: int = INPUT_HEIGHT
    fps: int = CLIP_FPS
    duration_s: float = CLIP_SECONDS
    versions: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """Short hash of the recipe (library versions included: another encoder, other bytes)."""
        text = json.dumps(asdict(self) | {"generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


class SessionRequest(NamedTuple):
    """``start_session`` keyword args and the sink to read frames from; unpacks as (kwargs, sink)."""

    kwargs: dict[str, Any]
    sink_node_id: str | None


def default_cache_dir() -> Path:
    """``$LOADTEST_DATA_DIR/inputs`` (``./data/inputs`` when unset)."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / INPUTS_SUBDIR


def content_name(kind: str, data: bytes) -> str:
    """``loadtest-clip-<sha8>.mp4`` / ``loadtest-image-<sha8>.png`` for these bytes."""
    prefix, extension = FILE_NAMING[kind]
    return f"{prefix}-{hashlib.sha256(data).hexdigest()[:8]}.{extension}"


def _shapes(rng: np.random.Generator, width: int, height: int) -> list[dict[str, Any]]:
    """Seeded shapes: position, velocity (px per frame), size, colour, circle or square."""
    return [
        {
            "xy": rng.uniform([0, 0], [width, height]),
            "v": rng.uniform(-9, 9, size=2),
            "r": float(rng.uniform(width / 16, width / 6)),
            "rgb": rng.integers(40, 256, size=3).astype(np.uint8),
            "circle": bool(rng.integers(0, 2)),
        }
        for _ in range(SHAPE_COUNT)
    ]


def render_frames(*, seed: int, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    """RGB frames of shapes bouncing over a drifting gradient; the same seed draws the same frames."""
    rng = np.random.default_rng(seed)
    shapes = _shapes(rng, width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    size = np.array([width, height], dtype=np.float64)
    for index in range(count):
        phase = index / max(count, 1)
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[..., 0] = (xs / width * 200 + phase * 55).astype(np.uint8)
        frame[..., 1] = (ys / height * 180).astype(np.uint8)
        frame[..., 2] = ((xs + ys) / (width + height) * 120 + 60 * (1 - phase)).astype(np.uint8)
        for shape in shapes:
            position = shape["xy"] + shape["v"] * index
            cx, cy = np.abs((position + size) % (2 * size) - size)  # bounce off the borders
            dx, dy = xs - cx, ys - cy
            inside = (dx * dx + dy * dy < shape["r"] ** 2) if shape["circle"] else (
                (np.abs(dx) < shape["r"]) & (np.abs(dy) < shape["r"])
            )
            frame[inside] = shape["rgb"]
        yield frame


def _add_video_stream(container: Any, *, fps: int, width: int, height: int) -> Any:
    """An H.264 stream (mpeg4 when this FFmpeg lacks libx264), single-threaded for stable bytes."""
    try:
        stream = container.add_stream(PREFERRED_CODEC, rate=fps, options={"preset": "veryfast", "crf": "23"})
    except av.codec.codec.UnknownCodecError:
        stream = container.add_stream(FALLBACK_CODEC, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    return stream


def generate_clip(
    *, seed: int = INPUT_SEED, width: int = INPUT_WIDTH, height: int = INPUT_HEIGHT,
    fps: int = CLIP_FPS, duration_s: float = CLIP_SECONDS,
) -> bytes:
    """A short MP4 of moving shapes; the same arguments give the same bytes."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = _add_video_stream(container, fps=fps, width=width, height=height)
        frames = render_frames(seed=seed, width=width, height=height, count=round(fps * duration_s))
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def generate_image(*, seed: int = INPUT_SEED, width: int = INPUT_WIDTH, height: int = INPUT_HEIGHT) -> bytes:
    """A PNG reference image (one frame of the shape scene); the same arguments give the same bytes."""
    rgb = next(render_frames(seed=seed + 1, width=width, height=height, count=1))
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def recipe_for(kind: str) -> InputRecipe:
    """The shipped recipe of an input kind (``video`` or ``image``)."""
    if kind not in FILE_NAMING:
        raise PhaseFailed(f"unknown input kind {kind!r} (known: video, image)", category=Category.HARNESS)
    versions = {"av": av.__version__, "numpy": np.__version__, "pillow": Image.__version__}
    return InputRecipe(kind=kind, versions=versions)


def _generate(recipe: InputRecipe) -> bytes:
    """The bytes a recipe describes."""
    if recipe.kind == VIDEO:
        return generate_clip(seed=recipe.seed, width=recipe.width, height=recipe.height,
                             fps=recipe.fps, duration_s=recipe.duration_s)
    return generate_image(seed=recipe.seed, width=recipe.width, height=recipe.height)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file and rename, so a reader never sees half a file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def _cached(cache_dir: Path, pointer: Path) -> Path | None:
    """The cached file a pointer names, if it is there and its content still matches its name."""
    try:
        path = cache_dir / pointer.read_text(encoding="utf-8").strip()
        data = path.read_bytes()
    except OSError:
        return None
    kind = VIDEO if path.name.startswith(FILE_NAMING[VIDEO][0]) else IMAGE
    return path if content_name(kind, data) == path.name else None


def ensure_local_input(kind: str, cache_dir: Path) -> Path:
    """The cached input file of a kind, generated on first use (content-hash name)."""
    recipe = recipe_for(kind)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pointer = cache_dir / f"{FILE_NAMING[kind][0]}-recipe-{recipe.key()}.ref"
    cached = _cached(cache_dir, pointer)
    if cached is not None:
        return cached
    data = _generate(recipe)
    path = cache_dir / content_name(kind, data)
    _atomic_write(path, data)
    _atomic_write(pointer, path.name.encode())
    return path


def _is_absolute(path: str) -> bool:
    """Absolute on a POSIX or a Windows Scope host."""
    return PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()


def _asset_paths(assets: list[Any]) -> dict[str, str]:
    """File name -> server path of listed assets (by their name and their path's base name)."""
    paths: dict[str, str] = {}
    for asset in assets:
        for name in (getattr(asset, "name", None), PurePosixPath(asset.path).name, PureWindowsPath(asset.path).name):
            if name:
                paths.setdefault(name, asset.path)
    return paths


async def ensure_uploaded(client: AssetClient, kinds: set[str], cache_dir: str | Path) -> InputPaths:
    """Server paths of the inputs ``kinds`` needs (video/image; none is ignored), uploading only missing ones."""
    wanted = sorted(set(kinds) - {"none"})
    local = {kind: await asyncio.to_thread(ensure_local_input, kind, Path(cache_dir)) for kind in wanted}
    if not local:
        return InputPaths()
    listed = _asset_paths(await client.list_assets())
    remote: dict[str, str] = {}
    for kind, path in local.items():
        server_path = listed.get(path.name)
        if server_path is None:
            server_path = (await client.upload_asset(path.name, path.read_bytes())).path
        if not _is_absolute(server_path):
            raise PhaseFailed(f"Scope returned a relative asset path {server_path!r} for {path.name}",
                              category=Category.PROTOCOL, phase=Phase.START)
        remote[kind] = server_path
    return InputPaths(clip_path=remote.get(VIDEO), image_path=remote.get(IMAGE))


def _require(path: str | None, scenario: Scenario, kind: str) -> str:
    """The input path, or PhaseFailed(harness) when the caller did not upload that input."""
    if not path:
        message = f"scenario {scenario.name} needs an uploaded {kind} input; call ensure_uploaded with {{'{kind}'}}"
        raise PhaseFailed(message, category=Category.HARNESS, phase=Phase.START)
    return path


def fill_graph(graph: dict[str, Any], input_path: str) -> dict[str, Any]:
    """A copy of a graph template with ``{{input_path}}`` replaced in every node value."""
    filled = copy.deepcopy(graph)
    for node in filled.get("nodes", []):
        for key, value in node.items():
            if isinstance(value, str) and INPUT_PLACEHOLDER in value:
                node[key] = value.replace(INPUT_PLACEHOLDER, input_path)
    return filled


def _graph_for(scenario: Scenario, inputs: InputPaths) -> dict[str, Any]:
    """The scenario's graph with its input filled in (a copy either way)."""
    graph = scenario.graph or {}
    if not graph_needs_input(graph):
        return copy.deepcopy(graph)
    return fill_graph(graph, _require(inputs.clip_path, scenario, VIDEO))


def build_session_request(scenario: Scenario, inputs: InputPaths, prompt: str | None = None) -> SessionRequest:
    """``start_session`` kwargs for a scenario (simple or graph mode) and its sink; ``prompt`` defaults to the first."""
    text = prompt if prompt is not None else (scenario.prompts[0] if scenario.prompts else None)
    if text is None and scenario.mode != "v2v":
        raise PhaseFailed(f"scenario {scenario.name} ({scenario.mode}) has no prompt",
                          category=Category.HARNESS, phase=Phase.START)
    parameters = dict(scenario.parameters)
    if scenario.input_kind == IMAGE:
        parameters["first_frame_image"] = _require(inputs.image_path, scenario, IMAGE)
    kwargs: dict[str, Any] = {"input_mode": "video" if scenario.input_kind == VIDEO else "text",
                              "parameters": parameters}
    if text is not None:
        kwargs["prompts"] = [{"text": text, "weight": 1.0}]
    if scenario.graph is not None:
        kwargs["graph"] = _graph_for(scenario, inputs)
    else:
        kwargs["pipeline_id"] = scenario.pipeline_ids[0]
        if scenario.input_kind == VIDEO:
            clip = _require(inputs.clip_path, scenario, VIDEO)
            kwargs["input_source"] = {"enabled": True, "source_type": "video_file", "source_name": clip}
    return SessionRequest(kwargs=kwargs, sink_node_id=scenario.sink_node_id)


def pipelines_to_load(scenario: Scenario) -> list[str]:
    """Pipeline ids to load before the session (every chain member, in chain order)."""
    return list(scenario.pipeline_ids)


def pipeline_nodes_to_load(scenario: Scenario) -> list[dict[str, str]] | None:
    """``pipelines`` entries (node_id, pipeline_id) for a graph scenario's load; None without a graph."""
    if scenario.graph is None:
        return None
    nodes = scenario.graph.get("nodes", [])
    return [{"node_id": n["id"], "pipeline_id": n["pipeline_id"]} for n in nodes if n.get("type") == "pipeline"]
