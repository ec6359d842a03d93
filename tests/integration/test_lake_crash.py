"""A harness process SIGKILLed mid-run leaves a readable lake: whole chunks only, then an `aborted` run."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics.lake import Lake

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHUNK_ROWS = 5
HARD_CAP_S = 3600.0
CHUNKS_BEFORE_KILL = 4

# Lands a started row, then frame chunks as fast as it can, announcing each landed chunk.
RUN_SCRIPT = f"""
import datetime as dt, sys, time
from analytics.lake import Lake
from analytics.records import FrameSample, RunRecord

lake = Lake(sys.argv[1])
started_at = dt.datetime.now(dt.timezone.utc)
lake.land_run(RunRecord(
    run_id="crash-1", state="started", scenario="longlive_t2v_5m", pipeline="longlive", mode="t2v",
    duration_class="5m", planned_duration_s=300.0, hard_cap_s={HARD_CAP_S}, orchestrator="0xorch",
    scope_instance="http://127.0.0.1:1", harness_version="test", started_at=started_at))
print("started", started_at.isoformat(), flush=True)
writer = lake.frame_writer("crash-1", flush_every_s=3600.0, flush_every_rows={CHUNK_ROWS})
seq = 0
while True:
    row = FrameSample(run_id="crash-1", seq=seq, t_s=seq * 0.5, verdict="valid",
                      captured_at=dt.datetime.now(dt.timezone.utc), frames_out=seq * 6)
    if writer.add(row) is not None:
        print("chunk", writer.chunks_landed, writer.rows_landed, flush=True)
    seq += 1
    time.sleep(0.001)
"""


def run_until_killed(data_dir: Path) -> tuple[dt.datetime, int]:
    """Start the run in a child process, SIGKILL it after some chunks; (started_at, rows announced)."""
    child = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(data_dir)], cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        first = child.stdout.readline().split()
        assert first[:1] == ["started"], child.stderr.read() if child.stderr else first
        rows_announced = 0
        for line in child.stdout:
            _, chunks, rows = line.split()
            rows_announced = int(rows)
            if int(chunks) >= CHUNKS_BEFORE_KILL:
                break
        os.kill(child.pid, signal.SIGKILL)  # mid-run: the writer keeps landing chunks until now
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return dt.datetime.fromisoformat(first[1]), rows_announced


def test_a_killed_run_leaves_whole_chunks_and_is_swept_to_aborted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started_at, rows_announced = run_until_killed(data_dir)
    lake = Lake(data_dir)

    frame_files = sorted(lake.table_dir("frames").rglob("*.parquet"))
    rows_in_files = sum(pq.read_metadata(path).num_rows for path in frame_files)  # every named file is whole
    assert rows_in_files == CHUNK_ROWS * len(frame_files)
    landed = lake.query("SELECT count(*), count(DISTINCT seq), max(seq) FROM frames WHERE run_id = 'crash-1'").rows
    assert landed == [(rows_in_files, rows_in_files, rows_in_files - 1)]  # no temp file read, no chunk lost
    assert rows_in_files >= rows_announced >= CHUNKS_BEFORE_KILL * CHUNK_ROWS

    before = lake.query("SELECT state, outcome FROM runs WHERE run_id = 'crash-1'").rows
    assert before == [("started", None)]  # within its hard cap it reads as running

    after_cap = started_at + dt.timedelta(seconds=HARD_CAP_S + 1)
    assert lake.sweep_orphans(now=after_cap) == ["crash-1"]
    assert lake.sweep_orphans(now=after_cap) == []
    run = lake.runs_frame().to_dicts()
    assert [(r["run_id"], r["outcome"], r["failure_category"], r["frames_sampled"]) for r in run] == [
        ("crash-1", "aborted", "harness", rows_in_files)]
