"""Fixtures for tests that talk to real processes.

Every flow of the session, in-process or in a CLI subprocess, runs against one real
`prefect server start` (`prefect_server`, started once, 9-12 s idle and given 90 s on a busy
machine): no test depends on a temporary Prefect API starting within Prefect's own timeout.
"""

from __future__ import annotations

import pytest

from tests.integration.prefect_server import PrefectServer, prefect_server  # noqa: F401 - the session's server


@pytest.fixture(scope="session")
def prefect_api(prefect_server: PrefectServer, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """In-process flows run against the session's Prefect server (PREFECT_API_URL), with a temp PREFECT_HOME."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_HOME", str(home))
        env.setenv("PREFECT_API_URL", prefect_server.api_url)
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url, PREFECT_HOME: str(home)}):
            yield
            _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds while the server is up (as prefect_test_harness does)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            logs = APILogWorker.instance().drain()
        except RuntimeError:  # never started: no flow logged anything
            logs = None
        for result in (logs, EventsWorker.drain_all()):
            if inspect.isawaitable(result):
                await result

    run_coro_as_sync(drain())
