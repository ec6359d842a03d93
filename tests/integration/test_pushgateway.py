"""The analysis pushed to a real Prometheus Pushgateway: what it holds equals what the lake says.

A second push replaces the first under the same grouping key; another pusher's group is never
touched; an ad-hoc scenario run (no analyze) changes nothing on the gateway, and the next
analysis counts it. Lake figures are read back with SQL through the lake's own views, not with
the Polars code that computed the gauges.
"""

from __future__ import annotations

import datetime as dt
import gc
import random
import warnings

import pytest
from prometheus_client import CollectorRegistry, Gauge

from analytics.lake import Lake
from analytics.metrics import FAMILIES, PREFIX
from analytics.records import RunRecord
from flows.analyze import analyze_snapshot, land_analysis, read_snapshot, score_leaderboard
from tasks.publish.pushgateway import JOB, PushgatewayConfig, publish_metrics
from tests.conftest import DEMO_CONFIG
from tests.integration.pushgateway import running_pushgateway
from tests.integration.sessions import run_on_simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HARNESS = "harness-under-test"
OTHER = "another-harness"
ORCHESTRATORS = ("0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20)
SCENARIOS = (("longlive_t2v_15s", "longlive", "t2v"), ("ltx2_t2v_15s", "ltx2", "t2v"))
OUTCOMES = ("passed", "passed", "passed", "failed", "unavailable", "aborted")
# The i-th run's Scope events, cycling: Kafka complete, Kafka with findings, a file complete, no source, older row.
EVENTS = (
    {"events_source": "kafka", "events_seen": 12, "events_complete": True},
    {"events_source": "kafka", "events_seen": 9, "events_complete": False,
     "events_findings": ("missing: stream_heartbeat", "out_of_order: session_created before pipeline_loaded")},
    {"events_source": "file", "events_seen": 12, "events_complete": True},
    {"events_source": "none"},
    {},
)


@pytest.fixture(scope="module")
def gateway():
    with running_pushgateway() as gw:
        yield gw


@pytest.fixture(autouse=True)
def empty_gateway(gateway):
    """Every test starts from a gateway without groups (DELETE each group this module pushed)."""
    import httpx

    for group in gateway.groups():
        labels = group["labels"]
        path = "/".join(f"{k}/{v}" for k, v in labels.items() if k != "job")
        httpx.delete(f"{gateway.url}/metrics/job/{labels['job']}/{path}", timeout=5.0).raise_for_status()
    assert gateway.groups() == []


def land_runs(lake: Lake, count: int, *, seed: int, now: dt.datetime, prefix: str = "r") -> None:
    """`count` final runs over the last 8 days: every outcome, several orchestrators and scenarios, events audited."""
    rnd = random.Random(seed)
    for i in range(count):
        scenario, pipeline, mode = rnd.choice(SCENARIOS)
        outcome = rnd.choice(OUTCOMES)
        started = now - dt.timedelta(hours=rnd.uniform(0.1, 24 * 8))
        measured = outcome in ("passed", "failed")
        lake.land_run(RunRecord(
            run_id=f"{prefix}{i}", state="final", scenario=scenario, pipeline=pipeline, mode=mode,
            duration_class="15s", planned_duration_s=15.0, hard_cap_s=600.0, orchestrator=rnd.choice(ORCHESTRATORS),
            scope_instance="sim", harness_version="test", started_at=started,
            ended_at=started + dt.timedelta(seconds=40), outcome=outcome,
            failure_category={"failed": "runner", "unavailable": "orchestrator", "aborted": "harness"}.get(outcome),
            failure_phase="stream" if outcome == "failed" else None,
            first_frame_s=rnd.uniform(0.3, 2.0) if measured else None,
            load_s=rnd.uniform(1.0, 90.0) if measured else None,
            fps_steady=rnd.uniform(8.0, 14.0) if measured else None,
            stream_s=15.0 if measured else None, media_path="relay",  # relay runs: leaderboard jobs too
            **EVENTS[i % len(EVENTS)],
        ))


def analyze_and_push(lake: Lake, gateway_url: str, *, now: dt.datetime | None = None, instance: str = HARNESS):
    """What the analyze flow does, without Prefect: read, compute, land, push."""
    from analytics.metrics import build_registry

    snapshot = read_snapshot(str(DEMO_CONFIG), lake=lake, now=now)
    analysis = analyze_snapshot(snapshot, score_leaderboard(snapshot))
    land_analysis(lake, analysis)
    registry = build_registry(analysis, pushed_at=analysis.computed_at)
    result = publish_metrics(registry, PushgatewayConfig(url=gateway_url, instance=instance), lake.root / "m.prom")
    assert result.ok, result.error
    return analysis


def ours(gateway, name: str) -> dict[tuple, float]:
    """{label items without job/instance: value} of one family, from our group only; duplicates refused."""
    found: dict[tuple, float] = {}
    for sample in gateway.families(PREFIX + name).get(PREFIX + name, []):
        if sample.labels.get("instance") != HARNESS:
            continue
        assert sample.labels["job"] == JOB
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("job", "instance")))
        assert key not in found, f"duplicate series {name}{key}"
        found[key] = sample.value
    return found


