"""Compaction of a table-day's many small files into one, and the rule that tells readers which files to read.

In a partition folder `lake/<table>/date=YYYY-MM-DD/`:

    <stem>.parquet                       landed files
    compact-<generation>-<token>.parquet a compacted file: read only once a manifest names it
    compact-<generation>.json            its manifest, the commit point: output + the source names it replaces

Readers list the folder and read every landed file that no manifest names as a source, plus every
output a manifest names (`visible_files`). A compaction writes its output, then its manifest
(exclusive: of two racing compactions of one generation one commits, the other deletes its output), so
a reader sees the sources or the output, never both and never neither. Sources are deleted only in a
later pass once the manifest is older than the grace period, so a reader that listed before the
manifest can still read them; an output no manifest names (its compaction died or lost) is deleted
after the same grace. A manifest is deleted once its output and sources are all gone (a later
compaction took its output as a source). The names a manifest lists stay taken: landing one again
would be hidden, so the lake refuses it (see `Lake.land`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from analytics.storage import Store, StoredFile, parquet_dataset

COMPACT_PREFIX = "compact-"
DEFAULT_GRACE_S = 3600.0  # longer than any query runs: a reader that listed before a manifest still finds its files
_MANIFEST = re.compile(r"^compact-(\d+)\.json$")
_OUTPUT = re.compile(r"^compact-(\d+)-[0-9a-f]+\.parquet$")


@dataclass(frozen=True)
class Manifest:
    """The commit of one compaction: its output file and the source files it replaces (names in its folder)."""

    generation: int
    output: str
    sources: tuple[str, ...]
    rows: int
    created_at: str

    def to_json(self) -> bytes:
        """The manifest as JSON bytes."""
        return json.dumps({"generation": self.generation, "output": self.output, "sources": list(self.sources),
                           "rows": self.rows, "created_at": self.created_at}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest written by `to_json`."""
        raw = json.loads(data)
        return cls(int(raw["generation"]), str(raw["output"]), tuple(raw["sources"]), int(raw["rows"]),
                   str(raw["created_at"]))


@dataclass(frozen=True)
class CompactionResult:
    """What one `compact` did to one table-day."""

    table: str
    day: dt.date
    files_before: int  # files a reader read before
    files_after: int  # files a reader reads now
    rows: int  # rows in the new compacted file (0 when none was written)
    output: str | None  # the compacted file's name, None when nothing was compacted
    deleted: int  # files removed by the cleanup pass (replaced sources, orphans, spent manifests)


def manifest_name(generation: int) -> str:
    """The manifest file name of a generation."""
    return f"{COMPACT_PREFIX}{generation:06d}.json"


def is_manifest(name: str) -> bool:
    """Whether a file name is a compaction manifest."""
    return _MANIFEST.match(name) is not None


def is_parquet(name: str) -> bool:
    """Whether a file name is a data file (landed or compacted)."""
    return name.endswith(".parquet")


def visible_files(files: Iterable[StoredFile], manifests: dict[str, Manifest],
                  stat: Callable[[str], StoredFile | None]) -> list[StoredFile]:
    """The data files a reader reads: landed files no manifest replaced, plus committed outputs.

    `manifests` maps manifest keys to their contents. An output whose manifest was listed but which
    the listing missed (both landed while a local folder was being read) is looked up with `stat`.
    """
    listed = {f.key: f for f in files if is_parquet(f.name)}
    replaced, committed = set(), set()
    for key, manifest in manifests.items():
        folder = key.rsplit("/", 1)[0]
        replaced.update(f"{folder}/{name}" for name in manifest.sources)
        committed.add(f"{folder}/{manifest.output}")
    visible = [f for key, f in listed.items()
               if key not in replaced and (not f.name.startswith(COMPACT_PREFIX) or key in committed)]
    for key in sorted(committed - replaced - listed.keys()):
        found = stat(key)
        if found is not None:
            visible.append(found)
    return sorted(visible, key=lambda f: f.key)


def taken_names(manifests: Iterable[Manifest]) -> set[str]:
    """Names that manifests list as sources: gone or going, never to be landed again."""
    return {name for manifest in manifests for name in manifest.sources}


def _cleanup(store: Store, folder: str, files: list[StoredFile], manifests: dict[str, Manifest], *,
             now: float, grace_s: float) -> int:
    """Delete replaced sources and orphaned outputs older than the grace, then spent manifests; how many.

    Data files go before manifests: a crash in between leaves a manifest naming files already gone,
    never sources without the manifest that hides them.
    """
    present = {f.name: f for f in files}
    old = {key.rsplit("/", 1)[1]: m for key, m in manifests.items()
           if now - present[key.rsplit("/", 1)[1]].modified_at > grace_s}
    doomed = {name for m in old.values() for name in m.sources if name in present}
    outputs = {m.output for m in manifests.values()}
    doomed.update(name for name, f in present.items()
                  if _OUTPUT.match(name) and name not in outputs and now - f.modified_at > grace_s)
    remaining = present.keys() - doomed
    spent = [name for name, m in old.items() if m.output not in remaining and not remaining & set(m.sources)]
    for name in [*sorted(doomed), *sorted(spent)]:
        store.delete(f"{folder}/{name}")
    return len(doomed) + len(spent)


def compact_folder(store: Store, folder: str, schema: pa.Schema, read_manifest: Callable[[StoredFile], Manifest | None],
                   *, grace_s: float = DEFAULT_GRACE_S, now: float | None = None) -> tuple[int, int, int, str | None, int]:
    """Clean up, then merge the visible files of one partition folder into one; see `Lake.compact`.

    Returns (files before, files after, rows, output name or None, files deleted).
    """
    now = time.time() if now is None else now
    files = store.list(f"{folder}/")
    manifests = {f.key: m for f in files if is_manifest(f.name) and (m := read_manifest(f)) is not None}
    deleted = _cleanup(store, folder, files, manifests, now=now, grace_s=grace_s)
    if deleted:
        files = store.list(f"{folder}/")
        manifests = {f.key: m for f in files if is_manifest(f.name) and (m := read_manifest(f)) is not None}
    visible = visible_files(files, manifests, store.stat)
    if len(visible) <= 1:
        return len(visible), len(visible), 0, None, deleted
    generation = max((m.generation for m in manifests.values()), default=0) + 1
    output = f"{COMPACT_PREFIX}{generation:06d}-{uuid.uuid4().hex[:8]}.parquet"
    table = parquet_dataset(store, visible, schema).to_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    store.put(f"{folder}/{output}", buffer.getvalue())
    manifest = Manifest(generation, output, tuple(f.name for f in visible), table.num_rows,
                        dt.datetime.now(dt.timezone.utc).isoformat())
    try:
        store.put(f"{folder}/{manifest_name(generation)}", manifest.to_json(), exclusive=True)
    except FileExistsError:  # another compaction committed this generation first: ours was never read
        store.delete(f"{folder}/{output}")
        return len(visible), len(visible), 0, None, deleted
    return len(visible), 1, table.num_rows, output, deleted
