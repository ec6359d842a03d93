"""A simulated fleet: orchestrators (with discovery data), Scope instances pinned to them,
the fleet file that tells a later `serve` which profile its orchestrator has, and pinning.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

ORCH_URL_ENV = "LIVEPEER_ORCH_URL"
FLEET_FILE_ENV = "SCOPE_SIM_FLEET_FILE"
ORCH_PORT = 8935
REGIONS = ("us-east", "us-west", "eu-central", "eu-west", "ap-southeast", "sa-east")
GPUS = (  # (name, memory in MB, compute capability)
    ("NVIDIA GeForce RTX 4090", 24564, (8, 9)),
    ("NVIDIA GeForce RTX 5090", 32607, (12, 0)),
    ("NVIDIA L40S", 46068, (8, 9)),
    ("NVIDIA H100 80GB HBM3", 81559, (9, 0)),
)


@dataclass(frozen=True)
class Orchestrator:
    """One simulated orchestrator as discovery sources describe it."""

    index: int
    address: str
    orch_uri: str
    region: str
    profile: str
    capacity: int  # free slots for the scope model
    capacity_in_use: int
    offers_scope: bool
    gpu_name: str
    vram_total_mb: int
    compute_capability: tuple[int, int]

    def summary(self) -> dict:
        """The fields the test API and the fleet file expose."""
        keys = ("address", "orch_uri", "region", "profile", "capacity", "capacity_in_use", "offers_scope")
        return {key: getattr(self, key) for key in keys}

    def gpu_overrides(self) -> dict:
        """Profile overrides that make a pinned instance report this orchestrator's GPU."""
        return {"gpu_name": self.gpu_name, "vram_total_mb": float(self.vram_total_mb)}


def derive_address(text: str) -> str:
    """A deterministic Ethereum-style address (0x + 40 hex) for `text`."""
    return "0x" + hashlib.sha256(text.encode()).hexdigest()[:40]


def orch_uri(index: int) -> str:
    """The label URI of orchestrator `index` (never contacted)."""
    return f"https://orch-{index}.sim.invalid:{ORCH_PORT}"


def plan_orchestrators(count: int, profiles: Sequence[str], seed: int, *, pinned: int) -> list[Orchestrator]:
    """`count` orchestrators with profiles round-robin; the first `pinned` serve instances.

    Pinned orchestrators offer scope (busy only under `no_capacity`); the others rotate through
    "no scope", "busy" and "free", so discovery always shows every kind when there are spares.
    """
    rng = random.Random(f"{seed}:fleet")
    return [_orchestrator(index, profiles[index % len(profiles)], seed, rng, pinned) for index in range(count)]


def _orchestrator(index: int, profile: str, seed: int, rng: random.Random, pinned: int) -> Orchestrator:
    spare_kind = (index - pinned) % 3 if index >= pinned else None
    offers_scope = spare_kind != 0
    busy = profile == "no_capacity" or spare_kind == 1
    slots = rng.choice((1, 2, 4))
    in_use = slots if busy else rng.randrange(slots)
    gpu_name, vram_mb, capability = rng.choice(GPUS)
    return Orchestrator(
        index, derive_address(f"{seed}:orchestrator:{index}"), orch_uri(index), REGIONS[index % len(REGIONS)],
        profile, slots - in_use if offers_scope else 0, in_use if offers_scope else 0, offers_scope,
        gpu_name, vram_mb, capability,
    )


def normalize_uri(uri: str) -> str:
    """Compare orchestrator URIs loosely: scheme defaults to https, host lower-case, no trailing slash."""
    text = uri.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def write_fleet_file(path: Path, *, seed: int, discovery_url: str, orchestrators: Sequence[Orchestrator],
                     instances: Sequence[Mapping]) -> None:
    """Write the fleet description atomically (tmp file + rename)."""
    payload = {
        "seed": seed,
        "discovery_url": discovery_url,
        "orchestrators": {o.orch_uri: {**o.summary(), **o.gpu_overrides()} for o in orchestrators},
        "instances": list(instances),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


@dataclass(frozen=True)
class Pinning:
    """Which orchestrator an instance serves, under which profile, with which GPU."""

    orchestrator_url: str | None
    orchestrator_address: str | None
    profile: str | None
    overrides: dict

    def as_dict(self) -> dict:
        """Plain values."""
        return asdict(self)


def resolve_pinning(orchestrator_url: str | None, fleet_file: str | None) -> Pinning:
    """Look the orchestrator up in the fleet file; without one, derive its address from its URL."""
    if not orchestrator_url:
        return Pinning(None, None, None, {})
    entry = _fleet_entry(orchestrator_url, fleet_file) if fleet_file else None
    if entry is None:
        return Pinning(orchestrator_url, derive_address(normalize_uri(orchestrator_url)), None, {})
    overrides = {key: entry[key] for key in ("gpu_name", "vram_total_mb") if key in entry}
    return Pinning(orchestrator_url, entry.get("address"), entry.get("profile"), overrides)


def _fleet_entry(orchestrator_url: str, fleet_file: str) -> dict | None:
    data = json.loads(Path(fleet_file).read_text())
    wanted = normalize_uri(orchestrator_url)
    for uri, entry in data.get("orchestrators", {}).items():
        if normalize_uri(uri) == wanted:
            return entry
    return None
