"""`loadtest events audit --file F [--json]` on the 0.2.4 recording, a malformed file and a missing one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.cli import main

RECORDING = Path(__file__).resolve().parents[1] / "fixtures" / "scope-0.2.4" / "events.jsonl"


def test_text_output_has_one_block_per_session(capsys: pytest.CaptureFixture[str]):
    assert main(["events", "audit", "--file", str(RECORDING)]) == 0
    out = capsys.readouterr().out
    assert "39 event(s), 7 session(s)" in out
    assert out.count("\nsession ") == 7
    assert "session 3c234d9d-0d07-44fd-92b1-bdca1050a9dc: local webrtc video\n  connection_id: probe-conn-1" in out
    assert "  null_ids: stream_started, stream_stopped carry no connection_id" in out
    assert "  errors: stream_startup_failed, webrtc_offer_failed" in out
    assert out.count("  complete\n") == 5


def test_json_output_is_a_list_of_sessions(capsys: pytest.CaptureFixture[str]):
    assert main(["events", "audit", "--file", str(RECORDING), "--json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert [s["kind"] for s in sessions] == ["local webrtc video", "headless text", "local webrtc text",
                                             "local failed offer", "local failed offer", "local webrtc video",
                                             "local webrtc video"]
    assert sessions[0]["connection_ids"] == ["probe-conn-1"] and sessions[0]["complete"] is True
    assert sessions[1]["findings"][0].startswith("null_ids: ")


def test_malformed_lines_are_reported_by_number_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    lines = RECORDING.read_text().splitlines()[:4]
    bad = tmp_path / "events.jsonl"
    bad.write_text("\n".join([lines[0], "not json", '{"data": {}}', "", lines[2], "x" * (300 * 1024)]) + "\n")
    assert main(["events", "audit", "--file", str(bad), "--json"]) == 0
    captured = capsys.readouterr()
    assert [line.split(" skipped")[0] for line in captured.err.splitlines()] == [
        f"{bad}: line 2", f"{bad}: line 3", f"{bad}: line 6"]
    assert "longer than an envelope" in captured.err.splitlines()[2]
    assert [s["events"] for s in json.loads(captured.out)] == [1]


def test_an_unreadable_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "nope.jsonl"
    assert main(["events", "audit", "--file", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err


def test_a_file_too_large_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr("tasks.events.file_source.MAX_FILE_BYTES", 10)
    assert main(["events", "audit", "--file", str(RECORDING)]) == 2
    assert "larger than" in capsys.readouterr().err