def lake_run_counts(lake: Lake, hours: int, now: dt.datetime) -> dict[tuple, float]:
    """Runs per orchestrator x pipeline x mode x outcome started in the `hours` before `now`, by SQL."""
    rows = lake.query(
        "SELECT orchestrator, pipeline, mode, outcome, count(*) FROM runs WHERE outcome IS NOT NULL "
        f"AND started_at > TIMESTAMPTZ '{now.isoformat()}' - INTERVAL {hours} HOUR "
        f"AND started_at <= TIMESTAMPTZ '{now.isoformat()}' GROUP BY ALL").rows
    window = {24: "24h", 24 * 7: "7d"}[hours]
    return {(("mode", m), ("orchestrator", o), ("outcome", out), ("pipeline", p), ("window", window)): float(n)
            for o, p, m, out, n in rows}


def in_window(series: dict[tuple, float], window: str) -> dict[tuple, float]:
    """The series of one window label."""
    return {k: v for k, v in series.items() if ("window", window) in k}


def our_group_lines(gateway) -> list[str]:
    """Every line of GET /metrics that belongs to our grouping key (series and the gateway's push times)."""
    return [line for line in gateway.metrics_text().splitlines() if f'instance="{HARNESS}"' in line]


def test_the_gateway_holds_what_the_lake_says(tmp_path, gateway):
    lake = Lake(tmp_path / "data")
    land_runs(lake, 120, seed=5, now=dt.datetime.now(dt.timezone.utc))
    now = analyze_and_push(lake, gateway.url).computed_at
    assert [g["labels"] for g in gateway.groups()] == [{"job": JOB, "instance": HARNESS}]

    runs = ours(gateway, "runs")
    assert in_window(runs, "24h") == lake_run_counts(lake, 24, now)
    assert in_window(runs, "7d") == lake_run_counts(lake, 24 * 7, now)

    scores = lake.query("SELECT orchestrator, pipeline, wilson_low, passed, runs FROM scores").rows
    wilson = ours(gateway, "pass_ratio_wilson_low")
    ratio = ours(gateway, "pass_ratio")
    for orchestrator, pipeline, low, passed, total in scores:
        key = (("orchestrator", orchestrator), ("pipeline", pipeline), ("window", "7d"))
        assert wilson[key] == pytest.approx(low, rel=1e-12)
        assert ratio[key] == pytest.approx(passed / total, rel=1e-12)
    assert len(scores) == len([k for k in wilson if ("window", "7d") in k]) > 0

    baselines = lake.query("SELECT scenario, p50, p95 FROM baselines WHERE scope = 'scenario' "
                           "AND metric = 'first_frame_s'").rows
    first_frame = ours(gateway, "first_frame_seconds")
    for scenario, p50, p95 in baselines:
        assert first_frame[(("quantile", "0.5"), ("scenario", scenario), ("window", "7d"))] == p50
        assert first_frame[(("quantile", "0.95"), ("scenario", scenario), ("window", "7d"))] == p95

    last = dict(lake.query("SELECT orchestrator, epoch(max(ended_at)) FROM runs GROUP BY ALL").rows)
    assert {k[0][1]: v for k, v in ours(gateway, "last_run_timestamp_seconds").items()} == pytest.approx(last)
    assert sum(ours(gateway, "orchestrators").values()) == len(ORCHESTRATORS)
    jobs = lake.query(
        "SELECT orchestrator, pipeline, count_if(outcome <> 'unavailable') FROM runs "
        "WHERE outcome IN ('passed', 'failed', 'unavailable') "  # unavailable alone: a group of 0 jobs
        f"AND ended_at BETWEEN TIMESTAMPTZ '{now.isoformat()}' - INTERVAL 24 HOUR AND TIMESTAMPTZ '{now.isoformat()}' "
        "GROUP BY ALL").rows
    assert in_window(ours(gateway, "leaderboard_jobs"), "24h") == {
        (("model", p), ("orchestrator", o), ("region", "GLOBAL"), ("window", "24h")): float(n) for o, p, n in jobs}
    parity = lake.query(
        "SELECT orchestrator, count(*), avg(events_complete::INTEGER) FROM runs WHERE outcome IS NOT NULL "
        "AND events_source IN ('kafka', 'file') "
        f"AND started_at > TIMESTAMPTZ '{now.isoformat()}' - INTERVAL 24 HOUR "
        f"AND started_at <= TIMESTAMPTZ '{now.isoformat()}' GROUP BY ALL").rows
    assert parity, "no run with an events source in the last 24 h"
    assert in_window(ours(gateway, "events_audited_runs"), "24h") == {
        (("orchestrator", o), ("window", "24h")): float(n) for o, n, _ in parity}
    assert in_window(ours(gateway, "events_parity_ratio"), "24h") == pytest.approx({
        (("orchestrator", o), ("window", "24h")): ratio for o, _, ratio in parity}, rel=1e-12)
    pushed = {f.name for f in FAMILIES if ours(gateway, f.name)}
    assert pushed >= {f.name for f in FAMILIES} - {"connect_seconds", "drift_ratio", "regression"}


