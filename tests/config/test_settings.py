"""config/settings.py: shipped configs load, the matrix expands, and bad config names file, key and problem."""

from __future__ import annotations

import copy
import datetime
import json
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.scenarios import INPUT_PLACEHOLDER
from config.settings import (
    CONFIG_ENV_VAR,
    Budget,
    Settings,
    default_config_path,
    format_config_error,
    load_settings,
)
from errors import ConfigError

CONFIG_DIR = default_config_path().parent
DEFAULT_YAML = CONFIG_DIR / "default.yaml"
DEMO_YAML = CONFIG_DIR / "demo.yaml"
PROMPTS_DIR = CONFIG_DIR / "prompts"
GRAPHS_DIR = CONFIG_DIR / "graphs"
INPUT_KINDS = {"t2v": "none", "v2v": "video", "i2v": "image"}


def raw_config(path: Path = DEFAULT_YAML) -> dict[str, Any]:
    """A shipped YAML as a dict, with its directories made absolute so it loads from anywhere."""
    raw = yaml.safe_load(path.read_text())
    raw["prompts_dir"] = str(PROMPTS_DIR)
    raw["graphs_dir"] = str(GRAPHS_DIR)
    return raw


def write_config(tmp_path: Path, raw: dict[str, Any], name: str = "config.yaml") -> Path:
    """Dump a config dict to a file under tmp_path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


def expected_name(pipeline: str, mode: str, minutes: float) -> str:
    """The naming rule as the older harness's users know it (whole minutes -> m, else seconds)."""
    seconds = minutes * 60
    suffix = f"{int(minutes)}m" if float(minutes).is_integer() else f"{round(seconds)}s"
    return f"{pipeline.replace('+', '_').replace('-', '_')}_{mode}_{suffix}"


def load_error(tmp_path: Path, raw: dict[str, Any]) -> tuple[ConfigError, Path]:
    """Write raw, load it, return the ConfigError it must raise."""
    path = write_config(tmp_path, raw)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return caught.value, path


# --- shipped configs ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [DEFAULT_YAML, DEMO_YAML], ids=["default", "demo"])
def test_shipped_config_expands_to_the_declared_matrix(path: Path) -> None:
    settings = load_settings(path, environ={})
    raw = yaml.safe_load(path.read_text())
    declared = [
        expected_name(spec["pipeline"], mode, minutes)
        for spec in raw["scenarios"] for mode in spec["modes"] for minutes in spec["durations"]
    ]
    scenarios = settings.expand_scenarios()
    assert [s.name for s in scenarios] == declared
    assert len(set(declared)) == len(declared)
    for scenario in scenarios:
        assert scenario.input_kind == INPUT_KINDS[scenario.mode]
        assert scenario.pipeline_ids == raw["pipelines"][scenario.pipeline]["pipeline_ids"]
        assert (scenario.parameters["width"], scenario.parameters["height"]) == (scenario.width, scenario.height)


def test_default_matrix_is_the_mission_matrix() -> None:
    names = {s.name for s in load_settings(DEFAULT_YAML, environ={}).expand_scenarios()}
    wanted = {expected_name("longlive", m, d) for m in ("t2v", "v2v", "i2v") for d in (1, 5, 15)}
    wanted |= {expected_name("ltx2", m, d) for m in ("t2v", "i2v") for d in (1, 5)}
    wanted |= {expected_name("longlive+rife", "v2v", d) for d in (5, 15)}
    wanted |= {expected_name("video-depth-anything+longlive+rife", "v2v", 5)}
    assert names == wanted
    assert {"longlive_t2v_5m", "longlive_rife_v2v_15m", "video_depth_anything_longlive_rife_v2v_5m"} <= names


def test_default_thresholds_follow_quality_md() -> None:
    t = load_settings(DEFAULT_YAML, environ={}).thresholds
    assert (t.connect_timeout_s, t.load_timeout_s, t.first_frame_timeout_s) == (120, 300, 60)
    assert (t.sample_interval_s, t.first_frame_poll_s, t.prompt_switch_interval_s) == (0.5, 0.1, 30)
    assert (t.freeze_s, t.stall_timeout_s, t.min_fps, t.black_s) == (2, 10, 6, 2)
    assert (t.prompt_margin, t.prompt_response_s, t.vram_leak_tolerance_mb, t.max_vram_percent) == (2.0, 10, 200, 90)
    assert (t.black_luma_max, t.black_fraction_min, t.frozen_diff_max) == (25, 0.98, 0.001)
    assert (t.fps_warmup_s, t.cold_start_threshold_s, t.cleanup_timeout_s) == (5, 60, 30)
    assert t == Settings().thresholds  # the YAML repeats the code's defaults, it does not diverge


