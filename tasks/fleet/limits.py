"""Prefect global concurrency limits: one run per orchestrator and one per Scope instance at a time.

Runs take their slots with `strict=True`, so a limit that is missing fails loudly instead of
letting runs through unlimited. The limits are created here (limit 1, idempotent) by
`loadtest setup` and before each launch, for orchestrators discovered since.

What happens to the slots of a holder that dies (Prefect 3.8, read in its source):
- `concurrency(...)` takes the slots with a lease (`lease_duration`, default 300 s; the server
  accepts 60 s to 1 day, `server/api/concurrency_limits_v2.py` `increment-with-lease`) and a
  daemon thread renews it every 0.75 x the lease while the block runs
  (`concurrency/_leases.py` `_lease_renewal_loop`); leaving the block releases it at once.
- A process killed inside the block renews nothing more, so its lease expires at most one lease
  after it died. The server's repossessor (`server/services/repossessor.py`
  `monitor_expired_leases`, every `PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS`, 15 s)
  then revokes it and gives the slots back (`bulk_decrement_active_slots`).
- So a worker killed mid-run frees its orchestrator within `dispatch.slot_lease_s` + 15 s.
  Leases live in the server's memory by default (`server/concurrency/lease_storage/memory.py`):
  a server restart forgets them, and slots held across it stay taken until the limit's
  active slots are reset (PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE set to
  `prefect.server.concurrency.lease_storage.filesystem` keeps leases across restarts).
- A holder that cannot renew (server unreachable after 3 tries) is cancelled, since `strict`
  makes `raise_on_lease_renewal_failure` true: no run goes on without its slots.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency

from errors import Category, HarnessError, Phase

ORCHESTRATOR_PREFIX = "orch-"
INSTANCE_PREFIX = "instance-"


class SlotsBusy(HarnessError):
    """The orchestrator's or instance's slot was not free within the wait: another holder still has it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, category=Category.HARNESS, phase=Phase.PREPARE)


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


@contextlib.asynccontextmanager
async def holding_slots(names: list[str], *, lease_s: float, wait_s: float | None) -> AsyncIterator[None]:
    """Hold one slot of each limit (created if missing) under a lease of `lease_s`; SlotsBusy after `wait_s`."""
    await ensure_limits(names)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(
                concurrency(names, occupy=1, strict=True, lease_duration=lease_s, timeout_seconds=wait_s))
        except TimeoutError:  # only the acquisition: the body's own errors pass through untouched
            raise SlotsBusy(f"slots {', '.join(names)} not free within {wait_s:.0f} s") from None
        yield