def test_a_second_push_replaces_the_first_and_leaves_other_groups_alone(tmp_path, gateway):
    stale = CollectorRegistry()
    Gauge(PREFIX + "coverage_ratio", "stale", ["orchestrator"], registry=stale).labels("0xgone").set(0.25)
    Gauge(PREFIX + "obsolete_family", "stale", registry=stale).set(1)
    for instance in (HARNESS, OTHER):
        assert publish_metrics(stale, PushgatewayConfig(url=gateway.url, instance=instance), tmp_path / "x").ok
    other_before = [g for g in gateway.groups() if g["labels"]["instance"] == OTHER]

    lake = Lake(tmp_path / "data")
    now = dt.datetime.now(dt.timezone.utc)
    land_runs(lake, 40, seed=7, now=now)
    analyze_and_push(lake, gateway.url)
    assert (("orchestrator", "0xgone"),) not in ours(gateway, "coverage_ratio")
    assert not ours(gateway, "obsolete_family")
    first = ours(gateway, "runs")

    land_runs(lake, 30, seed=8, now=now, prefix="second-")
    computed_at = analyze_and_push(lake, gateway.url).computed_at
    second = ours(gateway, "runs")
    assert in_window(second, "24h") == lake_run_counts(lake, 24, computed_at)
    assert in_window(second, "7d") == lake_run_counts(lake, 24 * 7, computed_at)
    assert sum(second.values()) > sum(first.values())
    other_after = [g for g in gateway.groups() if g["labels"]["instance"] == OTHER]
    assert other_after == other_before  # same families, same push time: untouched
    assert len(gateway.groups()) == 2


async def test_an_ad_hoc_run_changes_nothing_until_the_next_analysis(tmp_path, gateway, demo_settings):
    lake = Lake(tmp_path / "data")
    land_runs(lake, 30, seed=9, now=dt.datetime.now(dt.timezone.utc))
    analyze_and_push(lake, gateway.url)
    before_lines = our_group_lines(gateway)
    before = ours(gateway, "runs")

    record, _ = await run_on_simulator(demo_settings, lake, duration_s=3.0, orchestrator=ORCHESTRATORS[0])
    assert record.outcome is not None
    assert our_group_lines(gateway) == before_lines  # run-scenario never pushes

    analyze_and_push(lake, gateway.url)
    after = ours(gateway, "runs")
    keys = [(("mode", "t2v"), ("orchestrator", ORCHESTRATORS[0]), ("outcome", record.outcome),
             ("pipeline", "longlive"), ("window", window)) for window in ("24h", "7d")]
    assert [after[key] for key in keys] == [before.get(key, 0.0) + 1 for key in keys]
    assert {k: v for k, v in after.items() if k not in keys} == {k: v for k, v in before.items() if k not in keys}
    assert [g["labels"]["instance"] for g in gateway.groups()] == [HARNESS]


async def read_artifact(key: str):
    """The latest artifact with this key."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        # every filter spelled out: this server refuses the nulls the client sends for omitted ones
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(), limit=1, sort=ArtifactSort.CREATED_DESC)
    assert len(artifacts) == 1, key
    return artifacts[0]


async def test_the_analyze_flow_pushes_lands_and_publishes_artifacts(tmp_path, gateway, prefect_api,
                                                                      monkeypatch):
    from flows.analyze import analyze

    lake = Lake(tmp_path / "data")
    land_runs(lake, 60, seed=11, now=dt.datetime.now(dt.timezone.utc))
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(lake.root))
    monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
    monkeypatch.setenv("LOADTEST_HARNESS_ID", HARNESS)
    with warnings.catch_warnings():
        # Prefect 3.8.8 leaks one sync API client per flow run (results._read_server_default_result_storage_block_id
        # calls get_client(sync_client=True) outside a context manager); collect it here, silently.
        warnings.simplefilter("ignore", ResourceWarning)
        summary = await analyze(config=str(DEMO_CONFIG))
        gc.collect()

    assert summary["published"]["ok"] and summary["published"]["target"] == "pushgateway"
    assert all(summary["landed"].values())
    assert ours(gateway, "runs") and ours(gateway, "push_timestamp_seconds")
    assert lake.query("SELECT count(*) FROM scores").rows[0][0] == summary["scores"] > 0
    drift, scores = await read_artifact("drift-report"), await read_artifact("orchestrator-scores")
    assert drift.type == "markdown" and str(drift.data).startswith("# Drift report")
    assert f"published to {gateway.url}" in str(drift.data)
    assert scores.type == "table" and ORCHESTRATORS[0] in str(scores.data)
