"""The proof: every panel query of the dashboard returns data from a real Prometheus after a demo.

A real Pushgateway and a real Prometheus (the Debian packages, loopback ports) are started;
Prometheus runs deployments/prometheus.yml (honor_labels, the alert rules) with a 1 s scrape and
evaluation interval. A small lake is landed: eight days of generated runs (analytics/history.py) on three orchestrators and four
scenarios (one of them regressed today, one orchestrator failing half its runs), plus real
sessions against the simulator (healthy, black output, no capacity) and a few measured relay runs on
every orchestrator (generated runs are never leaderboard jobs, so these feed the leaderboard
panel: ten on one orchestrator, so its live-video score is ranked; their Scope events came from
Kafka, complete or with findings, or had no source, which feeds the event parity panels). The analyze computation
pushes its gauges; once Prometheus has scraped them, every panel target is interpolated the way
Grafana's Prometheus datasource does it (All, one value, two values; both windows) and asked
through the HTTP API (instant or range, as the panel asks). Each must return series, with the
labels its legend names. The alert rules must evaluate cleanly on the same series.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from analytics.history import HistorySpec, Injection, OrchestratorShape, ScenarioShape, generate_history
from analytics.history import land_history as land_generated
from analytics.lake import Lake
from analytics.metrics import build_registry
from analytics.records import RunRecord
from flows.analyze import analyze_snapshot, land_analysis, read_snapshot, score_leaderboard
from tasks.publish.pushgateway import PushgatewayConfig, publish_metrics
from tasks.scope.client import ScopeTimeouts
from tests.conftest import DEMO_CONFIG
from tests.dashboards.dashboard_model import (
    ALERT_RULES, ALL, PROMETHEUS_CONFIG, Target, interpolate, load_dashboard, targets, variables,
)
from tests.integration.pushgateway import LOOPBACK, free_port, running_pushgateway
from tests.integration.sessions import run_on_simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROMETHEUS = Path("/usr/bin/prometheus")
HARNESS = "dashboard-proof"
HTTP_TIMEOUT_S = 5.0
WAIT_S = 20.0
ORCHESTRATORS = ("0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20)
FAILING = ORCHESTRATORS[2]  # fails 40 % of its runs, half of its longlive runs today
# (scenario, pipeline, mode): names as config/demo.yaml expands them; "+" exercises regex escaping
SCENARIOS = (("longlive_t2v_15s", "longlive", "t2v"), ("longlive_i2v_15s", "longlive", "i2v"),
             ("ltx2_t2v_15s", "ltx2", "t2v"), ("longlive_rife_v2v_15s", "longlive+rife", "v2v"))
REGRESSED = "ltx2_t2v_15s"  # its first frame is ~2.3x slower in the last 24 h
FAST_TIMEOUTS = ScopeTimeouts(connect_s=2.0, read_s=1.5, frame_s=1.5, upload_s=30.0)
DASHBOARD = load_dashboard()
TARGETS = targets(DASHBOARD)


# --- the lake ----------------------------------------------------------------------------------

def history_spec(now: dt.datetime) -> HistorySpec:
    """Eight days of every orchestrator x scenario (generated): REGRESSED slower and FAILING failing today."""
    steady = (("passed", 0.9), ("unavailable", 0.05), ("aborted", 0.05))
    orchestrators = tuple(OrchestratorShape(address, connect_s=0.45, load_s=0.65, first_frame_s=0.45,
                                            outcomes=(("passed", 0.6), ("failed", 0.4)) if address == FAILING
                                            else steady) for address in ORCHESTRATORS)
    scenarios = tuple(ScenarioShape(name, pipeline, mode, 15.0, 12.0, duration_class="15s")
                      for name, pipeline, mode in SCENARIOS)
    injections = (Injection(scenario=REGRESSED, metric="first_frame_s", factor=2.4),
                  Injection(orchestrator=FAILING, pipeline="longlive", failed_share=0.5))
    return HistorySpec(orchestrators, scenarios, now, days=8, runs_per_day=6, injections=injections,
                       cold_start_share=0.2, seed=9)


def land_history(lake: Lake, now: dt.datetime) -> None:
    """The generated history: 12 verdicts a day on FAILING x longlive, fewer or passing on every other pair."""
    land_generated(lake, generate_history(history_spec(now)))


# orchestrator -> (passed relay runs in the last hours, its region): the first is ranked (10 jobs),
# FAILING's are longlive runs, whose 24 h pass ratio stays under the alert's 80 %.
RELAY_JOBS = {ORCHESTRATORS[0]: (10, "FRA"), ORCHESTRATORS[1]: (3, None), FAILING: (3, "LAX")}
# The i-th relay run's events, cycling: from Kafka and complete, from Kafka with findings, no source.
EVENT_FINDINGS = (("missing: stream_heartbeat",), ("late: session_closed 12 s after the session",
                                                    "ttff_disagrees: playback_ready says 1.20 s, 0.45 s measured"))


def relay_events(i: int) -> dict:
    """The audit columns of the i-th relay run of an orchestrator (every orchestrator has one of each)."""
    if i % 3 == 2:
        return {"events_source": "none"}
    findings = EVENT_FINDINGS[i // 3 % len(EVENT_FINDINGS)] if i % 3 == 1 else ()
    return {"events_source": "kafka", "events_seen": 12, "events_findings": findings, "events_complete": not findings}


def land_relay_jobs(lake: Lake, now: dt.datetime) -> None:
    """Measured relay runs (the leaderboard's jobs), at the history's baseline first frame so no drift moves."""
    for orchestrator, (count, region) in RELAY_JOBS.items():
        for i in range(count):
            started = now - dt.timedelta(hours=1 + i / 4)
            lake.land_run(RunRecord(
                run_id=f"relay-{orchestrator[-4:]}-{i}", state="final", scenario="longlive_t2v_15s",
                pipeline="longlive", mode="t2v", duration_class="15s", planned_duration_s=15.0, hard_cap_s=600.0,
                orchestrator=orchestrator, region=region, scope_instance="sim", harness_version="test",
                started_at=started, ended_at=started + dt.timedelta(seconds=40), outcome="passed",
                media_path="relay", media_driver="webrtc", first_frame_s=0.45, connect_s=0.45, load_s=0.65,
                fps_received=12.0, fps_steady=12.0, expected_fps=12.0, stream_s=15.0, cold_start=False,
                **relay_events(i),
            ))


async def real_runs(lake: Lake, settings) -> list[RunRecord]:
    """Short real sessions against the simulator: healthy, black output, no capacity."""
    cases = (("healthy", None, ORCHESTRATORS[0]), ("black", {"fault_after_s": 1.0}, ORCHESTRATORS[1]),
             ("no_capacity", None, ORCHESTRATORS[2]))

    async def one(profile, overrides, orchestrator):
        record, _ = await run_on_simulator(settings, lake, profile=profile, overrides=overrides, duration_s=5.0,
                                           orchestrator=orchestrator, timeouts=FAST_TIMEOUTS)
        return record

    return list(await asyncio.gather(*(one(*case) for case in cases)))


def analyze_and_push(lake: Lake, gateway_url: str) -> float:
    """What the analyze flow computes and pushes (without Prefect); the pushed timestamp."""
    snapshot = read_snapshot(str(DEMO_CONFIG), lake=lake)
    analysis = analyze_snapshot(snapshot, score_leaderboard(snapshot))
    land_analysis(lake, analysis)
    pushed_at = dt.datetime.now(dt.timezone.utc)
    result = publish_metrics(build_registry(analysis, pushed_at=pushed_at),
                             PushgatewayConfig(url=gateway_url, instance=HARNESS), lake.root / "metrics.prom")
    assert result.ok, result.error
    return pushed_at.timestamp()


# --- Prometheus --------------------------------------------------------------------------------

def prometheus_config(gateway_url: str) -> dict:
    """deployments/prometheus.yml with a 1 s rhythm, the test gateway as target, the rules by absolute path."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERT_RULES)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [gateway_url.removeprefix("http://")]}]
    return config


@contextmanager
def running_prometheus(gateway_url: str, workdir: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping the gateway; its URL."""
    assert PROMETHEUS.exists(), "prometheus missing: install the Debian package prometheus (make test does)"
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(gateway_url)), encoding="utf-8")
    url = f"http://{LOOPBACK}:{free_port()}"
    args = [str(PROMETHEUS), f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for(lambda: _ready(url, process, log), "prometheus ready")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _ready(url: str, process: subprocess.Popen, log) -> bool:
    """/-/ready answers 200; RuntimeError with the log when the process died."""
    if process.poll() is not None:
        log.seek(0)
        raise RuntimeError(f"prometheus exited with {process.returncode}: {log.read()[-2000:].decode()}")
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition, what: str, timeout_s: float = WAIT_S):
    """Poll `condition` until it returns something truthy (returned); AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass(frozen=True)
class PrometheusApi:
    """Prometheus's HTTP API through one client (a new client per call costs ~50 ms of TLS set-up)."""

    url: str
    http: httpx.Client

    def get(self, path: str, **params) -> dict | list:
        """GET /api/v1/<path>; its `data`."""
        response = self.http.get(f"{self.url}/api/v1/{path}", params=params)
        assert response.status_code == 200, f"{path} {params}: {response.status_code} {response.text[:500]}"
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def evaluate(self, target: Target, expr: str) -> list[dict]:
        """The target's series, asked the way Grafana asks: one instant, or a range over the last 20 s."""
        if target.instant:
            return self.get("query", query=expr)["result"]
        end = time.time()
        return self.get("query_range", query=expr, start=end - 20, end=end, step=1)["result"]


# --- the stack ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stack:
    """The running Prometheus, the lake behind it and the selections to try."""

    prometheus: PrometheusApi
    lake: Lake
    selections: dict[str, dict]
    real: list[RunRecord]


def _pushed_and_scraped(prometheus: PrometheusApi, pushed_at: float) -> bool:
    """Prometheus holds the push timestamp of this very push (so every family of it is scraped)."""
    result = prometheus.get("query", query="scope_loadtest_push_timestamp_seconds")["result"]
    return any(float(r["value"][1]) == pushed_at and r["metric"].get("instance") == HARNESS for r in result)


def choose_selections(prometheus: PrometheusApi) -> dict[str, dict]:
    """All; one real (orchestrator, pipeline, mode) with failures today; two of them (a "+" pipeline first)."""
    series = prometheus.get("series", **{"match[]": 'scope_loadtest_runs{window="24h", outcome="failed"}'})
    keyed = sorted({(s["orchestrator"], s["pipeline"], s["mode"]) for s in series}, key=lambda k: ("+" not in k[1], k))
    first = keyed[0]
    second = next(k for k in keyed if k[0] != first[0] and k[1] != first[1] and k[2] != first[2])
    names = ("orchestrator", "pipeline", "mode")
    return {
        "all": {name: ALL for name in names},
        "one": dict(zip(names, first)),
        "two": {name: [a, b] for name, a, b in zip(names, first, second)},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory, demo_settings) -> Iterator[Stack]:
    """Lake landed, real sessions run, gateway and Prometheus up, the analysis pushed and scraped."""
    workdir = tmp_path_factory.mktemp("dashboard-proof")
    lake = Lake(workdir / "data")
    land_history(lake, dt.datetime.now(dt.timezone.utc))
    land_relay_jobs(lake, dt.datetime.now(dt.timezone.utc))
    real = asyncio.run(real_runs(lake, demo_settings))
    with (running_pushgateway() as gateway, running_prometheus(gateway.url, workdir) as url,
          httpx.Client(timeout=HTTP_TIMEOUT_S) as http):
        prometheus = PrometheusApi(url, http)
        pushed_at = analyze_and_push(lake, gateway.url)
        wait_for(lambda: _pushed_and_scraped(prometheus, pushed_at), "the push to be scraped")
        yield Stack(prometheus, lake, choose_selections(prometheus), real)


# --- the proof ---------------------------------------------------------------------------------

def legend_labels(target: Target) -> set[str]:
    """Labels the legend format names ({{label}})."""
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", str(target.target.get("legendFormat") or "")))


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_every_panel_query_returns_data(stack, target):
    declared = variables(DASHBOARD)
    problems = []
    for label, selection in stack.selections.items():
        for window in ("24h", "7d"):
            expr = interpolate(target.expr, declared, selection | {"window": window})
            result = stack.prometheus.evaluate(target, expr)
            if not result:
                problems.append(f"no data with {label}, window {window}: {expr}")
            missing = {name for series in result for name in legend_labels(target) - series["metric"].keys()}
            if missing:
                problems.append(f"legend labels {missing} absent with {label}, window {window}: {expr}")
    assert not problems, "\n".join(problems)


def test_the_real_sessions_landed_the_outcomes_the_simulator_was_told_to_give(stack):
    assert [r.outcome for r in stack.real] == ["passed", "failed", "unavailable"], [
        (r.outcome, r.checks_failed, r.failure_reason) for r in stack.real]
    assert stack.real[1].checks_failed[0] == "black"


def test_variable_queries_offer_exactly_the_lakes_values(stack):
    """label_values(...) of each variable, asked as Grafana does (series API), equals the lake's runs of 7 days."""
    rows = stack.lake.query("SELECT DISTINCT orchestrator, pipeline, mode FROM runs WHERE outcome IS NOT NULL "
                            "AND started_at > now() - INTERVAL 7 DAY").rows
    declared = variables(DASHBOARD)
    for selection in stack.selections.values():
        for index, name in enumerate(("orchestrator", "pipeline", "mode")):
            query = interpolate(declared[name]["query"], declared, selection)
            selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query).groups()
            offered = {s[label] for s in stack.prometheus.get("series", **{"match[]": selector})}
            chosen = {key: selection[key] for key in ("orchestrator", "pipeline", "mode")[:index]}
            expected = {row[index] for row in rows if _matches(row, chosen)}
            assert offered == expected, f"{name} with {chosen}"


def _matches(row: tuple, chosen: dict) -> bool:
    """The lake row (orchestrator, pipeline, mode) fits the earlier variables' selections."""
    for position, name in enumerate(("orchestrator", "pipeline", "mode")):
        value = chosen.get(name)
        if value is not None and value != ALL and row[position] not in ([value] if isinstance(value, str) else value):
            return False
    return True


def test_the_alert_rules_evaluate_on_the_pushed_series(stack):
    def alerts_settled():
        groups = stack.prometheus.get("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = rules and all(r["health"] == "ok" and r["lastEvaluation"][:4] != "0001" for r in rules)
        firing = {a["labels"]["alertname"] for a in stack.prometheus.get("alerts")["alerts"]}
        return evaluated and "ScopeLoadtestRegression" in firing and "ScopeLoadtestLowPassRatio" in firing and rules

    rules = wait_for(alerts_settled, "every rule evaluated and the expected alerts raised")
    assert {r["name"] for r in rules} == {"ScopeLoadtestRegression", "ScopeLoadtestLowPassRatio",
                                          "ScopeLoadtestStalePush", "ScopeLoadtestPushMissing"}
    alerts = [(a["labels"]["alertname"], a["state"], a["labels"]) for a in stack.prometheus.get("alerts")["alerts"]]
    regressions = [(labels["scenario"], labels["metric"]) for name, _, labels in alerts
                   if name == "ScopeLoadtestRegression"]
    assert regressions == [(REGRESSED, "first_frame_s")]
    low = [(labels["orchestrator"], labels["pipeline"], state) for name, state, labels in alerts
           if name == "ScopeLoadtestLowPassRatio"]
    assert low == [(FAILING, "longlive", "pending")]  # `for: 15m` has not run out
    assert not {name for name, _, _ in alerts} & {"ScopeLoadtestStalePush", "ScopeLoadtestPushMissing"}
