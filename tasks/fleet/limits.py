"""Prefect global concurrency limits: one run per orchestrator and one per Scope instance at a time.

Runs take their slots with `strict=True`, so a limit that is missing fails loudly instead of
letting runs through unlimited. The limits are created here (limit 1, idempotent) by
`loadtest setup` and before each launch, for orchestrators discovered since.
"""

from __future__ import annotations

import re

from prefect.client.orchestration import get_client

ORCHESTRATOR_PREFIX = "orch-"
INSTANCE_PREFIX = "instance-"


def _safe(name: str) -> str:
    # Limit names are URL path segments in Prefect's API: keep to a plain alphabet.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.lower())


def limit_names(orchestrator: str, instance: str) -> list[str]:
    """The two limits a run on (orchestrator, instance) holds."""
    return [ORCHESTRATOR_PREFIX + _safe(orchestrator), INSTANCE_PREFIX + _safe(instance)]


async def ensure_limits(names: list[str]) -> None:
    """Create each named global concurrency limit with one slot when it does not exist yet."""
    async with get_client() as client:
        for name in names:
            await client.upsert_global_concurrency_limit_by_name(name, 1)
