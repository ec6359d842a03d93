"""The `loadtest` command line: exit codes, one-line errors, JSON output, and real runs through Prefect.

Quick commands run in-process through `main(argv)`; the real runs start the console script in
subprocesses, all at the same time, against the session's shared Prefect server (PREFECT_API_URL),
so none waits for a temporary Prefect API to start.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from analytics.lake import Lake
from analytics.records import RunRecord
from config.settings import load_settings
from deployments.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from simulator.testing import running_simulator
from tests.conftest import DEMO_CONFIG, TEST_API_KEY
from tests.integration.prefect_server import PrefectServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(200)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "longlive_t2v_15s"
ORCHESTRATOR = "0x" + "12" * 20
MIXED_CASE_ORCHESTRATOR = "0x" + "aB" * 20
RUN_TIMEOUT_S = 150.0
COUNT_SQL = "select outcome, count(*) from runs group by 1"
PREFECT_INFO = "| INFO    |"  # how Prefect's console handler writes an INFO line
PHASES = ("prepare", "connect", "load", "start", "stream", "cleanup")
DEAD_PREFECT_API = "http://127.0.0.1:9/api"  # nothing listens: any Prefect work would fail differently


def loadtest_command() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("loadtest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deployments.cli"]


def start(args: list[str], server: PrefectServer, data_dir: Path) -> subprocess.Popen:
    """`loadtest <args>` against the shared Prefect server, with the test api key."""
    env = server.client_env(LOADTEST_DATA_DIR=str(data_dir), SCOPE_CLOUD_API_KEY=TEST_API_KEY)
    return subprocess.Popen([*loadtest_command(), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(child: subprocess.Popen) -> dict:
    try:
        stdout, stderr = child.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        child.kill()
    return {"rc": child.returncode, "stdout": stdout, "stderr": stderr}


@pytest.fixture(scope="module")
def cli_runs(prefect_server, tmp_path_factory):
    """`loadtest run --json` on a healthy and a no-capacity instance (--verbose), and with an unknown scenario."""
    root = tmp_path_factory.mktemp("cli")
    data_dir = root / "data"
    common = ["--config", str(DEMO_CONFIG), "--duration-s", "4", "--json"]
    with running_simulator("healthy") as healthy, running_simulator("no_capacity") as busy:
        children = {
            "healthy": start(["run", "--scenario", SCENARIO, "--scope-url", healthy.url,
                              "--orchestrator", MIXED_CASE_ORCHESTRATOR, *common], prefect_server, data_dir),
            "busy": start(["run", "--scenario", SCENARIO, "--scope-url", busy.url, "--orchestrator", ORCHESTRATOR,
                           "--verbose", *common], prefect_server, data_dir),
            "nope": start(["run", "--scenario", "nope", "--scope-url", healthy.url, *common], prefect_server, data_dir),
            "refused": start(["run", "--scenario", REFUSED_SCENARIO, "--scope-url", healthy.url, "--config",
                              str(refusing_config(root)), "--duration-s", "4"], prefect_server, root / "refused"),
        }
        results = {name: finish(child) for name, child in children.items()}
        results["healthy"]["truth"] = healthy.truth()
    results["data_dir"] = data_dir
    results["flow_runs"] = prefect_server.post("/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", "limit": 200}).json()
    return results


REFUSED_SCENARIO = "nosuch_pipe_t2v_15s"


def refusing_config(folder: Path) -> Path:
    """The demo config plus a pipeline no Scope knows: the instance's schemas refuse its scenario."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["prompts_dir"], raw["graphs_dir"] = str(DEMO_CONFIG.parent / "prompts"), str(DEMO_CONFIG.parent / "graphs")
    raw["pipelines"]["nosuch-pipe"] = {"pipeline_ids": ["nosuch-pipe"], "modes": ["t2v"], "expected_fps": 10}
    raw["scenarios"].append({"pipeline": "nosuch-pipe", "modes": ["t2v"], "durations": [0.25],
                             "prompts_pool": "nature"})
    path = folder / "refusing.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def only_json_object(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    summary = json.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


# --- real runs ----------------------------------------------------------------------------------


def test_a_passing_run_exits_0_with_one_json_summary(cli_runs):
    result = cli_runs["healthy"]
    assert result["rc"] == EXIT_OK, result["stderr"][-3000:]
    summary = only_json_object(result["stdout"])
    assert summary["outcome"] == "passed"
    assert summary["scenario"] == SCENARIO
    assert summary["orchestrator"] == MIXED_CASE_ORCHESTRATOR.lower()  # one orchestrator is one spelling
    assert summary["frames_sampled"] > 0
    assert result["truth"]["active_session"] is False and result["truth"]["leaked_sessions"] == 0


