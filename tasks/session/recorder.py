"""How one run becomes rows in the lake: the `started` row, every sampled frame (in chunks,
during the run), the prompt switches, the final row, and the evidence beside a failed run.

The recorder holds no measurement of its own: the lifecycle hands it what the phases returned.
Every write failure becomes a `LakeWriteError` (category harness): a run whose own records
cannot land is a harness failure, never a pass.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from analytics.lake import Lake
from analytics.records import EventRecord, FrameSample, PromptSwitchRecord, RunRecord
from errors import LakeWriteError
from tasks.session.monitor import ObservedFrame, StreamResult
from tasks.session.verdict import Verdict

MAX_EVIDENCE_LOG_LINES = 200


def _landing(what: str, action: Callable[[], Any]) -> Any:
    """Run a lake write; any failure becomes a LakeWriteError naming what could not land."""
    try:
        return action()
    except Exception as error:  # the lake's own errors, OSError, pyarrow/polars errors alike
        raise LakeWriteError(f"could not land {what}: {type(error).__name__}: {error}") from error


class RunRecorder:
    """Lands the rows of one run."""

    def __init__(self, lake: Lake, run_id: str, started_at: datetime) -> None:
        self.lake = lake
        self.run_id = run_id
        self.started_at = started_at
        self.frames = lake.frame_writer(run_id)
        self.frame_seq = 0

    def land_run(self, record: RunRecord) -> None:
        """Land a `started` or `final` row."""
        _landing(f"the {record.state} row of run {self.run_id}", lambda: self.lake.land_run(record))

    def add_frame(self, observed: ObservedFrame) -> int:
        """Turn an analysed tick into a `frames` row (landed in chunks); return its sequence number."""
        row = frame_row(self.run_id, self.frame_seq, observed)
        _landing(f"frames of run {self.run_id}", lambda: self.frames.add(row))
        self.frame_seq += 1
        return row.seq

    def close_frames(self) -> None:
        """Land the frames still buffered."""
        _landing(f"frames of run {self.run_id}", self.frames.close)

    def land_switches(self, result: StreamResult) -> None:
        """Land the prompt switches and what each one's response was."""
        rows = [switch_row(self.run_id, switch, response) for switch, response in result.switches]
        _landing(f"prompt switches of run {self.run_id}",
                 lambda: self.lake.land("prompt_switches", rows, file_stem=f"{self.run_id}-switches"))

    def land_events(self, rows: list[EventRecord]) -> None:
        """Land the Scope events joined to the run (one file; none when there were none)."""
        _landing(f"events of run {self.run_id}",
                 lambda: self.lake.land("events", rows, file_stem=f"{self.run_id}-events"))

    def keep_evidence(self, verdict: Verdict, log_lines: list[str] | str, last_good: Any, first_bad: Any,
                      scenario: str) -> str:
        """Store the Scope log tail, the last good and first bad frame and a summary; return where they are."""
        text = log_lines if isinstance(log_lines, str) else "\n".join(log_lines[-MAX_EVIDENCE_LOG_LINES:]) + "\n"
        files = {"scope-log-tail.txt": text.encode()}
        for name, tick in (("last-good.jpg", last_good), ("first-bad.jpg", first_bad)):
            data = evidence_jpeg(tick)
            if data:
                files[name] = data
        summary = {"run_id": self.run_id, "scenario": scenario, **verdict.__dict__}
        files["summary.json"] = json.dumps(summary, indent=2, default=str).encode()
        return self.lake.keep_artifacts(self.run_id, self.started_at, files)


def evidence_jpeg(tick: Any) -> bytes | None:
    """The tick's frame as JPEG bytes: the fetched JPEG, or the received picture encoded once."""
    if tick is None:
        return None
    if tick.frame is not None:
        return tick.frame
    picture = tick.picture
    if picture is None:
        return None
    image = picture.rgb.to_image() if hasattr(picture.rgb, "to_image") else picture.rgb
    if image is None:
        from PIL import Image  # only the luma plane was kept: a gray evidence frame

        image = Image.fromarray(picture.luma, mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def frame_row(run_id: str, seq: int, observed: ObservedFrame) -> FrameSample:
    """The `frames` row of one analysed tick."""
    tick, stats = observed.tick, observed.stats
    counters, gpu = tick.counters, tick.gpu
    ok = stats is not None and stats.ok
    return FrameSample(
        run_id=run_id,
        seq=seq,
        t_s=tick.t_s,
        captured_at=tick.captured_at,
        frame_bytes=len(tick.frame) if tick.frame is not None else None,
        frame_fetch_ms=tick.frame_fetch_ms,
        width=stats.width if ok else None,
        height=stats.height if ok else None,
        decode_ms=stats.decode_ms if stats else None,
        luma_mean=stats.luma_mean if ok else None,
        luma_std=stats.luma_std if ok else None,
        black_fraction=stats.black_fraction if ok else None,
        diff_prev=observed.diff_prev,
        verdict=observed.verdict,
        error=stats.error if stats else (None if tick.has_frame else "no frame available"),
        fps_in=counters.fps_in if counters else None,
        fps_out=counters.fps_out if counters else None,
        frames_in=counters.frames_in if counters else None,
        frames_out=counters.frames_out if counters else None,
        pipeline_fps=counters.pipeline_fps if counters else None,
        vram_allocated_mb=gpu.vram_allocated_mb if gpu else None,
        vram_reserved_mb=gpu.vram_reserved_mb if gpu else None,
    )


def switch_row(run_id: str, switch: Any, response: Any) -> PromptSwitchRecord:
    """The `prompt_switches` row of one switch and its judged (or not judged) response."""
    return PromptSwitchRecord(
        run_id=run_id,
        seq=switch.seq,
        t_s=switch.t_s,
        prompt_from=switch.prompt_from,
        prompt_to=switch.prompt_to,
        switched_at=switch.switched_at,
        noise_p95=response.noise_p95,
        response_diff=response.best_median,
        responded=response.responded,
        prompt_latency_s=response.latency_s,
        evaluated=response.evaluated,
        reason=None if response.responded else response.reason,
    )
