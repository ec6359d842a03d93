"""The storage interface: the local store's atomic puts and listing, the object store's settings and URLs."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from analytics.storage import (
    TEMP_SUFFIX, LocalStore, ObjectStore, S3Settings, StoredFile, open_store, parquet_dataset,
)


def test_local_put_read_list_stat_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("lake/t/date=2026-03-01/a.parquet", b"one")
    store.put("lake/t/date=2026-03-02/b.parquet", b"two")
    store.put("lake/t/date=2026-03-01/a.parquet", b"three")  # replaces
    assert store.read("lake/t/date=2026-03-01/a.parquet") == b"three"
    assert [f.key for f in store.list("lake/")] == ["lake/t/date=2026-03-01/a.parquet", "lake/t/date=2026-03-02/b.parquet"]
    assert [f.name for f in store.list("lake/t/date=2026-03-01/")] == ["a.parquet"]
    assert [f.name for f in store.list("lake/t/date=2026-03-02/b")] == ["b.parquet"]  # a key prefix, not only folders
    listed = store.stat("lake/t/date=2026-03-02/b.parquet")
    assert listed is not None and (listed.size, listed.folder) == (3, "lake/t/date=2026-03-02")
    store.delete("lake/t/date=2026-03-02/b.parquet")
    store.delete("lake/t/date=2026-03-02/b.parquet")  # missing is fine
    assert not store.exists("lake/t/date=2026-03-02/b.parquet") and store.stat("lake/t/nope") is None
    assert store.list("elsewhere/") == []


def test_local_exclusive_put_refuses_an_existing_key_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("k/x.json", b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        store.put("k/x.json", b"second", exclusive=True)
    assert store.read("k/x.json") == b"first"
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["x.json"]


def test_temp_files_are_never_listed_and_old_ones_are_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("lake/t/date=2026-03-01/a.parquet", b"one")
    old, fresh = tmp_path / f"lake/t/date=2026-03-01/.a.1.dead{TEMP_SUFFIX}", tmp_path / f"lake/t/.b.2.live{TEMP_SUFFIX}"
    for tmp in (old, fresh):
        tmp.write_bytes(b"half")
    os.utime(old, (0, 0))
    assert [f.name for f in store.list("lake/")] == ["a.parquet"]
    assert store.stale_temp_files("lake", 3600) == [old]


def test_s3_settings_come_from_the_environment_and_hide_the_secret() -> None:
    env = {"AWS_ENDPOINT_URL": "http://aws:9000", "LOADTEST_S3_ENDPOINT": "http://minio:9000",
           "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_REGION": "eu-west-1"}
    settings = S3Settings.from_env(env)
    assert (settings.endpoint, settings.region, settings.access_key) == ("http://minio:9000", "eu-west-1", "AKIA")
    assert "s3cr3t" not in repr(settings)
    assert S3Settings.from_env({}) == S3Settings()
    filesystem = settings.filesystem()
    assert isinstance(filesystem, pafs.S3FileSystem) and filesystem.region == "eu-west-1"
    assert "s3cr3t" not in repr(filesystem)


def test_object_store_urls_and_paths() -> None:
    store = ObjectStore("s3://bucket/some/prefix/", pafs.LocalFileSystem())
    assert (store.url, store.dataset_path("lake/t/x.parquet")) == ("s3://bucket/some/prefix",
                                                                  "bucket/some/prefix/lake/t/x.parquet")
    assert ObjectStore("s3://bucket", pafs.LocalFileSystem()).dataset_path("a") == "bucket/a"
    for bad in ("s3://", "http://bucket/x"):
        with pytest.raises(ValueError):
            ObjectStore(bad, pafs.LocalFileSystem())
    assert repr(store) == "ObjectStore('s3://bucket/some/prefix')"


def test_open_store_picks_the_store_by_root(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store("s3://bucket/prefix"), ObjectStore)


def test_a_dataset_reads_missing_columns_as_null_and_fills_the_date_from_the_folder(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = LocalStore(tmp_path)
    key = "lake/t/date=2026-03-01/old.parquet"
    (tmp_path / key).parent.mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / key)  # written before columns b and date existed
    schema = pa.schema([("a", pa.int64()), ("b", pa.large_string()), ("date", pa.date32())])
    listed = store.stat(key)
    assert isinstance(listed, StoredFile)
    table = parquet_dataset(store, [listed], schema).to_table()
    assert table.to_pylist() == [{"a": 1, "b": None, "date": dt.date(2026, 3, 1)},
                                 {"a": 2, "b": None, "date": dt.date(2026, 3, 1)}]
