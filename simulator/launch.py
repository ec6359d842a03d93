"""Build the servers of one instance or of a whole fleet (shared by the CLI and the test API)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.app import create_app
from simulator.discovery import create_discovery_app
from simulator.fleet import Orchestrator, plan_orchestrators
from simulator.instance import ScopeInstance
from simulator.profiles import PROFILES, ProfileError, build_profile
from simulator.server import Binding, bind_socket


@dataclass
class Launch:
    """Bound servers plus what they stand for; `cleanup` removes the temporary assets folders."""

    instances: list[tuple[Binding, Orchestrator | None]] = field(default_factory=list)
    discovery: Binding | None = None
    orchestrators: list[Orchestrator] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)

    @property
    def bindings(self) -> list[Binding]:
        """Every server to run, discovery first."""
        return ([self.discovery] if self.discovery else []) + [binding for binding, _ in self.instances]

    def cleanup(self) -> None:
        """Close sockets and delete the temporary assets folders."""
        for binding in self.bindings:
            binding.sock.close()
        for folder in self.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def instance_binding(
    launch: Launch, profile_name: str, overrides: dict, *, host: str, port: int, seed: int,
    orchestrator_url: str | None, orchestrator_address: str | None, assets_dir: Path | None = None,
) -> Binding:
    """Bind one simulated Scope server (ProfileError on a bad profile, OSError on a taken port)."""
    profile = build_profile(profile_name, overrides)
    if assets_dir is None:
        assets_dir = Path(tempfile.mkdtemp(prefix="scope-sim-assets-"))
        launch.temp_dirs.append(assets_dir)
    instance = ScopeInstance(
        profile, orchestrator_url=orchestrator_url, orchestrator_address=orchestrator_address,
        seed=seed, assets_dir=assets_dir,
    )
    return Binding(create_app(instance), bind_socket(host, port), instance)


def launch_fleet(
    *, instances: int, orchestrators: int, profiles: Sequence[str], seed: int, host: str, base_port: int,
    overrides: dict | None = None,
) -> Launch:
    """Discovery on base_port, instance i on base_port+1+i pinned to orchestrator i % M (port 0: any free)."""
    _check_overrides(profiles, overrides or {})
    launch = Launch(orchestrators=plan_orchestrators(orchestrators, profiles, seed, pinned=min(instances, orchestrators)))
    try:
        launch.discovery = Binding(create_discovery_app(launch.orchestrators), bind_socket(host, base_port))
        for index in range(instances):
            orchestrator = launch.orchestrators[index % orchestrators]
            binding = instance_binding(
                launch, orchestrator.profile,
                {**orchestrator.gpu_overrides(), **_applicable(orchestrator.profile, overrides or {})},
                host=host, port=base_port + 1 + index if base_port else 0, seed=seed,
                orchestrator_url=orchestrator.orch_uri, orchestrator_address=orchestrator.address,
            )
            launch.instances.append((binding, orchestrator))
    except BaseException:
        launch.cleanup()
        raise
    return launch


def _applicable(profile_name: str, overrides: dict) -> dict:
    # A fleet-wide override applies to the profiles that have the field (fault_after_s, ...).
    fields = PROFILES[profile_name].model_fields
    return {key: value for key, value in overrides.items() if key in fields}


def _check_overrides(profiles: Sequence[str], overrides: dict) -> None:
    unknown_profiles = [name for name in profiles if name not in PROFILES]
    if unknown_profiles:
        raise ProfileError(f"unknown profile(s) {unknown_profiles}; known: {', '.join(PROFILES)}")
    for key in overrides:
        if not any(key in PROFILES[name].model_fields for name in profiles):
            raise ProfileError(f"no profile among {list(profiles)} has a field {key!r}")


def instance_rows(launch: Launch) -> list[dict]:
    """One row per instance: url, orchestrator and profile (the fleet file's `instances`)."""
    return [
        {
            "url": binding.url,
            "orchestrator_url": orchestrator.orch_uri if orchestrator else None,
            "orchestrator_address": orchestrator.address if orchestrator else None,
            "profile": binding.instance.profile.name if binding.instance else None,
        }
        for binding, orchestrator in launch.instances
    ]