def test_chain_scenarios_carry_their_graph_and_sink() -> None:
    settings = load_settings(DEFAULT_YAML, environ={})
    for scenario in settings.expand_scenarios():
        pipeline = settings.pipelines[scenario.pipeline]
        if pipeline.graph_template is None:
            assert scenario.graph is None and scenario.sink_node_id is None
            continue
        template = json.loads((GRAPHS_DIR / pipeline.graph_template).read_text())
        assert scenario.graph == template
        sinks = [n["id"] for n in template["nodes"] if n["type"] == "sink"]
        assert scenario.sink_node_id == sinks[0]


def test_hard_cap_covers_every_phase_limit_and_the_stream() -> None:
    settings = load_settings(DEFAULT_YAML, environ={})
    t = settings.thresholds
    limits_s = t.connect_timeout_s + t.load_timeout_s + t.first_frame_timeout_s + t.cleanup_timeout_s
    for scenario in settings.expand_scenarios():
        assert scenario.hard_cap_s > limits_s + scenario.duration_s


def test_prompts_are_the_pools_in_order() -> None:
    settings = load_settings(DEFAULT_YAML, environ={})
    raw = yaml.safe_load(DEFAULT_YAML.read_text())
    first = settings.expand_scenarios()[0]
    pools = raw["scenarios"][0].get("prompts_pools") or [raw["scenarios"][0]["prompts_pool"]]
    assert first.prompt_pool == ",".join(pools)
    assert list(first.prompts) == [p for pool in pools for p in settings.prompt_pools[pool]]


def test_fractional_minutes_are_named_in_seconds(tmp_path: Path) -> None:
    raw = raw_config()
    raw["scenarios"] = [{"pipeline": "longlive", "modes": ["t2v"], "durations": [0.25, 1.5, 0.1, 2],
                         "prompts_pool": "nature"}]
    settings = load_settings(write_config(tmp_path, raw), environ={})
    scenarios = settings.expand_scenarios()
    assert [s.name for s in scenarios] == [expected_name("longlive", "t2v", m) for m in (0.25, 1.5, 0.1, 2)]
    assert [s.duration_s for s in scenarios] == [15.0, 90.0, 6.0, 120.0]
    assert [s.duration_class for s in scenarios] == ["15s", "90s", "6s", "2m"]


def test_with_duration_renames_and_moves_the_hard_cap() -> None:
    scenario = load_settings(DEFAULT_YAML, environ={}).scenario("longlive_t2v_5m")
    shorter = scenario.with_duration(30)
    assert shorter.name == expected_name("longlive", "t2v", 0.5)
    assert shorter.duration_s == 30
    assert shorter.hard_cap_s == pytest.approx(scenario.hard_cap_s - scenario.duration_s + 30)
    assert scenario.duration_s == 300  # the original is untouched
    with pytest.raises(ConfigError):
        scenario.with_duration(0)


def test_unknown_scenario_lists_close_names() -> None:
    settings = load_settings(DEFAULT_YAML, environ={})
    with pytest.raises(ConfigError) as caught:
        settings.scenario("longlive_t2v_6m")
    assert caught.value.file == str(DEFAULT_YAML)
    assert "longlive_t2v_5m" in caught.value.problem


def test_config_path_from_the_environment() -> None:
    settings = load_settings(environ={CONFIG_ENV_VAR: str(DEMO_YAML)})
    assert settings.source_file == str(DEMO_YAML)
    assert load_settings(environ={}).source_file == str(DEFAULT_YAML)


def test_api_key_comes_from_the_environment_and_never_shows() -> None:
    secret = "sk-test-4f1c2e9a-not-a-real-key"
    settings = load_settings(DEFAULT_YAML, environ={"SCOPE_CLOUD_API_KEY": secret})
    assert settings.cloud.api_key is not None
    assert settings.cloud.api_key.get_secret_value() == secret
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.cloud)):
        assert secret not in text
    assert load_settings(DEFAULT_YAML, environ={}).cloud.api_key is None


def test_settings_are_frozen() -> None:
    settings = load_settings(DEFAULT_YAML, environ={})
    with pytest.raises(ValueError):
        settings.thresholds.min_fps = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "end", "open_at", "closed_at"),
    [("00:00", "24:00", "23:59", None), ("08:00", "18:00", "12:00", "18:00"), ("22:00", "02:00", "01:30", "12:00")],
)
def test_schedule_window(start: str, end: str, open_at: str, closed_at: str | None) -> None:
    budget = Budget(schedule_start=start, schedule_end=end)
    assert budget.is_open(datetime.time.fromisoformat(open_at))
    if closed_at is not None:
        assert not budget.is_open(datetime.time.fromisoformat(closed_at))


# --- adding a pipeline is a config change only ----------------------------------------------

def test_a_new_pipeline_and_chain_need_only_config(tmp_path: Path) -> None:
    graphs = tmp_path / "graphs"
    shutil.copytree(GRAPHS_DIR, graphs)
    chain = {"nodes": [{"id": "in", "type": "source", "source_mode": "video_file", "source_name": INPUT_PLACEHOLDER},
                       {"id": "a", "type": "pipeline", "pipeline_id": "passthrough"},
                       {"id": "b", "type": "pipeline", "pipeline_id": "gray"},
                       {"id": "out", "type": "sink"}],
             "edges": [{"from": "in", "from_port": "video", "to_node": "a", "to_port": "video"},
                       {"from": "a", "from_port": "video", "to_node": "b", "to_port": "video"},
                       {"from": "b", "from_port": "video", "to_node": "out", "to_port": "video"}]}
    (graphs / "passthrough_gray.json").write_text(json.dumps(chain))
    raw = raw_config()
    raw["graphs_dir"] = str(graphs)
    raw["pipelines"]["krea-realtime"] = {"pipeline_ids": ["krea-realtime"], "modes": ["t2v"], "width": 640,
                                         "height": 384, "expected_fps": 8, "parameters": {"steps": 4}}
    raw["pipelines"]["passthrough+gray"] = {"pipeline_ids": ["passthrough", "gray"], "modes": ["v2v"],
                                            "expected_fps": 15, "graph_template": "passthrough_gray.json"}
    raw["scenarios"] += [{"pipeline": "krea-realtime", "modes": ["t2v"], "durations": [2], "prompts_pool": "space"},
                         {"pipeline": "passthrough+gray", "modes": ["v2v"], "durations": [0.5]}]
    settings = load_settings(write_config(tmp_path, raw), environ={})
    krea = settings.scenario(expected_name("krea-realtime", "t2v", 2))
    assert (krea.width, krea.height, krea.expected_fps) == (640, 384, 8)
    assert krea.parameters == {"width": 640, "height": 384, "steps": 4}
    chained = settings.scenario(expected_name("passthrough+gray", "v2v", 0.5))
    assert chained.pipeline_ids == ["passthrough", "gray"]
    assert chained.graph == chain and chained.sink_node_id == "out"
    assert chained.prompts == () and chained.input_kind == "video"


# --- bad config -----------------------------------------------------------------------------

def mutate(change) -> dict[str, Any]:
    """A copy of the shipped default with one change applied."""
    raw = raw_config()
    change(raw)
    return raw


def _set(*path_and_value):
    """A change setting raw[path...] = value."""
    *path, value = path_and_value

    def change(raw: dict[str, Any]) -> None:
        target = raw
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return change


BAD_CONFIGS = [
    # (id, change, expected key, a word the problem must contain)
    ("unknown top-level key", _set("scenarioz", []), "scenarioz", "scenarios"),
    ("unknown nested key", _set("scenarios", 1, "duration", [5]), "scenarios[1].duration", "durations"),
    ("unknown threshold", _set("thresholds", "min_fsp", 3), "thresholds.min_fsp", "min_fps"),
    ("wrong type", _set("thresholds", "min_fps", "fast"), "thresholds.min_fps", "fast"),
    ("string for a number", _set("thresholds", "load_timeout_s", "300"), "thresholds.load_timeout_s", "300"),
    ("not a list", _set("scenarios", 0, "durations", 5), "scenarios[0].durations", "list"),
    ("unknown mode", _set("scenarios", 2, "modes", ["x2v"]), "scenarios[2].modes[0]", "x2v"),
    ("unsupported mode", _set("scenarios", 1, "modes", ["t2v", "v2v"]), "scenarios[1].modes[1]", "does not support"),
    ("unknown pool", _set("scenarios", 2, "prompts_pool", "art_style"), "scenarios[2].prompts_pool", "art_styles"),
    ("unknown pool in list", _set("scenarios", 0, "prompts_pools", ["nature", "nope"]),
     "scenarios[0].prompts_pools[1]", "nope"),
    ("both pool keys", _set("scenarios", 2, "prompts_pools", ["nature"]), "scenarios[2]", "not both"),
    ("unknown graph", _set("pipelines", "longlive+rife", "graph_template", "nope.json"),
     "pipelines.longlive+rife.graph_template", "nope.json"),
    ("unknown graph in scenario", _set("scenarios", 3, "graph_template", "depth_longlive_rife"),
     "scenarios[3].graph_template", "depth_longlive_rife.json"),
    ("graph of another chain", _set("pipelines", "longlive+rife", "graph_template", "depth_longlive_rife.json"),
     "pipelines.longlive+rife.graph_template", "video-depth-anything"),
    ("chain without graph", _set("pipelines", "longlive+rife", "graph_template", None),
     "pipelines.longlive+rife.graph_template", "chain"),
    ("zero duration", _set("scenarios", 0, "durations", [1, 0]), "scenarios[0].durations[1]", "greater than 0"),
    ("negative duration", _set("scenarios", 1, "durations", [-5]), "scenarios[1].durations[0]", "greater than 0"),
    ("duration over budget", _set("scenarios", 1, "durations", [45]), "scenarios[1].durations[0]", "max_run"),
    ("vram percent out of range", _set("thresholds", "max_vram_percent", 150), "thresholds.max_vram_percent", "100"),
    ("negative fps", _set("thresholds", "min_fps", -1), "thresholds.min_fps", "greater than 0"),
    ("fraction above one", _set("thresholds", "black_fraction_min", 1.5), "thresholds.black_fraction_min", "1"),
    ("margin below one", _set("thresholds", "prompt_margin", 0.5), "thresholds.prompt_margin", "1"),
    ("luma above 255", _set("thresholds", "black_luma_max", 300), "thresholds.black_luma_max", "255"),
    ("bad schedule", _set("budget", "schedule_start", "25:00"), "budget.schedule_start", "25:00"),
    ("duplicate durations", _set("scenarios", 0, "durations", [5, 5]), "scenarios[0].durations[1]", "duplicate"),
    ("unknown pipeline", _set("scenarios", 0, "pipeline", "longlife"), "scenarios[0].pipeline", "longlive"),
    ("t2v without prompts", _set("scenarios", 1, "prompts_pools", None), "scenarios[1].modes[0]", "prompts"),
    ("secret in the file", _set("cloud", "api_key", "sk-123"), "cloud.api_key", "environment"),
    ("app id without /ws", _set("cloud", "app_id", "daydream/app"), "cloud.app_id", "/ws"),
    ("managed without port slot", _set("instances", [{"name": "m", "kind": "managed", "command": "scope"}]),
     "instances[0]", "{port}"),
    ("static without url", _set("instances", [{"name": "s", "kind": "static"}]), "instances[0]", "url"),
    ("duplicate instance", _set("instances", [{"name": "a", "url": "http://127.0.0.1:1"}] * 2),
     "instances[1].name", "duplicate"),
    ("bad url", _set("discovery", "gateway_urls", ["gateway.local:8935"]), "discovery.gateway_urls[0]", "gateway"),
    ("size in pipeline parameters", _set("pipelines", "ltx2", "parameters", {"width": 640}), "pipelines.ltx2", "width"),
    ("bad scenario width", _set("scenarios", 0, "parameters", {"width": "wide"}), "scenarios[0].parameters.width",
     "wide"),
    ("duplicate inline prompt", _set("prompt_pools", {"mine": ["a", "a"]}), "prompt_pools.mine[1]", "duplicate"),
    ("inline pool shadowing a file", _set("prompt_pools", {"nature": ["a"]}), "prompt_pools.nature", "prompts_dir"),
    ("loader-only key", _set("source_file", "x"), "source_file", "unknown key"),
]


