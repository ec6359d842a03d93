"""Publishing: PUT under the grouping key, retries with back-off, basic auth, the file fallback, artifacts.

The gateway here is a scripted loopback HTTP server (answers chosen per test); the real
Pushgateway is exercised in tests/integration/test_pushgateway.py.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
from prometheus_client import CollectorRegistry, Gauge

from analytics.drift import compute_drift
from analytics.metrics import exposition_text
from analytics.scores import INSUFFICIENT_EVIDENCE, compute_scores
from tasks.publish.pushgateway import (
    JOB, METRICS_FILE_NAME, PublishResult, PushgatewayConfig, drift_report, harness_id, publish_metrics,
    publish_metrics_task, scores_table_rows,
)
from tests.analytics.test_metrics import analysis_of
from tests.analytics.test_scores import NOW, frame, run

SECRET = "pw-never-shown-71c3"
HANG_RELEASE_S = 5.0


@dataclass
class Script:
    """What the stub gateway answers (one status per request, the last one repeats) and what it saw."""

    statuses: list[int]
    hang: threading.Event | None = None  # set: answer; unset: keep the client waiting
    requests: list[dict] = field(default_factory=list)


@contextmanager
def stub_gateway(script: Script) -> Iterator[str]:
    """A loopback HTTP server that records each request and answers from the script."""

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            script.requests.append({"method": "PUT", "path": self.path, "body": body,
                                    "authorization": self.headers.get("Authorization")})
            if script.hang is not None:
                script.hang.wait(HANG_RELEASE_S)
            index = min(len(script.requests), len(script.statuses)) - 1
            self.send_response(script.statuses[index])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if script.hang is not None:
            script.hang.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def registry() -> CollectorRegistry:
    """A small registry with one labelled gauge."""
    reg = CollectorRegistry()
    Gauge("scope_loadtest_coverage_ratio", "test", ["orchestrator"], registry=reg).labels("0xa").set(0.5)
    return reg


def config(url: str, **fields) -> PushgatewayConfig:
    return PushgatewayConfig(url=url, instance="harness-1", **fields)


class Sleeps(list):
    """An injected sleep that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_push_is_a_put_under_the_grouping_key(tmp_path):
    script = Script([200])
    with stub_gateway(script) as url:
        result = publish_metrics(registry(), config(url), tmp_path / METRICS_FILE_NAME)
    assert result == PublishResult("pushgateway", True, 1, url, {"job": JOB, "instance": "harness-1"},
                                   bytes_sent=len(exposition_text(registry())))
    (request,) = script.requests
    assert request["path"] == f"/metrics/job/{JOB}/instance/harness-1"
    assert request["body"] == exposition_text(registry())
    assert request["authorization"] is None
    assert not (tmp_path / METRICS_FILE_NAME).exists()


def test_a_failing_push_is_retried_with_back_off(tmp_path):
    script, sleeps = Script([503, 502, 200]), Sleeps()
    with stub_gateway(script) as url:
        result = publish_metrics(registry(), config(url), tmp_path / "m.prom", sleep=sleeps)
    assert (result.ok, result.attempts, len(script.requests)) == (True, 3, 3)
    assert sleeps == [1.0, 2.0]


def test_giving_up_is_logged_and_returned_never_raised(tmp_path, caplog):
    script, sleeps = Script([500]), Sleeps()
    with caplog.at_level(logging.WARNING, logger="tasks.publish.pushgateway"), stub_gateway(script) as url:
        result = publish_metrics(registry(), config(url, backoff_s=(1.0, 2.0, 4.0)), tmp_path / "m.prom",
                                 sleep=sleeps)
    assert (result.ok, result.attempts, len(script.requests)) == (False, 4, 4)
    assert sleeps == [1.0, 2.0, 4.0]
    assert "500" in result.error
    assert any(r.levelno == logging.ERROR and "giving up" in r.getMessage() for r in caplog.records)


def test_a_rejected_payload_is_not_retried(tmp_path):
    script, sleeps = Script([400]), Sleeps()
    with stub_gateway(script) as url:
        result = publish_metrics(registry(), config(url), tmp_path / "m.prom", sleep=sleeps)
    assert (result.ok, result.attempts, sleeps) == (False, 1, [])


def test_a_hanging_gateway_times_out(tmp_path):
    script = Script([200], hang=threading.Event())
    with stub_gateway(script) as url:
        result = publish_metrics(registry(), config(url, timeout_s=0.2, backoff_s=(0.0,)), tmp_path / "m.prom")
    assert (result.ok, result.attempts) == (False, 2)
    assert "timed out" in result.error.lower()


def test_an_unreachable_gateway_is_a_result_not_an_exception(tmp_path):
    with stub_gateway(Script([200])) as url:
        pass  # closed again: nothing listens on its port now
    result = publish_metrics(registry(), config(url, backoff_s=(0.0,)), tmp_path / "m.prom")
    assert (result.ok, result.attempts) == (False, 2)


def test_basic_auth_from_the_environment_and_the_password_never_shown(tmp_path, caplog):
    script = Script([401])
    with stub_gateway(script) as url:
        cfg = PushgatewayConfig.from_env({"PUSHGATEWAY_URL": url, "PUSHGATEWAY_USERNAME": "loadtest",
                                          "PUSHGATEWAY_PASSWORD": SECRET, "LOADTEST_HARNESS_ID": "h-7"})
        with caplog.at_level(logging.DEBUG):
            result = publish_metrics(registry(), cfg, tmp_path / "m.prom")
    expected = "Basic " + base64.b64encode(f"loadtest:{SECRET}".encode()).decode()
    assert script.requests[0]["authorization"] == expected
    assert script.requests[0]["path"] == f"/metrics/job/{JOB}/instance/h-7"
    assert SECRET not in repr(cfg) and SECRET not in repr(result) and SECRET not in caplog.text


def test_environment_defaults():
    cfg = PushgatewayConfig.from_env({"PUSHGATEWAY_URL": ""})
    assert cfg.url is None and cfg.username is None
    assert cfg.instance == harness_id({}) != ""
    assert PushgatewayConfig.from_env({"LOADTEST_HARNESS_ID": "x"}).grouping_key == {"job": JOB, "instance": "x"}


def test_without_a_gateway_the_same_text_goes_to_the_metrics_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PUSHGATEWAY_URL", raising=False)
    result = publish_metrics_task.fn(registry(), tmp_path / "data")
    path = tmp_path / "data" / METRICS_FILE_NAME
    assert (result.target, result.ok, result.location) == ("file", True, str(path))
    assert path.read_bytes() == exposition_text(registry())
    assert [p.name for p in path.parent.iterdir()] == [METRICS_FILE_NAME]  # no temp file left behind


def test_an_unwritable_metrics_file_is_a_result_not_an_exception(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = publish_metrics(registry(), PushgatewayConfig(url=None, instance="h"), blocker / METRICS_FILE_NAME)
    assert (result.target, result.ok) == ("file", False)
    assert result.error


def test_scores_table_says_insufficient_evidence():
    rows = [run(i, orchestrator="0xa") for i in range(10)] + [run(100, orchestrator="0xb")]
    table = {r["orchestrator"]: r for r in scores_table_rows(compute_scores(frame(rows), now=NOW))}
    assert table["0xb"]["score"] == INSUFFICIENT_EVIDENCE
    assert table["0xa"]["score"] != INSUFFICIENT_EVIDENCE and table["0xa"]["runs"] == 10
    assert table["0xb"]["wilson_95"].startswith("[0.207, ")


def test_drift_report_says_where_the_metrics_went():
    analysis = analysis_of([run(i) for i in range(3)])
    failed = PublishResult("pushgateway", False, 4, "http://gw:9091", {"job": JOB, "instance": "h"}, error="boom")
    report = drift_report(analysis, failed)
    assert report.startswith("# Drift report")
    assert "NOT published (boom) to http://gw:9091" in report
    assert drift_report(analysis) == drift_report(analysis, None)
    assert compute_drift(pl.DataFrame(analysis.runs), now=NOW).height == analysis.drift.height


def test_credentials_written_into_the_gateway_url_become_basic_auth_and_are_never_shown(tmp_path, caplog):
    script = Script([500])
    with stub_gateway(script) as url:
        with_credentials = url.replace("http://", f"http://loadtest:{SECRET}@")
        with caplog.at_level(logging.DEBUG):
            result = publish_metrics(registry(), config(with_credentials, backoff_s=()), tmp_path / "m.prom")
    expected = "Basic " + base64.b64encode(f"loadtest:{SECRET}".encode()).decode()
    assert script.requests[0]["authorization"] == expected
    assert result.location == url
    assert SECRET not in repr(result) and SECRET not in caplog.text
