"""Orchestrator discovery: every configured source, merged into `orchestrators` snapshots.

    source      where                                   kept
    gateway     GET <gateway>/getNetworkCapabilities    offers discovery.capability with one of model_ids
    registered  GET <url>/registeredOrchestrators       Active
    json_url    GET <url>  [{"id"|"address", "address"|"uri", "region"}]
    static      discovery.orchestrators in the config   always

Remote sources are read concurrently, each GET within `timeout_s` and `MAX_RESPONSE_BYTES`.
A source that fails is logged and reported; the others still count. A malformed entry is
skipped and counted. Addresses are stored lowercase (a gateway may report an on-chain address
checksummed and a list the same one in lowercase: one orchestrator), and entries are merged by
address; gateway data wins for capacity and hardware. An address a gateway saw without
Scope is left out even when another source lists it (no gateway sighting offers Scope).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from analytics.lake import Lake
from analytics.records import OrchestratorSnapshot, as_utc
from config.settings import Discovery, StaticOrchestrator
from errors import Category, HarnessError
from tasks.fleet.roster import orchestrator_key

SourceKind = Literal["gateway", "registered", "json_url", "static"]
SOURCE_ORDER: tuple[SourceKind, ...] = ("gateway", "registered", "json_url", "static")  # merge priority
GATEWAY_PATH = "/getNetworkCapabilities"
REGISTERED_PATH = "/registeredOrchestrators"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
CAPABILITY_IDS = {"live-video-to-video": "35"}  # go-livepeer's core.Capability numbers (PerCapability keys)
MERGED_FIELDS = ("uri", "region", "offers_scope", "gpu_name", "gpu_vram_mb", "capacity", "capacity_in_use", "warm")
ORCHESTRATOR_COLUMNS = ("source", "address", "uri", "region", "offers_scope", "capacity", "capacity_in_use",
                        "warm", "gpu_name", "gpu_vram_mb")
SOURCE_COLUMNS = ("source", "url", "ok", "entries", "skipped", "excluded", "error")
_log = logging.getLogger(__name__)


class DiscoveryError(HarnessError):
    """A discovery source could not be read: unreachable, too slow, too large, or not the contract's shape."""

    default_category = Category.PROTOCOL


class MalformedEntry(ValueError):
    """One entry of a source is not usable; it is skipped and counted."""


@dataclass(frozen=True)
class Excluded:
    """A well-formed entry left out on purpose (inactive, or no Scope offered)."""

    address: str
    reason: str


@dataclass(frozen=True)
class SourceStats:
    """How one source fared: reachable, usable entries, malformed ones skipped, others left out."""

    source: SourceKind
    url: str | None  # credentials and query values redacted
    ok: bool
    entries: int = 0
    skipped: int = 0  # malformed
    excluded: int = 0  # inactive (registry) or not offering Scope (gateway)
    error: str | None = None
    failure_category: Category | None = None


@dataclass(frozen=True)
class SourceOutcome:
    """One source's stats and what it contributed."""

    stats: SourceStats
    snapshots: tuple[OrchestratorSnapshot, ...] = ()
    excluded: tuple[Excluded, ...] = ()


@dataclass(frozen=True)
class DiscoveryResult:
    """One discovery: merged snapshots (one per orchestrator) and how every source fared."""

    snapshot_id: str
    snapshot_at: datetime
    snapshots: tuple[OrchestratorSnapshot, ...]
    sources: tuple[SourceStats, ...]
    not_scope: tuple[str, ...] = field(default=())  # addresses a gateway saw without Scope, left out

    @property
    def all_failed(self) -> bool:
        """True when sources were configured and not one of them could be read."""
        return bool(self.sources) and not any(s.ok for s in self.sources)

    def counts(self) -> dict[str, Any]:
        """Headline numbers (flow result, CLI --json)."""
        by_source: dict[str, int] = {}
        for snapshot in self.snapshots:
            by_source[snapshot.source] = by_source.get(snapshot.source, 0) + 1
        return {
            "snapshot_id": self.snapshot_id, "orchestrators": len(self.snapshots),
            "offering_scope": sum(1 for s in self.snapshots if s.offers_scope),
            "by_source": dict(sorted(by_source.items())), "sources": len(self.sources),
            "sources_failed": sum(1 for s in self.sources if not s.ok),
            "skipped_malformed": sum(s.skipped for s in self.sources),
            "excluded": sum(s.excluded for s in self.sources), "not_scope": len(self.not_scope),
        }


