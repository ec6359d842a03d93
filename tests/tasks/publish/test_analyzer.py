"""The lake's analyzer identity: one grouping key per lake, whichever machine analyzes it."""

from __future__ import annotations

import socket

from tasks.publish.analyzer import analyzer_id, analyzer_limit, is_object_store
from tasks.publish.pushgateway import PushgatewayConfig


def test_an_object_store_lake_has_one_analyzer_id_on_every_machine():
    first = analyzer_id("s3://bucket/lake", {})
    assert first.startswith("lake-") and first == analyzer_id("s3://bucket/lake/", {})
    assert first != analyzer_id("s3://bucket/other", {})
    assert PushgatewayConfig.from_env({}, lake_root="s3://bucket/lake").grouping_key["instance"] == first


def test_a_local_lake_is_its_hosts_and_the_environment_overrides_both():
    assert analyzer_id("/data", {}) == socket.gethostname()
    assert analyzer_id("s3://bucket/lake", {"LOADTEST_HARNESS_ID": "h-1"}) == "h-1"


def test_the_limit_name_is_safe_and_per_lake():
    assert analyzer_limit("s3://b/l", {"LOADTEST_HARNESS_ID": "Host A/1"}) == "analyzer-host_a_1"
    assert analyzer_limit("s3://b/l", {}).startswith("analyzer-lake-")


def test_an_object_store_lake_is_told_apart_from_a_folder():
    assert is_object_store("s3://b/l") and not is_object_store("/tmp/x")


def test_a_lake_knows_its_url_for_the_analyzer_key(tmp_path, monkeypatch):
    from analytics.lake import Lake

    assert analyzer_id(Lake(tmp_path).url, {}) == socket.gethostname()
