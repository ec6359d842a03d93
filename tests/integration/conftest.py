"""Fixtures for tests that talk to real processes."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API (SQLite in a temp dir) for every test that runs flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
