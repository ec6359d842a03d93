"""One analyzer per lake, under one grouping key, whichever machine runs it.

Every machine lands into the same lake, but the gauges are computed from the whole lake, so two
analyzers pushing under two grouping keys would double every series in Prometheus, and two
analyses at once would race on the same Pushgateway group. Hence:

- the grouping key's `instance` is the analyzer of the lake, not the host: $LOADTEST_HARNESS_ID
  when set; else, for a local lake (one machine's), the host name as before; for an object-store
  lake, `lake-<12 hex digits of the root's SHA-256>`, the same on every machine, so a push from any
  of them replaces the last one (PUT), never adds a second copy;
- an analysis holds the global concurrency limit `analyzer-<same key>` (one slot): a second one
  that cannot take it within a few seconds skips, saying so, instead of waiting or racing.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, concurrency

from tasks.fleet.limits import ensure_limits

HARNESS_ID_ENV = "LOADTEST_HARNESS_ID"
ANALYZER_PREFIX = "analyzer-"
ACQUIRE_TIMEOUT_S = 5.0
LEASE_S = 1800.0  # longer than any analysis; a dead analyzer's slot frees itself after it
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "az://", "abfs://")


def is_object_store(root: str) -> bool:
    """Whether a lake root is an object-store URL rather than a local directory."""
    return str(root).startswith(OBJECT_STORE_SCHEMES)


def analyzer_id(root: str, environ: Mapping[str, str] | None = None) -> str:
    """The `instance` label of the lake's gauges (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get(HARNESS_ID_ENV):
        return env[HARNESS_ID_ENV]
    if is_object_store(root):
        return "lake-" + hashlib.sha256(str(root).rstrip("/").encode()).hexdigest()[:12]
    return socket.gethostname()


def analyzer_limit(root: str, environ: Mapping[str, str] | None = None) -> str:
    """The global concurrency limit one analysis of this lake holds."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in analyzer_id(root, environ).lower())
    return ANALYZER_PREFIX + safe


@asynccontextmanager
async def sole_analyzer(root: str, *, timeout_s: float = ACQUIRE_TIMEOUT_S) -> AsyncIterator[bool]:
    """Hold the lake's analyzer slot for the block; yields False (holding nothing) when another has it."""
    name = analyzer_limit(root)
    await ensure_limits([name])
    try:
        async with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_S):
            yield True
            return
    except AcquireConcurrencySlotTimeoutError:
        pass
    yield False
