"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analytics.lake import Lake
from config.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
TEST_API_KEY = "sk-test-not-a-real-key-4f1d"  # a recognisable value so tests can prove it never leaks

# Prefect: no telemetry, no stray home directory in the developer's machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def demo_settings() -> Settings:
    """The demo configuration with a test cloud api key."""
    return load_settings(DEMO_CONFIG, environ={"SCOPE_CLOUD_API_KEY": TEST_API_KEY})


def with_thresholds(settings: Settings, **overrides: float) -> Settings:
    """The settings with some thresholds changed (frozen models: a copy)."""
    thresholds = settings.thresholds.model_copy(update=overrides)
    return settings.model_copy(update={"thresholds": thresholds})


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty lake in a temporary directory."""
    return Lake(tmp_path / "data")


@pytest.fixture(scope="session", autouse=True)
def _close_prefects_result_storage_client():
    """Prefect 3.8.8 opens a sync API client in `results._read_server_default_result_storage_block_id`
    on every flow run and never closes it; its socket is then collected during some later test, where
    `filterwarnings = error` turns the ResourceWarning into that test's failure. Read the same value
    with a client that is closed, so a leak of our own still fails the test that caused it."""
    import httpx
    from prefect import results
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    def read_closing():
        try:
            with get_client(sync_client=True) as client:
                return client.read_server_default_result_storage().default_result_storage_block_id
        except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
            return None

    original = results._read_server_default_result_storage_block_id
    results._read_server_default_result_storage_block_id = read_closing
    yield
    results._read_server_default_result_storage_block_id = original
