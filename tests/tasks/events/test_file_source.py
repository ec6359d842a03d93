"""The JSONL event source: a run reading a recording instead of Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.events.file_source import EventFileError, FileEventSource, read_jsonl

RECORDING = Path(__file__).resolve().parents[2] / "fixtures" / "scope-0.2.4" / "events.jsonl"


async def test_the_source_gives_every_event_received_when_emitted():
    source = FileEventSource(RECORDING)
    await source.start()
    received = source.received()
    await source.stop()
    assert source.name == "file" and len(received) == 39 and source.skipped == []
    assert all(r.source == "file" and r.received_at == r.event.emitted_at for r in received)
    assert received[0].event.type == "pipeline_load_start"


async def test_an_unreadable_file_raises_naming_it(tmp_path: Path):
    with pytest.raises(EventFileError, match="nope.jsonl"):
        await FileEventSource(tmp_path / "nope.jsonl").start()


def test_read_jsonl_counts_bad_lines_and_keeps_going(tmp_path: Path):
    path = tmp_path / "e.jsonl"
    path.write_text('[1]\n{"data": {"type": "stream_started"}}\n')
    events, skipped = read_jsonl(path)
    assert [e.event.type for e in events] == ["stream_started"]
    assert [(s.line_number, s.reason) for s in skipped] == [(1, "message is not a JSON object")]
