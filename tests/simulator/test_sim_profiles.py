"""Profiles: frozen models, overrides, latency draws (no HTTP)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pydantic
import pytest

import simulator

from simulator.profiles import (
    DEFAULT_FAULT_AFTER_S,
    PROFILES,
    DelayedFaultProfile,
    ProfileError,
    build_profile,
    draw_latency,
    own_fields,
)


def test_profiles_are_frozen() -> None:
    profile = build_profile("stall")
    with pytest.raises(pydantic.ValidationError):
        profile.fault_after_s = 1.0  # type: ignore[misc]


def test_delayed_faults_default_to_three_seconds() -> None:
    delayed = [name for name, cls in PROFILES.items() if issubclass(cls, DelayedFaultProfile)]
    assert set(delayed) == {"crash", "stall", "frozen", "black", "corrupt", "hang_http", "conn_reset"}
    assert all(build_profile(name).fault_after_s == DEFAULT_FAULT_AFTER_S for name in delayed)


def test_overrides_apply_and_unknown_fields_are_refused() -> None:
    profile = build_profile("vram_leak", {"leak_mb_per_s": 10, "load_s": [1.0, 0.1]})
    assert profile.leak_mb_per_s == 10 and profile.load_s == (1.0, 0.1)
    assert build_profile("healthy", {"load_s": 0.2}).load_s == (0.2, 0.0)  # a number is a fixed latency
    with pytest.raises(ProfileError, match="fault_after_s"):
        build_profile("healthy", {"fault_after_s": 1})
    with pytest.raises(ProfileError, match="unknown profile"):
        build_profile("flaky")


def test_interface_defaults() -> None:
    assert build_profile("slow").fps_out == 8.0 and build_profile("low_fps").fps_out == 3.0
    assert build_profile("cold_start").cold_start_probability == 1.0
    assert build_profile("wrong_size").wrong_size == (384, 384)
    assert build_profile("slow_http").http_delay_s == 0.25
    assert build_profile("vram_leak").leak_mb_per_s == 60.0
    assert build_profile("no_capacity").load_busy_detail == "Cloud request failed: 503 OrchestratorBusy"
    assert own_fields("healthy") == {}


def test_latency_draws_are_clamped_and_seeded() -> None:
    draws = [draw_latency(random.Random(seed), (2.0, 2.0)) for seed in range(300)]
    assert min(draws) >= 1.0 and max(draws) <= 6.0
    assert min(draws) == 1.0 and max(draws) == 6.0  # a wide sigma hits both clamps
    assert draw_latency(random.Random(5), (2.0, 0.3)) == draw_latency(random.Random(5), (2.0, 0.3))
    assert draw_latency(random.Random(5), (0.4, 0.0)) == 0.4


def test_simulator_imports_nothing_from_the_harness() -> None:
    harness = {"flows", "tasks", "analytics", "config", "deployments"}
    package = Path(simulator.__file__).parent
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {name.split(".")[0] for name in names} & harness, f"{source} imports {names}"
