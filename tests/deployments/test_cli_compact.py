"""`loadtest compact [--table T] [--day D] [--json]`: what each table-day's compaction did, on a tmp lake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analytics.lake import Lake
from deployments.cli import main
from tests.analytics.test_lake import DAY, make_run


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """Three runs' started rows on DAY (three files of one table-day)."""
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path / "data"))
    lake = Lake(tmp_path / "data")
    for n in range(3):
        lake.land_run(make_run(f"r{n}"))
    return lake


def test_compact_merges_completed_days_and_says_so(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact"]) == 0
    out = capsys.readouterr().out
    assert "runs" in out and "3 -> 1 files, 3 rows into compact-000001-" in out
    assert out.rstrip().endswith(f"1 table-day(s) compacted in {lake.url}")
    assert len(lake.files("runs")) == 1 and lake.query("SELECT count(*) FROM runs").rows == [(3,)]


def test_compact_one_table_day_as_json(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", "--table", "runs", "--day", DAY.date().isoformat(), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["table"], result["day"], result["files_before"], result["files_after"]) == ("runs", "2026-03-01", 3, 1)


def test_compact_refuses_an_unknown_table_or_a_bad_day(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", "--table", "runz"]) == 2
    assert "unknown table 'runz'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["compact", "--day", "yesterday"])
    assert exit_info.value.code == 2
