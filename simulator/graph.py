"""Headless graph mode: validate a graph (400 on a bad one) and read what the simulator needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NODE_TYPES = frozenset({"source", "pipeline", "sink", "record", "node"})
PORTS = frozenset({"video", "vace_input_frames", "vace_input_masks", "audio"})


class GraphError(ValueError):
    """A graph Scope refuses with 400."""


@dataclass(frozen=True)
class GraphPlan:
    """The parts of a valid graph that shape the output."""

    pipeline_ids: tuple[str, ...]  # in edge order from the source when possible
    sink_ids: tuple[str, ...]
    source_path: str | None  # a `video_file` source's path


def parse_graph(graph: Mapping[str, Any]) -> GraphPlan:
    """Validate `graph` (unique ids, a sink, known types and ports, edges between nodes)."""
    nodes = _nodes(graph)
    ids = [node["id"] for node in nodes]
    if len(set(ids)) != len(ids):
        raise GraphError(f"Graph node ids must be unique: {sorted({i for i in ids if ids.count(i) > 1})}")
    by_id = {node["id"]: node for node in nodes}
    edges = _edges(graph, by_id)
    sinks = tuple(node["id"] for node in nodes if node["type"] == "sink")
    if not sinks:
        raise GraphError("Graph must contain at least one sink node")
    return GraphPlan(_pipelines_in_order(nodes, edges), sinks, _source_path(nodes))


def _nodes(graph: Mapping[str, Any]) -> list[dict]:
    nodes = graph.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise GraphError("Graph must have a non-empty 'nodes' list")
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise GraphError(f"Graph node without a string id: {node!r}")
        if node.get("type") not in NODE_TYPES:
            raise GraphError(f"Node '{node['id']}' has unknown type {node.get('type')!r}")
        if node["type"] == "pipeline" and not isinstance(node.get("pipeline_id"), str):
            raise GraphError(f"Pipeline node '{node['id']}' needs a pipeline_id")
    return nodes


def _edges(graph: Mapping[str, Any], by_id: Mapping[str, dict]) -> list[dict]:
    edges = graph.get("edges", [])
    if not isinstance(edges, list):
        raise GraphError("Graph 'edges' must be a list")
    for edge in edges:
        if not isinstance(edge, dict):
            raise GraphError(f"Bad edge {edge!r}")
        for end in ("from", "to_node"):
            if edge.get(end) not in by_id:
                raise GraphError(f"Edge refers to unknown node {edge.get(end)!r}")
        for port in ("from_port", "to_port"):
            if edge.get(port, "video") not in PORTS:
                raise GraphError(f"Edge uses unknown port {edge.get(port)!r}")
    return edges


def _pipelines_in_order(nodes: list[dict], edges: list[dict]) -> tuple[str, ...]:
    # Order pipeline nodes by their distance from a source so a chain reads first-to-last.
    depth = {node["id"]: 0 for node in nodes}
    for _ in range(len(nodes)):
        for edge in edges:
            depth[edge["to_node"]] = max(depth[edge["to_node"]], depth[edge["from"]] + 1)
    pipeline_nodes = [node for node in nodes if node["type"] == "pipeline"]
    pipeline_nodes.sort(key=lambda node: depth[node["id"]])
    return tuple(node["pipeline_id"] for node in pipeline_nodes)


def _source_path(nodes: list[dict]) -> str | None:
    for node in nodes:
        if node["type"] == "source" and node.get("source_mode") == "video_file" and node.get("source_name"):
            return str(node["source_name"])
    return None