@pytest.mark.parametrize(("change", "key", "word"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_file_key_and_problem(tmp_path: Path, change, key: str, word: str) -> None:
    err, path = load_error(tmp_path, mutate(change))
    assert (err.file, err.key) == (str(path), key)
    assert word in err.problem
    line = format_config_error(err)
    assert "\n" not in line and str(path) in line and key in line and err.problem in line


def test_text_mode_on_a_graph_that_needs_a_video(tmp_path: Path) -> None:
    raw = raw_config()
    raw["pipelines"]["longlive+rife"]["modes"].append("t2v")
    raw["scenarios"].append({"pipeline": "longlive+rife", "modes": ["t2v"], "durations": [1], "prompts_pool": "nature"})
    err, _ = load_error(tmp_path, raw)
    assert err.key == f"scenarios[{len(raw['scenarios']) - 1}].modes[0]"
    assert "input video" in err.problem


def test_duplicate_scenario_across_specs(tmp_path: Path) -> None:
    raw = raw_config()
    raw["scenarios"].append(copy.deepcopy(raw["scenarios"][2]))
    err, _ = load_error(tmp_path, raw)
    assert err.key == f"scenarios[{len(raw['scenarios']) - 1}].durations[0]"
    assert "scenarios[2]" in err.problem and "duplicate" in err.problem


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing, environ={})
    assert caught.value.file == str(missing)
    assert "not found" in caught.value.problem


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    lines = DEFAULT_YAML.read_text().splitlines()
    broken_line = next(i for i, text in enumerate(lines) if text.startswith("budget:")) + 2
    lines.insert(broken_line, "  daily_percent: [20")
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.file == str(path)
    assert "YAML syntax error" in caught.value.problem
    assert f"line {broken_line + 1}" in caught.value.problem or f"line {broken_line + 2}" in caught.value.problem


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "mapping" in caught.value.problem


def _copy_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Writable copies of the shipped prompt and graph directories."""
    prompts, graphs = tmp_path / "prompts", tmp_path / "graphs"
    shutil.copytree(PROMPTS_DIR, prompts)
    shutil.copytree(GRAPHS_DIR, graphs)
    return prompts, graphs


def test_bad_prompt_file_names_the_pool_file(tmp_path: Path) -> None:
    prompts, graphs = _copy_dirs(tmp_path)
    pool = yaml.safe_load((prompts / "nature.yaml").read_text())
    pool["prompts"].append(pool["prompts"][3])
    (prompts / "nature.yaml").write_text(yaml.safe_dump(pool))
    raw = raw_config() | {"prompts_dir": str(prompts), "graphs_dir": str(graphs)}
    err, _ = load_error(tmp_path, raw)
    assert err.file == str(prompts / "nature.yaml")
    assert err.key == f"prompts[{len(pool['prompts']) - 1}]" and "prompts[3]" in err.problem


@pytest.mark.parametrize(
    ("content", "key", "word"),
    [('{"nodes": [', "(root)", "line"),
     ('{"nodes": [{"id": "a", "type": "source"}, {"id": "o", "type": "sink"}],'
      ' "edges": [{"from": "a", "from_port": "video", "to_node": "x", "to_port": "video"}]}', "edges[0].to_node", "x"),
     ('{"nodes": [{"id": "a", "type": "source"}], "edges": []}', "nodes", "sink"),
     ('{"nodes": [{"id": "a", "type": "sink"}, {"id": "a", "type": "sink"}], "edges": []}', "nodes[1].id", "duplicate"),
     ('{"nodes": [{"id": "o", "type": "sink"}], "edges": [{"from": "o", "from_port": "depth", "to_node": "o",'
      ' "to_port": "video"}]}', "edges[0].from_port", "depth")],
    ids=["json syntax", "edge to unknown node", "no sink", "duplicate id", "unknown port"],
)
def test_bad_graph_file_names_the_graph_file(tmp_path: Path, content: str, key: str, word: str) -> None:
    prompts, graphs = _copy_dirs(tmp_path)
    (graphs / "broken.json").write_text(content)
    raw = raw_config() | {"prompts_dir": str(prompts), "graphs_dir": str(graphs)}
    err, _ = load_error(tmp_path, raw)
    assert (err.file, err.key) == (str(graphs / "broken.json"), key)
    assert word in err.problem


# --- prompt pools and graph templates ---------------------------------------------------------

def test_prompt_pools_are_many_full_and_distinct() -> None:
    pools = load_settings(DEFAULT_YAML, environ={}).prompt_pools
    themed = {name: prompts for name, prompts in pools.items() if name != "stress"}
    assert len(themed) >= 8
    for name, prompts in themed.items():
        assert len(prompts) >= 15, name
        assert len(set(prompts)) == len(prompts), name
        assert all(len(p.split()) >= 5 for p in prompts), name  # real scene descriptions, not stubs
    everything = [p for prompts in themed.values() for p in prompts]
    assert len(set(everything)) == len(everything)
    assert {p.stem for p in PROMPTS_DIR.glob("*.yaml")} == set(pools)


def test_stress_pool_covers_the_edge_cases() -> None:
    stress = load_settings(DEFAULT_YAML, environ={}).prompt_pools["stress"]
    assert len(set(stress)) == len(stress)
    assert any(p.strip() == "" for p in stress), "whitespace-only"
    assert any(len(p.strip()) == 1 for p in stress), "near-empty"
    assert any(1800 <= len(p) <= 2500 for p in stress), "very long"
    assert any(ord(c) > 0xFFFF for p in stress for c in p), "emoji"
    assert any(unicodedata.bidirectional(c) in ("R", "AL") for p in stress for c in p), "right-to-left"
    assert any("CJK" in unicodedata.name(c, "") for p in stress for c in p), "CJK"
    assert any("<script>" in p for p in stress) and any("DROP TABLE" in p for p in stress), "markup / SQL"
    assert any(isinstance(_json_or_none(p), dict) for p in stress), "JSON-looking"
    assert any(ord(c) < 32 and c not in "\t\n\r" for p in stress for c in p), "control characters"
    assert json.loads(json.dumps(stress)) == stress


def _json_or_none(text: str) -> Any:
    """Parsed JSON, or None when the text is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


@pytest.mark.parametrize("path", sorted(GRAPHS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_graph_templates_are_valid_scope_graphs(path: Path) -> None:
    graph = json.loads(path.read_text())
    ids = [node["id"] for node in graph["nodes"]]
    assert len(ids) == len(set(ids))
    for edge in graph["edges"]:
        assert edge["from"] in ids and edge["to_node"] in ids
        assert {edge["from_port"], edge["to_port"]} <= {"video", "vace_input_frames", "vace_input_masks", "audio"}
    assert any(node["type"] == "sink" for node in graph["nodes"])
    sources = [n for n in graph["nodes"] if n["type"] == "source"]
    assert [s["source_name"] for s in sources] == [INPUT_PLACEHOLDER]
    assert all(s["source_mode"] == "video_file" for s in sources)


def test_depth_chain_feeds_depth_into_vace_and_source_into_longlive() -> None:
    graph = json.loads((GRAPHS_DIR / "depth_longlive_rife.json").read_text())
    by_id = {n["id"]: n for n in graph["nodes"]}
    into_longlive = {(by_id[e["from"]].get("pipeline_id", by_id[e["from"]]["type"]), e["to_port"])
                     for e in graph["edges"] if by_id[e["to_node"]].get("pipeline_id") == "longlive"}
    assert into_longlive == {("video-depth-anything", "vace_input_frames"), ("source", "video")}


def test_an_unknown_top_level_key_lists_the_keys_a_file_may_hold(tmp_path: Path) -> None:
    raw = raw_config()
    raw["qqq"] = 1
    error, _ = load_error(tmp_path, raw)
    assert error.key == "qqq"
    known = error.problem.split("known: ", 1)[1]
    assert "prompts_dir" in known and "graphs_dir" in known and "thresholds" in known
    assert "graph_templates" not in known and "source_file" not in known
