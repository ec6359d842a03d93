"""`loadtest discover`: read every discovery source once, land the snapshots, list them by source.

Runs without Prefect (the scheduled `discover` flow does the same through tasks). Exit codes:
0 at least one source answered, 1 every source failed, 2 bad config or no source configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.fleet.discovery import DiscoveryResult

Handler = Callable[[argparse.Namespace], int]
NO_SOURCES = ("no discovery source configured: set gateway_urls, registered_orchestrators_urls, "
              "json_list_urls or orchestrators")


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Register this module's subcommands; return their handlers by name."""
    discover = sub.add_parser("discover", help="read the orchestrator discovery sources, land and list them")
    discover.add_argument("--config", help="config file (default $LOADTEST_CONFIG or config/default.yaml)")
    discover.add_argument("--json", action="store_true", help="print one JSON object: orchestrators, sources, counts")
    discover.add_argument("--no-land", action="store_true", help="list only; land nothing in the lake")
    return {"discover": cmd_discover}


def cmd_discover(args: argparse.Namespace) -> int:
    """Discover once; print orchestrators by source and how every source fared."""
    from analytics.lake import Lake
    from config.settings import load_settings
    from deployments.cli import EXIT_FAILED, EXIT_OK
    from tasks.fleet.discovery import discover_orchestrators, has_sources, land_discovery
    from errors import ConfigError

    settings = load_settings(args.config)
    if not has_sources(settings.discovery):
        raise ConfigError(settings.source_file, "discovery", NO_SOURCES)
    result = asyncio.run(discover_orchestrators(settings.discovery))
    landed = None if args.no_land else land_discovery(Lake.from_env(), result)
    print(_as_json(result, landed) if args.json else _as_text(result, landed))
    return EXIT_FAILED if result.all_failed else EXIT_OK


def _as_json(result: DiscoveryResult, landed: Path | None) -> str:
    payload = {
        "snapshot_id": result.snapshot_id,
        "snapshot_at": result.snapshot_at.isoformat(),
        "counts": result.counts(),
        "orchestrators": [s.model_dump(mode="json") for s in result.snapshots],
        "sources": [asdict(s) for s in result.sources],
        "not_scope": list(result.not_scope),
        "landed": str(landed) if landed else None,
    }
    return json.dumps(payload)


def _as_text(result: DiscoveryResult, landed: Path | None) -> str:
    from deployments.tables import format_table
    from tasks.fleet.discovery import ORCHESTRATOR_COLUMNS, SOURCE_COLUMNS, orchestrator_rows, source_rows

    counts = result.counts()
    by_source = ", ".join(f"{source} {n}" for source, n in counts["by_source"].items()) or "none"
    lines = [
        f"{counts['orchestrators']} orchestrator(s) ({by_source}); {counts['offering_scope']} offering Scope",
        format_table(ORCHESTRATOR_COLUMNS, orchestrator_rows(result)),
        "",
        f"{counts['sources']} source(s), {counts['sources_failed']} failed; "
        f"{counts['skipped_malformed']} malformed entries skipped, {counts['excluded']} excluded "
        f"(inactive or not offering Scope)",
        format_table(SOURCE_COLUMNS, source_rows(result)),
    ]
    if result.not_scope:
        lines.append(f"left out, a gateway saw them without Scope: {', '.join(result.not_scope)}")
    lines.append(f"landed: {landed}" if landed else "landed: nothing")
    return "\n".join(lines)
