"""Discovery against the simulator's discovery server plus a dead source, through the code, the CLI and the flow."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.lake import DATA_DIR_ENV, Lake
from config.settings import load_settings
from deployments.cli import main
from simulator.testing import FleetHandle, running_fleet
from tasks.fleet.discovery import discover_orchestrators, land_discovery
from errors import Category

pytestmark = pytest.mark.integration
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    """Only the discovery server matters here: no Scope instances, six orchestrators of every kind."""
    with running_fleet(instances=0, orchestrators=6) as handle:
        yield handle


def dead_url() -> str:
    """A loopback URL on a port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/orchestrators"


def write_config(directory: Path, discovery: dict) -> Path:
    """A config file with only a discovery section (prompts and graphs from the shipped config)."""
    path = directory / "discover.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "prompts_dir": str(CONFIG_DIR / "prompts"), "graphs_dir": str(CONFIG_DIR / "graphs"),
        "discovery": {"timeout_s": 5, **discovery},
    }))
    return path


def fleet_config(directory: Path, fleet: FleetHandle) -> Path:
    """Every source of the fleet plus one dead JSON list."""
    return write_config(directory, {
        "gateway_urls": [fleet.discovery_url],
        "registered_orchestrators_urls": [fleet.discovery_url],
        "json_list_urls": [f"{fleet.discovery_url}/orchestrators", dead_url()],
    })


def scope_orchestrators(fleet: FleetHandle) -> dict[str, dict]:
    return {o["address"]: o for o in fleet.orchestrators if o["offers_scope"]}


def test_live_sources_count_when_one_is_dead_and_snapshots_land(fleet: FleetHandle, tmp_path: Path) -> None:
    settings = load_settings(fleet_config(tmp_path, fleet))
    result = asyncio.run(discover_orchestrators(settings.discovery))
    assert [(s.source, s.ok) for s in result.sources] == [
        ("gateway", True), ("registered", True), ("json_url", True), ("json_url", False)]
    assert result.sources[-1].failure_category == Category.NETWORK
    expected = scope_orchestrators(fleet)
    assert set(result.not_scope) == {o["address"] for o in fleet.orchestrators if not o["offers_scope"]}

    lake = Lake(tmp_path / "data")
    land_discovery(lake, result)
    rows = lake.query("SELECT address, uri, region, source, capacity, capacity_in_use, offers_scope, gpu_name "
                      "FROM orchestrators").dicts()
    assert {r["address"] for r in rows} == set(expected)
    for row in rows:
        orchestrator = expected[row["address"]]
        assert (row["uri"], row["region"]) == (orchestrator["orch_uri"], orchestrator["region"])
        assert row["capacity"] == orchestrator["capacity"]
        assert row["capacity_in_use"] == orchestrator["capacity_in_use"]
        assert row["source"] == "gateway+registered+json_url" and row["offers_scope"] and row["gpu_name"]


def test_cli_prints_and_lands_the_orchestrators(fleet: FleetHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    config = fleet_config(tmp_path, fleet)
    assert main(["discover", "--config", str(config), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {o["address"] for o in printed["orchestrators"]} == set(scope_orchestrators(fleet))
    assert printed["counts"]["sources_failed"] == 1 and printed["landed"]
    landed = Lake(tmp_path / "data").query("SELECT address FROM orchestrators").rows
    assert {address for (address,) in landed} == set(scope_orchestrators(fleet))

    assert main(["discover", "--config", str(config), "--no-land"]) == 0
    text = capsys.readouterr().out
    assert all(address in text for address in scope_orchestrators(fleet)) and "landed: nothing" in text
    assert len(list((tmp_path / "data" / "lake" / "orchestrators").rglob("*.parquet"))) == 1


def test_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    all_dead = write_config(tmp_path, {"gateway_urls": [dead_url()], "json_list_urls": [dead_url()]})
    assert main(["discover", "--config", str(all_dead)]) == 1
    assert "no" in capsys.readouterr().out  # the sources table says ok: no
    no_sources = write_config(tmp_path, {})
    assert main(["discover", "--config", str(no_sources)]) == 2
    assert "no discovery source configured" in capsys.readouterr().err


@pytest.mark.slow
async def test_discover_flow_lands_and_publishes(prefect_api: None, fleet: FleetHandle, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowRunFilter, TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.discover import ARTIFACT_KEY, discover

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    with warnings.catch_warnings():
        # Prefect 3.8.8's flow engine reads the server's default result storage with a sync client it never
        # closes (prefect/results.py); collect that socket here so it cannot fail a later test.
        warnings.filterwarnings("ignore", "unclosed <socket.socket", ResourceWarning)
        state = await discover(config=str(fleet_config(tmp_path, fleet)), return_state=True)
        gc.collect()
    counts = await state.result()
    assert counts["orchestrators"] == len(scope_orchestrators(fleet)) and counts["sources_failed"] == 1
    assert Path(counts["landed"]).exists()
    landed = Lake(tmp_path / "data").query("SELECT address FROM orchestrators").rows
    assert {address for (address,) in landed} == set(scope_orchestrators(fleet))
    async with get_client() as client:
        # every filter spelled out: this server refuses the nulls the client sends for omitted ones
        this_run = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]), flow_run_id=this_run),
            flow_run_filter=FlowRunFilter(), task_run_filter=TaskRunFilter(), limit=10, sort=ArtifactSort.CREATED_DESC,
        )
    assert len(artifacts) == 1
    assert all(address in artifacts[0].data for address in scope_orchestrators(fleet))
