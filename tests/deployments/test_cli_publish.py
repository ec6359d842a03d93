"""`loadtest publish [--status] [--json]`: a round and the status through the command line, in a tmp lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from analytics.lake import Lake
from deployments.cli import main
from tests.conftest import DEMO_CONFIG
from tests.tasks.publish.test_outbox import make_run

TARGET = """
leaderboard:
  targets:
    - name: down
      url: http://127.0.0.1:9
      secret_env: CLI_PUBLISH_SECRET
      timeout_s: 2
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo config with one target nobody listens on, and a lake with one fresh relay run."""
    text = DEMO_CONFIG.read_text()
    text = text.replace("prompts_dir: prompts", f"prompts_dir: {DEMO_CONFIG.parent / 'prompts'}")
    text = text.replace("graphs_dir: graphs", f"graphs_dir: {DEMO_CONFIG.parent / 'graphs'}")
    path = tmp_path / "config.yaml"
    path.write_text(text + TARGET)
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CLI_PUBLISH_SECRET", raising=False)
    Lake(tmp_path / "data").land_run(make_run("cli-r1", ended_at=dt.datetime.now(dt.timezone.utc)))
    return str(path)


def test_status_says_the_secret_is_not_set(config: str, capsys: pytest.CaptureFixture[str]):
    assert main(["publish", "--status", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "down (http://127.0.0.1:9): 1 pending" in out and "secret $CLI_PUBLISH_SECRET not set" in out


def test_a_round_against_a_closed_port_fails_and_status_shows_why(config: str, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLI_PUBLISH_SECRET", "cli-secret-never-printed")
    assert main(["publish", "--config", config]) == 1
    assert "down: 1 failed" in capsys.readouterr().out
    assert main(["publish", "--status", "--json", "--config", config]) == 0
    [status] = json.loads(out := capsys.readouterr().out)
    assert status["pending"] == 1 and status["backing_off"] == 1
    [failing] = status["failing"]
    assert failing["run_id"] == "cli-r1" and "ConnectError" in failing["last_error"] and failing["next_attempt_at"]
    assert "cli-secret-never-printed" not in out