def test_a_run_shows_each_phase_without_prefects_info_lines(cli_runs):
    stderr = cli_runs["healthy"]["stderr"]
    assert PREFECT_INFO not in stderr, stderr[-3000:]
    for phase in PHASES:
        assert f" {phase}…" in stderr, (phase, stderr[-3000:])
    assert " stream: t=" in stderr  # a line while streaming, not only at the phases


def test_verbose_shows_prefects_own_log_lines(cli_runs):
    assert PREFECT_INFO in cli_runs["busy"]["stderr"]


def test_a_run_without_capacity_exits_1_as_unavailable(cli_runs):
    result = cli_runs["busy"]
    assert result["rc"] == EXIT_FAILED, result["stderr"][-3000:]
    summary = only_json_object(result["stdout"])
    assert summary["outcome"] == "unavailable"
    assert summary["failure_category"] == "orchestrator"
    assert summary["checks_failed"] == []


@pytest.mark.parametrize("name", ["healthy", "busy", "nope"])
def test_the_api_key_never_appears_in_the_output(cli_runs, name):
    result = cli_runs[name]
    assert TEST_API_KEY not in result["stdout"]
    assert TEST_API_KEY not in result["stderr"]


def test_both_runs_landed_in_the_lake(cli_runs, monkeypatch, capsys):
    ids = {only_json_object(cli_runs[name]["stdout"])["run_id"]: name for name in ("healthy", "busy")}
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(cli_runs["data_dir"]))
    assert main(["sql", "select run_id, outcome, prefect_flow_run_id from runs", "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in rows} == set(ids)
    assert {r["outcome"] for r in rows} == {"passed", "unavailable"}
    assert all(r["prefect_flow_run_id"] for r in rows)  # both went through the run-scenario flow


def test_an_unknown_scenario_exits_2_before_prefect_starts(cli_runs):
    result = cli_runs["nope"]
    assert result["rc"] == EXIT_USAGE
    assert result["stdout"] == ""
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and "unknown scenario 'nope'" in lines[0] and "loadtest scenarios" in lines[0], lines
    assert "config error" not in lines[0] and "Prefect" not in result["stderr"]
    scenarios = [run["parameters"].get("scenario") for run in cli_runs["flow_runs"]]
    assert "nope" not in scenarios and SCENARIO in scenarios  # no flow run was created for it


def test_a_scenario_the_instance_cannot_run_exits_2_with_one_line(cli_runs):
    """Scope's own schemas do not know the pipeline: a configuration error, not the orchestrator's failure."""
    result = cli_runs["refused"]
    assert result["rc"] == EXIT_USAGE, result["stderr"]
    last = result["stderr"].strip().splitlines()[-1]
    assert last.startswith("loadtest: --scenario:") and "unknown pipeline(s) nosuch-pipe" in last
    assert result["stdout"] == "" and "Traceback" not in result["stderr"]


# --- arguments checked before any Prefect work ---------------------------------------------------


def exit_code(argv: list[str]) -> int:
    """main's exit code, also when argparse exits on its own."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    ("args", "named", "problem"),
    [
        (["--scope-url", "notaurl"], "--scope-url", "http(s) URL"),
        (["--scope-url", "ftp://127.0.0.1:8000"], "--scope-url", "http(s) URL"),
        (["--scope-url", "http://"], "--scope-url", "http(s) URL"),
        (["--scope-url", "http://127.0.0.1:99999"], "--scope-url", "bad port"),
        (["--orchestrator", "0xabc"], "--orchestrator", "40 hex digits"),
        (["--orchestrator", "orch-1"], "--orchestrator", "40 hex digits"),
        (["--duration-s", "0"], "--duration-s", "> 0"),
        (["--duration-s", "soon"], "--duration-s", "not a number"),
        (["--duration-s", "100000"], "--duration-s", "max_run_duration_mins"),
        (["--scenario", "longlive_t2v_15"], "--scenario", "unknown scenario 'longlive_t2v_15' (did you mean"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_a_bad_run_argument_exits_2_with_one_line_before_prefect(monkeypatch, capsys, args, named, problem):
    monkeypatch.setenv("PREFECT_API_URL", DEAD_PREFECT_API)
    given = {"--scenario": SCENARIO, "--scope-url": "http://127.0.0.1:8000", "--config": str(DEMO_CONFIG)}
    given.update(zip(args[::2], args[1::2], strict=True))
    assert exit_code(["run", *[part for pair in given.items() for part in pair]]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert named in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in captured.err and "PREFECT_API_URL" not in captured.err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["coverage", "--date", "2026-13-01"], "--date"),
        (["schedule", "--window-s", "-5"], "--window-s"),
        (["schedule", "--rounds", "0"], "--rounds"),
        (["baselines", "--window-days", "seven"], "--window-days"),
        (["serve", "--limit", "0"], "--limit"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_a_bad_argument_of_another_command_exits_2_with_one_line(capsys, argv, named):
    assert exit_code(argv) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_an_unreachable_prefect_api_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_API_URL", DEAD_PREFECT_API)
    argv = ["run", "--scenario", SCENARIO, "--scope-url", "http://127.0.0.1:8000", "--config", str(DEMO_CONFIG)]
    assert exit_code(argv) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and DEAD_PREFECT_API in lines[0] and "no Prefect API answers" in lines[0], lines


# --- quick commands, in-process -----------------------------------------------------------------


def test_scenarios_json_lists_the_expanded_matrix(capsys):
    assert main(["scenarios", "--config", str(DEMO_CONFIG), "--json"]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    expected = load_settings(DEMO_CONFIG, environ={}).expand_scenarios()
    assert [s["name"] for s in listed] == [s.name for s in expected]
    assert [s["duration_s"] for s in listed] == [s.duration_s for s in expected]


@pytest.mark.parametrize(
    ("extra", "key"),
    [("bogus_setting: 1\n", "bogus_setting"), ("thresholds:\n  stall_timout_s: 3\n", "thresholds.stall_timout_s")],
    ids=["top-level", "nested"],
)
def test_a_config_with_an_unknown_key_exits_2_with_one_line(tmp_path, capsys, extra, key):
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"prompts_dir: {REPO_ROOT / 'config' / 'prompts'}\ngraphs_dir: {REPO_ROOT / 'config' / 'graphs'}\n" + extra
    )
    assert main(["scenarios", "--config", str(config)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert str(config) in lines[0] and key in lines[0] and "unknown key" in lines[0]


def _land_runs(lake: Lake, outcomes: list[str | None]) -> None:
    """A started row for every run and a final row for those with an outcome (None: still running)."""
    now = dt.datetime.now(dt.UTC)
    for index, outcome in enumerate(outcomes):
        started = RunRecord(
            run_id=f"run-{index:03d}", state="started", scenario=SCENARIO, pipeline="longlive", mode="t2v",
            duration_class="15s", planned_duration_s=15.0, hard_cap_s=435.0, orchestrator=ORCHESTRATOR,
            scope_instance="http://127.0.0.1:1", harness_version="test", started_at=now - dt.timedelta(seconds=60),
        )
        lake.land_run(started)
        if outcome is not None:
            lake.land_run(started.model_copy(update={"state": "final", "outcome": outcome, "ended_at": now}))


def test_sql_json_counts_runs_by_outcome(tmp_path, monkeypatch, capsys):
    outcomes = ["passed"] * 4 + ["failed"] * 2 + ["unavailable", "aborted", None]
    _land_runs(Lake(tmp_path), outcomes)
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path))
    assert main(["sql", COUNT_SQL, "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    counted = {outcome: count for outcome, count in (tuple(row.values()) for row in rows)}
    assert counted == dict(Counter(outcomes))


@pytest.mark.parametrize("query", ["delete from runs", "create table t (x int)", "select 1; drop view runs"])
def test_sql_refuses_anything_but_one_select(tmp_path, monkeypatch, capsys, query):
    _land_runs(Lake(tmp_path), ["passed"])
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path))
    assert main(["sql", query, "--json"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "read-only" in captured.err
    assert Lake(tmp_path).query(COUNT_SQL).rows == [("passed", 1)]  # nothing changed


@pytest.mark.parametrize(
    ("query", "problem"),
    [("selec outcome from runs", "syntax error"), ("select nope from runs", "nope"),
     ("select * from no_such_view", "no_such_view")],
)
def test_a_wrong_query_is_the_users_sql_error_not_the_harness(tmp_path, monkeypatch, capsys, query, problem):
    _land_runs(Lake(tmp_path), ["passed"])
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path))
    assert main(["sql", query]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadtest: SQL error: ") and problem in lines[0], lines
    assert "harness" not in lines[0]
