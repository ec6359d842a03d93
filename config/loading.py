"""Reading config files and turning every problem into a one-line ``ConfigError``.

Covers the YAML document, the prompt pool files (``prompts/<pool>.yaml``), the graph
templates (``graphs/<name>.json``) and pydantic's validation errors, whose locations
become dotted key paths such as ``scenarios[2].modes[0]``.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from errors import ConfigError

ROOT_KEY = "(root)"
NODE_TYPES = frozenset({"source", "pipeline", "sink", "record", "node"})
PORTS = frozenset({"video", "vace_input_frames", "vace_input_masks", "audio"})
POOL_FILE_KEYS = frozenset({"description", "prompts"})


def key_path(loc: Sequence[str | int]) -> str:
    """``('scenarios', 2, 'modes', 0)`` -> ``scenarios[2].modes[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or ROOT_KEY


def close_matches(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with difflib's close matches, or the known choices."""
    choices = sorted(choices)
    found = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if found:
        return " (did you mean " + ", ".join(repr(f) for f in found) + "?)"
    return " (known: " + (", ".join(choices) or "none") + ")"


def read_yaml(path: Path) -> Any:
    """The parsed YAML document; missing file or syntax error -> ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ROOT_KEY, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), ROOT_KEY, f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), ROOT_KEY, _yaml_problem(exc)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line naming the line and column of a YAML syntax error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"YAML syntax error{where}: {problem}"


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level must be a mapping (an empty file is an empty mapping)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ROOT_KEY, f"expected a mapping, got {type(data).__name__}")
    return data


def load_prompt_pools(directory: Path) -> dict[str, list[str]]:
    """Every ``<pool>.yaml`` of a directory as pool name -> prompts (validated)."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "prompts_dir", "directory not found")
    return {path.stem: _read_pool(path) for path in sorted(directory.glob("*.yaml"))}


def _read_pool(path: Path) -> list[str]:
    """One pool file: ``{description, prompts: [non-empty, distinct strings]}``."""
    data = read_mapping(path)
    for key in data:
        if key not in POOL_FILE_KEYS:
            raise ConfigError(str(path), str(key), "unknown key" + close_matches(str(key), POOL_FILE_KEYS))
    return validate_prompts(data.get("prompts"), file=str(path), key="prompts")


def validate_prompts(prompts: Any, *, file: str, key: str) -> list[str]:
    """A pool must be a non-empty list of distinct, non-empty strings."""
    if not isinstance(prompts, list) or not prompts:
        raise ConfigError(file, key, "expected a non-empty list of prompt strings")
    seen: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or prompt == "":
            raise ConfigError(file, f"{key}[{index}]", f"expected a non-empty string, got {prompt!r}")
        if prompt in seen:
            raise ConfigError(file, f"{key}[{index}]", f"duplicate of {key}[{seen[prompt]}]")
        seen[prompt] = index
    return list(prompts)


def load_graph_templates(directory: Path) -> dict[str, dict[str, Any]]:
    """Every ``<name>.json`` graph of a directory as file name -> graph (validated)."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "graphs_dir", "directory not found")
    return {path.name: _read_graph(path) for path in sorted(directory.glob("*.json"))}


def _read_graph(path: Path) -> dict[str, Any]:
    """One graph template file, parsed and structurally checked."""
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), ROOT_KEY, f"JSON syntax error at line {exc.lineno}: {exc.msg}") from None
    problems = graph_problems(graph)
    if problems:
        key, problem = problems[0]
        raise ConfigError(str(path), key, problem)
    return graph


def graph_problems(graph: Any) -> list[tuple[str, str]]:
    """(key, problem) pairs that make a graph invalid for Scope; empty when it is valid."""
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        return [(ROOT_KEY, "expected {'nodes': [...], 'edges': [...]}")]
    problems, ids = _node_problems(graph["nodes"])
    edges = graph.get("edges", [])
    if not isinstance(edges, list):
        return problems + [("edges", "expected a list")]
    for index, edge in enumerate(edges):
        problems += [(f"edges[{index}].{k}", p) for k, p in _edge_problems(edge, ids)]
    return problems


def _node_problems(nodes: list[Any]) -> tuple[list[tuple[str, str]], set[str]]:
    """Node checks: ids unique, types known, pipelines named, at least one sink."""
    problems: list[tuple[str, str]] = []
    ids: set[str] = set()
    for index, node in enumerate(nodes):
        where = f"nodes[{index}]"
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            problems.append((where, "expected an object with a string 'id'"))
            continue
        if node["id"] in ids:
            problems.append((f"{where}.id", f"duplicate node id {node['id']!r}"))
        ids.add(node["id"])
        if node.get("type") not in NODE_TYPES:
            problems.append((f"{where}.type", f"unknown node type {node.get('type')!r}"))
        if node.get("type") == "pipeline" and not isinstance(node.get("pipeline_id"), str):
            problems.append((f"{where}.pipeline_id", "a pipeline node needs a pipeline_id"))
    if not any(isinstance(n, dict) and n.get("type") == "sink" for n in nodes):
        problems.append(("nodes", "a graph needs at least one sink node"))
    return problems, ids


def _edge_problems(edge: Any, ids: set[str]) -> list[tuple[str, str]]:
    """Edge checks: both ends name existing nodes, ports are Scope's."""
    if not isinstance(edge, dict):
        return [("", "expected an object")]
    problems = [(k, f"unknown node {edge.get(k)!r}") for k in ("from", "to_node") if edge.get(k) not in ids]
    problems += [(k, f"unknown port {edge.get(k)!r}") for k in ("from_port", "to_port") if edge.get(k) not in PORTS]
    return problems


def translate_validation_error(
    exc: ValidationError, *, file: str, model: type[BaseModel], top_level_keys: Sequence[str] | None = None
) -> ConfigError:
    """The first pydantic error as a ConfigError with a dotted key and a one-line problem.

    `top_level_keys` are the keys a file may hold at its top, when they differ from the model's fields."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = list(top_level_keys) if top_level_keys is not None and len(loc) == 1 else allowed_keys(model, loc[:-1])
        problem = "unknown key" + close_matches(str(loc[-1]), allowed)
    elif error["type"] == "missing":
        problem = "required key is missing"
    elif error["type"] == "literal_error":
        expected = error["msg"].removeprefix("Input should be ")
        noun = next((str(part) for part in reversed(loc) if isinstance(part, str)), "value").removesuffix("s")
        problem = f"unknown {noun} {_short(error.get('input'))} (expected {expected})"
    else:
        problem = error["msg"].removeprefix("Value error, ")
        if not isinstance(error.get("input"), (dict, list)):  # a whole section would drown the message
            problem += f" (got {_short(error.get('input'))})"
    return ConfigError(file, key_path(loc), problem)


def _short(value: Any, limit: int = 60) -> str:
    """A repr cut to one short line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found at ``loc`` inside ``model`` (empty when none)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field else None
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation
