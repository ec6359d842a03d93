"""Where the lake's bytes live: a local folder or an S3-compatible object store, behind one small interface.

Keys are relative POSIX paths (`lake/frames/date=2026-03-01/run-1-f0001.parquet`). Both stores:

    put(key, data)                  readers see no object or the whole object, never a part
    put(key, data, exclusive=True)  FileExistsError when the key exists (see `ObjectStore.put` for its limit)
    list(prefix), read, delete, exists, and `dataset_path`/`filesystem` for pyarrow datasets

A local put is a temp file, fsync, then `os.replace` (or `os.link` when exclusive); an object PUT is
atomic by itself. Every object-store call is bounded by `S3_CONNECT_TIMEOUT_S` and
`S3_REQUEST_TIMEOUT_S`. Credentials come from the environment and are never logged or shown in a repr.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

TEMP_SUFFIX = ".tmp"  # temp files never end in .parquet or .json, so no reader ever takes one
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 30.0
S3_RETRIES = 3
ENDPOINT_ENVS = ("LOADTEST_S3_ENDPOINT", "AWS_ENDPOINT_URL")  # the first one set wins
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class StoredFile:
    """One listed object: its key, size in bytes and modification time (epoch seconds)."""

    key: str
    size: int
    modified_at: float

    @property
    def name(self) -> str:
        """The last segment of the key."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        """The key without its last segment."""
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""


class Store(Protocol):
    """What the lake needs from a place to keep files."""

    url: str
    is_local: bool
    filesystem: pafs.FileSystem

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None: ...
    def list(self, prefix: str) -> list[StoredFile]: ...
    def read(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def stat(self, key: str) -> StoredFile | None: ...
    def dataset_path(self, key: str) -> str: ...


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Files under a local folder: atomic by temp file, fsync and rename."""

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self.filesystem = pafs.LocalFileSystem()

    def path(self, key: str) -> Path:
        """The local path of a key."""
        return self.root / key

    def dataset_path(self, key: str) -> str:
        """The path pyarrow's local filesystem reads the key at."""
        return str(self.path(key).resolve())

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write `data` so readers see no file or the whole file; exclusive: FileExistsError if taken.

        Exclusive uses a hard link, which is atomic and refuses an existing target: two writers racing
        on one key land it once and the second is told.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                os.link(tmp, path)
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def list(self, prefix: str) -> list[StoredFile]:
        """Files (not temp files) whose key starts with `prefix`, sorted by key."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.path(folder)
        if not base.is_dir():
            return []
        found = []
        for dirpath, _, names in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in names:
                key = f"{rel}/{name}" if rel != "." else name
                if not key.startswith(prefix) or (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                    continue
                try:
                    stat = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we listed
                    continue
                found.append(StoredFile(key, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda f: f.key)

    def stat(self, key: str) -> StoredFile | None:
        """The file's listing entry, None when there is no such file."""
        try:
            stat = os.stat(self.path(key))
        except FileNotFoundError:
            return None
        return StoredFile(key, stat.st_size, stat.st_mtime)

    def read(self, key: str) -> bytes:
        """The file's bytes."""
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        """Remove the file; a missing file is fine."""
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()

    def stale_temp_files(self, prefix: str, older_than_s: float) -> list[Path]:
        """Temp files under `prefix` older than `older_than_s` (their writer died mid-write)."""
        base, cutoff = self.path(prefix), time.time() - older_than_s
        stale = []
        for tmp in base.glob(f"**/.*{TEMP_SUFFIX}") if base.is_dir() else ():
            try:
                if tmp.stat().st_mtime < cutoff:
                    stale.append(tmp)
            except FileNotFoundError:
                continue
        return stale


@dataclass(frozen=True)
class S3Settings:
    """Where the object store is and how to sign in; the secret never shows in a repr."""

    endpoint: str | None = None
    region: str = DEFAULT_REGION
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        """Read AWS_ENDPOINT_URL (or LOADTEST_S3_ENDPOINT), AWS_REGION and the AWS_* key pair."""
        env = os.environ if env is None else env
        endpoint = next((env[name] for name in ENDPOINT_ENVS if env.get(name)), None)
        return cls(endpoint=endpoint, region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
                   access_key=env.get("AWS_ACCESS_KEY_ID") or None, secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None)

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem with bounded connect and request times."""
        options: dict[str, object] = dict(
            region=self.region, connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_RETRIES),
            allow_bucket_creation=False, allow_bucket_deletion=False)
        if self.endpoint:
            parts = urlsplit(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
            options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
        if self.access_key and self.secret_key:
            options.update(access_key=self.access_key, secret_key=self.secret_key)
        return pafs.S3FileSystem(**options)


class ObjectStore:
    """Objects under s3://bucket/prefix on any S3-compatible store (AWS, MinIO, moto, R2...)."""

    is_local = False

    def __init__(self, url: str, filesystem: pafs.FileSystem) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"object-store lake roots look like s3://bucket/prefix, got {url!r}")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.filesystem = filesystem

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> ObjectStore:
        """The store at `url`, signed in with the settings in the environment."""
        return cls(url, S3Settings.from_env(env).filesystem())

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def dataset_path(self, key: str) -> str:
        """bucket/prefix/key: the path pyarrow's S3 filesystem reads the key at."""
        return "/".join(p for p in (self.bucket, self.prefix, key) if p)

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """PUT the object (atomic: readers see the old state or the whole new object).

        `exclusive` checks then puts (HEAD, FileExistsError when present, else PUT): S3 has no portable
        create-if-absent here. Two writers racing between the HEAD and the PUT of one key still leave
        one object (the lake's exclusive keys are content-addressed, so one row); only the second
        writer's "already there" signal is lost.
        """
        if exclusive and self.exists(key):
            raise FileExistsError(key)
        with self.filesystem.open_output_stream(self.dataset_path(key), metadata={}) as out:
            out.write(data)

    def list(self, prefix: str) -> list[StoredFile]:
        """Objects whose key starts with `prefix`, sorted by key (directory markers left out)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        infos = self.filesystem.get_file_info(
            pafs.FileSelector(self.dataset_path(folder).rstrip("/"), recursive=True, allow_not_found=True))
        strip = len(self.dataset_path("").rstrip("/")) + 1
        found = [StoredFile(info.path[strip:], info.size or 0, info.mtime.timestamp() if info.mtime else 0.0)
                 for info in infos if info.type == pafs.FileType.File]
        return sorted((f for f in found if f.key.startswith(prefix)), key=lambda f: f.key)

    def stat(self, key: str) -> StoredFile | None:
        """HEAD the object: its listing entry, None when absent."""
        info = self.filesystem.get_file_info(self.dataset_path(key))
        if info.type != pafs.FileType.File:
            return None
        return StoredFile(key, info.size or 0, info.mtime.timestamp() if info.mtime else 0.0)

    def read(self, key: str) -> bytes:
        """The object's bytes."""
        with self.filesystem.open_input_stream(self.dataset_path(key)) as stream:
            return stream.read()

    def delete(self, key: str) -> None:
        """Delete the object; a missing object is fine."""
        try:
            self.filesystem.delete_file(self.dataset_path(key))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        return self.stat(key) is not None


def open_store(root: Path | str) -> Store:
    """The store of a lake root: s3://bucket/prefix is an object store, anything else a local folder."""
    if isinstance(root, str) and root.startswith("s3://"):
        return ObjectStore.from_url(root)
    return LocalStore(Path(root))


def _partition(key: str) -> ds.Expression | None:
    """`date == D` for a key under a `date=YYYY-MM-DD` folder: fills the column in files written without it."""
    folder = key.rsplit("/", 2)[-2] if key.count("/") >= 1 else ""
    if not folder.startswith("date="):
        return None
    try:
        day = dt.date.fromisoformat(folder[len("date="):])
    except ValueError:
        return None
    return ds.field("date") == pa.scalar(day, pa.date32())


def parquet_dataset(store: Store, files: list[StoredFile], schema: pa.Schema) -> ds.FileSystemDataset:
    """A pyarrow dataset over exactly `files`, read with `schema` (columns a file lacks read as null).

    Built from the listing alone (sizes included), so opening it asks the store nothing.
    """
    fmt, dated = ds.ParquetFileFormat(), "date" in schema.names
    fragments = []
    for f in files:
        partition = _partition(f.key) if dated else None
        fragments.append(fmt.make_fragment(store.dataset_path(f.key), store.filesystem, file_size=f.size or None,
                                           **({"partition_expression": partition} if partition is not None else {})))
    return ds.FileSystemDataset(fragments, schema, fmt, store.filesystem)