Parser = Callable[[Any, datetime], "OrchestratorSnapshot | Excluded"]


def redact_url(url: str) -> str:
    """The URL without user:password and with every query value replaced (tokens travel there)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def endpoint_url(base: str, path: str) -> str:
    """`base` with `path` appended to its path, unless it already ends with it (query kept)."""
    parts = urlsplit(base)
    stem = parts.path.rstrip("/")
    return base if stem.endswith(path) else urlunsplit(parts._replace(path=stem + path))


async def fetch_json(client: httpx.AsyncClient, url: str, *, timeout_s: float, max_bytes: int) -> Any:
    """GET `url` and decode its JSON within `timeout_s` and `max_bytes`; DiscoveryError otherwise."""
    shown = redact_url(url)
    try:
        async with asyncio.timeout(timeout_s):  # httpx bounds each read; this bounds a trickling body
            async with client.stream("GET", url, timeout=timeout_s) as response:
                if not 200 <= response.status_code < 300:
                    raise DiscoveryError(f"{shown} answered HTTP {response.status_code}")
                body = await _read_capped(response, max_bytes, shown)
    except httpx.HTTPError as exc:
        text = f"{type(exc).__name__}: {exc}".replace(url, shown).rstrip(": ")
        raise DiscoveryError(f"{shown} unreachable ({text})", category=Category.NETWORK) from None
    except TimeoutError:
        raise DiscoveryError(f"{shown} gave no complete answer within {timeout_s:g} s",
                             category=Category.NETWORK) from None
    try:
        return json.loads(body)
    except ValueError:
        raise DiscoveryError(f"{shown} answered something other than JSON") from None


async def _read_capped(response: httpx.Response, max_bytes: int, shown: str) -> bytes:
    """The whole body, or DiscoveryError as soon as it is known to exceed `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DiscoveryError(f"{shown} declares {declared} bytes, above the cap of {max_bytes}")
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) > max_bytes:
            raise DiscoveryError(f"{shown} sent more than the cap of {max_bytes} bytes")
    return bytes(buffer)


def entries_of(payload: Any, shown: str) -> list[Any]:
    """The entry list of a source's answer: a list, or {"orchestrators": [...]}; Go's null is empty."""
    if isinstance(payload, dict) and "orchestrators" in payload:
        payload = payload["orchestrators"]
    if payload is None:
        return []
    if not isinstance(payload, list):
        shape = type(payload).__name__
        raise DiscoveryError(f"{shown}: expected a list or {{\"orchestrators\": [...]}}, got {shape}")
    return payload


def _object(value: Any, what: str = "entry") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEntry(f"{what} is {type(value).__name__}, not an object")
    return value


def _text(entry: dict[str, Any], key: str) -> str | None:
    """A string field, stripped; None when absent or empty; MalformedEntry when not a string."""
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEntry(f"{key} is {type(value).__name__}, not a string")
    return value.strip() or None


def _count(constraint: dict[str, Any], *keys: str) -> int:
    """A non-negative count; absent is 0 because go-livepeer omits zero values (omitempty)."""
    value = next((constraint[k] for k in keys if k in constraint), None)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEntry(f"{keys[0]} is {value!r}, not a count")
    return int(value)


def _snapshot(at: datetime, *, address: str, **fields: Any) -> OrchestratorSnapshot:
    """A snapshot with its address in the one spelling every key uses (lowercase)."""
    try:
        return OrchestratorSnapshot(snapshot_at=at, address=orchestrator_key(address), **fields)
    except ValidationError as exc:
        raise MalformedEntry(f"not a valid snapshot: {exc.errors()[0]['msg']}") from None


def _model_constraints(capabilities: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """capabilities.constraints.PerCapability as {capability id: {model: constraint}}."""
    if capabilities is None:
        return {}
    constraints = _object(_object(capabilities, "capabilities").get("constraints") or {}, "constraints")
    per = _object(constraints.get("PerCapability") or constraints.get("perCapability") or {}, "PerCapability")
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for cap_id, entry in per.items():
        models = _object(_object(entry, f"PerCapability.{cap_id}").get("models") or {}, "models")
        result[str(cap_id)] = {str(name): _object(c, f"model {name}") for name, c in models.items()}
    return result


def _gpu(hardware: list[dict[str, Any]], models: Collection[str]) -> tuple[str | None, float | None]:
    """Name and memory (MB) of the first GPU serving one of `models` (else of any hardware entry)."""
    candidates = [h for h in hardware if h.get("model_id") in models] or hardware
    for entry in candidates:
        info = entry.get("gpu_info")
        by_index = sorted(info.items(), key=lambda kv: (len(kv[0]), kv[0])) if isinstance(info, dict) else []
        for gpu in (g for _, g in by_index if isinstance(g, dict)):
            total = gpu.get("memory_total")
            vram_mb = total / (1024 * 1024) if isinstance(total, int) and not isinstance(total, bool) else None
            return (gpu["name"] if isinstance(gpu.get("name"), str) else None), vram_mb
    return None, None


def parse_gateway_entry(entry: Any, at: datetime, *, capability: str, model_ids: Sequence[str]
                        ) -> OrchestratorSnapshot | Excluded:
    """One /getNetworkCapabilities orchestrator; Excluded when it offers none of `model_ids` for `capability`."""
    fields = _object(entry)
    address = _text(fields, "address") or _text(fields, "orch_uri")  # off-chain orchestrators have no address
    if address is None:
        raise MalformedEntry("neither address nor orch_uri")
    per_capability = _model_constraints(fields.get("capabilities"))
    raw_hardware = fields.get("hardware")
    hardware = [h for h in raw_hardware if isinstance(h, dict)] if isinstance(raw_hardware, list) else []
    cap_keys = {capability, CAPABILITY_IDS.get(capability, capability)}
    wanted = {m: c for key in cap_keys for m, c in per_capability.get(key, {}).items() if m in model_ids}
    in_hardware = [h.get("model_id") for h in hardware if h.get("pipeline") == capability]
    scope_models = [m for m in model_ids if m in wanted or m in in_hardware]
    if not scope_models:
        return Excluded(address, f"offers none of {list(model_ids)} for {capability}")
    constraints = [wanted[m] for m in scope_models if m in wanted]
    gpu_name, gpu_vram_mb = _gpu(hardware, scope_models)
    figures = {} if not constraints else {
        "capacity": sum(_count(c, "capacity") for c in constraints),
        "capacity_in_use": sum(_count(c, "capacityInUse", "capacity_in_use") for c in constraints),
        "warm": any(c.get("warm") is True for c in constraints),
    }
    pipelines = [h["pipeline"] for h in hardware if isinstance(h.get("pipeline"), str)] + [capability]
    models = [h["model_id"] for h in hardware if isinstance(h.get("model_id"), str)]
    models += [m for by_model in per_capability.values() for m in by_model]
    return _snapshot(at, address=address, uri=_text(fields, "orch_uri"), source="gateway",
                     pipelines=_unique(pipelines), models=_unique(models), offers_scope=True,
                     gpu_name=gpu_name, gpu_vram_mb=gpu_vram_mb, **figures)


def parse_registered_entry(entry: Any, at: datetime) -> OrchestratorSnapshot | Excluded:
    """One /registeredOrchestrators entry {"Address","ServiceURI","Active",...}; Excluded when inactive."""
    fields = _object(entry)
    address = _text(fields, "Address")
    if address is None:
        raise MalformedEntry("no Address")
    active = fields.get("Active", True)
    if not isinstance(active, bool):
        raise MalformedEntry(f"Active is {active!r}, not a boolean")
    if not active:
        return Excluded(address, "inactive")
    return _snapshot(at, address=address, uri=_text(fields, "ServiceURI"), source="registered")


def parse_listed_entry(entry: Any, at: datetime) -> OrchestratorSnapshot:
    """One plain-list entry; `address` is the identity, unless it holds the URL (then `id` is)."""
    fields = _object(entry)
    address, uri = _text(fields, "address"), _text(fields, "uri")
    if uri is None and address is not None and "://" in address:  # the older harness's {"id", "address": URL}
        address, uri = _text(fields, "id"), address
    address = address or _text(fields, "id")
    if address is None:
        raise MalformedEntry("neither address nor id")
    return _snapshot(at, address=address, uri=uri, region=_text(fields, "region"), source="json_url")


def parse_static_entry(entry: StaticOrchestrator, at: datetime) -> OrchestratorSnapshot:
    """One orchestrator named in the config."""
    return _snapshot(at, address=entry.address, uri=entry.uri, region=entry.region, source="static")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _rank(source: str) -> int:
    return min(SOURCE_ORDER.index(s) for s in source.split("+"))  # type: ignore[arg-type]


def combine(group: Sequence[OrchestratorSnapshot]) -> OrchestratorSnapshot:
    """One snapshot from sightings of one orchestrator, in priority order: first non-null value wins."""
    sources = {s for snapshot in group for s in snapshot.source.split("+")}
    values = {name: next((v for s in group if (v := getattr(s, name)) is not None), None) for name in MERGED_FIELDS}
    return OrchestratorSnapshot(
        snapshot_at=group[0].snapshot_at, address=orchestrator_key(group[0].address),
        source="+".join(s for s in SOURCE_ORDER if s in sources),
        pipelines=_unique(p for s in group for p in s.pipelines), models=_unique(m for s in group for m in s.models),
        **values,
    )


def merge_snapshots(snapshots: Sequence[OrchestratorSnapshot], *, not_scope: Collection[str] = ()
                    ) -> list[OrchestratorSnapshot]:
    """One snapshot per address (any casing, stored lowercase); `not_scope` ones only when a sighting offers Scope."""
    groups: dict[str, list[OrchestratorSnapshot]] = {}
    for snapshot in sorted(snapshots, key=lambda s: _rank(s.source)):  # stable: source order kept within a rank
        groups.setdefault(orchestrator_key(snapshot.address), []).append(snapshot)
    dropped = {orchestrator_key(a) for a in not_scope}
    return [combine(g) for key, g in groups.items() if key not in dropped or any(s.offers_scope for s in g)]


def parse_source(source: SourceKind, shown: str | None, entries: Iterable[Any], parse: Parser, at: datetime
                 ) -> SourceOutcome:
    """Parse every entry of one source; malformed ones are skipped, counted and logged once."""
    snapshots: list[OrchestratorSnapshot] = []
    excluded: list[Excluded] = []
    problems: list[str] = []
    for entry in entries:
        try:
            parsed = parse(entry, at)
        except MalformedEntry as exc:
            problems.append(str(exc))
            continue
        (excluded if isinstance(parsed, Excluded) else snapshots).append(parsed)  # type: ignore[arg-type]
    if problems:
        _log.warning("discovery source %s %s: %d malformed entries skipped (first: %s)",
                     source, shown or "", len(problems), problems[0])
    stats = SourceStats(source, shown, True, len(snapshots), len(problems), len(excluded))
    return SourceOutcome(stats, tuple(snapshots), tuple(excluded))


async def read_source(client: httpx.AsyncClient, source: SourceKind, url: str, parse: Parser, *, at: datetime,
                      timeout_s: float, max_bytes: int) -> SourceOutcome:
    """Fetch and parse one remote source; a failure becomes a failed SourceOutcome, logged."""
    shown = redact_url(url)
    try:
        entries = entries_of(await fetch_json(client, url, timeout_s=timeout_s, max_bytes=max_bytes), shown)
    except DiscoveryError as exc:
        _log.warning("discovery source %s failed: %s", source, exc)
        return SourceOutcome(SourceStats(source, shown, False, error=str(exc), failure_category=exc.category))
    return parse_source(source, shown, entries, parse, at)


def remote_sources(discovery: Discovery) -> list[tuple[SourceKind, str, Parser]]:
    """(source, URL to GET, entry parser) for every configured remote source, in source order."""
    gateway = partial(parse_gateway_entry, capability=discovery.capability, model_ids=tuple(discovery.model_ids))
    return ([("gateway", endpoint_url(u, GATEWAY_PATH), gateway) for u in discovery.gateway_urls]
            + [("registered", endpoint_url(u, REGISTERED_PATH), parse_registered_entry)
               for u in discovery.registered_orchestrators_urls]
            + [("json_url", u, parse_listed_entry) for u in discovery.json_list_urls])


def has_sources(discovery: Discovery) -> bool:
    """True when the config names at least one source."""
    return bool(remote_sources(discovery) or discovery.orchestrators)


async def discover_orchestrators(discovery: Discovery, *, now: datetime | None = None,
                                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                                 transport: httpx.AsyncBaseTransport | None = None) -> DiscoveryResult:
    """Read every configured source concurrently and merge what they say into one snapshot per orchestrator."""
    at = as_utc(now or datetime.now(timezone.utc))
    async with httpx.AsyncClient(transport=transport, follow_redirects=True, timeout=discovery.timeout_s) as client:
        outcomes = list(await asyncio.gather(*(
            read_source(client, source, url, parse, at=at, timeout_s=discovery.timeout_s,
                        max_bytes=max_response_bytes)
            for source, url, parse in remote_sources(discovery))))
    if discovery.orchestrators:
        outcomes.append(parse_source("static", None, discovery.orchestrators, parse_static_entry, at))
    return build_result(at, outcomes)


def build_result(at: datetime, outcomes: Sequence[SourceOutcome]) -> DiscoveryResult:
    """Merge the sources' snapshots; name the addresses left out because a gateway saw them without Scope."""
    not_scope = {e.address for o in outcomes if o.stats.source == "gateway" for e in o.excluded}
    merged = merge_snapshots([s for o in outcomes for s in o.snapshots], not_scope=not_scope)
    kept = {s.address for s in merged}
    return DiscoveryResult(
        snapshot_id=f"discovery-{at:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}", snapshot_at=at,
        snapshots=tuple(merged), sources=tuple(o.stats for o in outcomes),
        not_scope=tuple(sorted({orchestrator_key(a) for a in not_scope} - kept)),
    )


def land_discovery(lake: Lake, result: DiscoveryResult) -> Path | None:
    """Land the snapshots as orchestrators/date=<day>/<snapshot_id>.parquet; None when there are none."""
    return lake.land("orchestrators", result.snapshots, file_stem=result.snapshot_id)


def orchestrator_rows(result: DiscoveryResult) -> list[list[Any]]:
    """ORCHESTRATOR_COLUMNS rows, by source then address."""
    ordered = sorted(result.snapshots, key=lambda s: (_rank(s.source), s.source, s.address))
    return [[getattr(s, c) for c in ORCHESTRATOR_COLUMNS] for s in ordered]


def source_rows(result: DiscoveryResult) -> list[list[Any]]:
    """SOURCE_COLUMNS rows, one per source."""
    return [[getattr(s, c) for c in SOURCE_COLUMNS] for s in result.sources]


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = "-" if value is None or value == () else ",".join(value) if isinstance(value, tuple) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    return [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns),
            *(f"| {' | '.join(cell(v) for v in row)} |" for row in rows)]


def discovery_markdown(result: DiscoveryResult) -> str:
    """The discovery as markdown: headline, orchestrators by source, sources."""
    counts = result.counts()
    head = (f"## Discovery `{result.snapshot_id}`: {counts['orchestrators']} orchestrators "
            f"({counts['offering_scope']} offering Scope), "
            f"{counts['sources_failed']}/{counts['sources']} sources failed, "
            f"{counts['skipped_malformed']} malformed entries skipped")
    return "\n".join([head, "", *_markdown_table(ORCHESTRATOR_COLUMNS, orchestrator_rows(result)), "",
                      *_markdown_table(SOURCE_COLUMNS, source_rows(result))])
