"""`loadtest scores [--leaderboard] [--json]`: the run scores and the leaderboard (24 h) from a tmp lake."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from analytics.lake import Lake
from deployments.cli import main
from tests.analytics.leaderboard.test_leaderboard_board import ORCH_A, ORCH_B, run
from tests.conftest import DEMO_CONFIG

SCORE_KEYS = {"orchestrator", "pipeline", "runs", "passed", "pass_rate", "wilson_low", "wilson_high",
              "latency_score", "fps_score", "score", "evidence"}


@pytest.fixture
def lake(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A lake of relay runs: 10 passed on A in FRA (ranked), 1 passed and 1 failed on B, 1 unavailable on B."""
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOADTEST_CONFIG", str(DEMO_CONFIG))
    lake = Lake(tmp_path / "data")
    ended = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    for i in range(10):
        lake.land_run(run(f"a{i}", ended=ended))
    lake.land_run(run("b0", orchestrator=ORCH_B, ended=ended))
    lake.land_run(run("b1", orchestrator=ORCH_B, outcome="failed", ended=ended))
    lake.land_run(run("b2", orchestrator=ORCH_B, outcome="unavailable", ended=ended, first_frame_s=None,
                      fps_received=None, failure_category="orchestrator", failure_phase="start"))
    lake.land_run(run("old", orchestrator=ORCH_B, ended=ended - dt.timedelta(days=2)))  # not in 24 h
    return lake


def test_the_table_is_followed_by_the_leaderboard(lake, capsys: pytest.CaptureFixture[str]):
    assert main(["scores"]) == 0
    out = capsys.readouterr().out
    scores, leaderboard = out.split("\n\n")
    assert "orchestrator x pipeline pair(s)" in scores
    header, rule, first, second = leaderboard.splitlines()[1:]
    assert header.split() == ["orchestrator", "region", "model", "jobs", "unavailable", "success_rate",
                              "wilson_95", "score", "live_video_score"]
    assert first.split()[:5] == [ORCH_A, "FRA", "longlive", "10", "0"]  # best score first
    assert first.split()[-1] != "evidence" and float(first.split()[-1]) > 0
    assert second.split()[:6] == [ORCH_B, "FRA", "longlive", "2", "1", "0.500"]
    assert second.endswith("insufficient evidence")


def test_json_stays_the_run_scores_list(lake, capsys: pytest.CaptureFixture[str]):
    assert main(["scores", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and rows and all(SCORE_KEYS <= row.keys() for row in rows)


def test_leaderboard_alone_and_as_json(lake, capsys: pytest.CaptureFixture[str]):
    assert main(["scores", "--leaderboard"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("leaderboard (24 h): 2 orchestrator x region x model group(s)")
    assert "pair(s)" not in out
    assert main(["scores", "--leaderboard", "--json", "--config", str(DEMO_CONFIG)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["orchestrator"], r["window"], r["jobs"], r["unavailable"], r["ranked"]) for r in rows] == [
        (ORCH_A, "24h", 10, 0, True), (ORCH_B, "24h", 2, 1, False)]
    b = rows[1]
    assert b["success_rate"] == 0.5 and b["success_rate_low"] < 0.5 < b["success_rate_high"]
    assert b["live_video_score"] is not None  # the mean is there; the table says it is not ranked
