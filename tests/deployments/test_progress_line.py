"""The progress display of `loadtest run`: a line per phase, a stream line every few seconds, the stop line."""

from __future__ import annotations

import io

from deployments.progress_line import PLAIN_EVERY_S, ProgressLine
from tasks.session.progress import ProgressEvent

RUN = {"run_id": "run-1", "scenario": "longlive_t2v_15s", "orchestrator": "0x" + "ab" * 20}
TICK_S = 0.5


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(stream_s: float) -> tuple[list[str], ProgressLine]:
    """Every phase, then a tick every TICK_S for stream_s, then the end; the lines printed."""
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, clock=clock)
    for phase in ("prepare", "connect", "load", "start", "stream"):
        line(ProgressEvent(kind="phase", phase=phase, **RUN))
    ticks = int(stream_s / TICK_S)
    for index in range(1, ticks + 1):
        clock.now += TICK_S
        line(ProgressEvent(kind="tick", t_s=index * TICK_S, frames_sampled=index, fps_out=12.0, verdict="valid", **RUN))
    line(ProgressEvent(kind="phase", phase="cleanup", **RUN))
    line(ProgressEvent(kind="done", outcome="passed", frames_sampled=ticks, **RUN))
    return out.getvalue().splitlines(), line


def test_every_phase_gets_a_line():
    lines, _ = drive(stream_s=1.0)
    for phase in ("prepare", "connect", "load", "start", "stream", "cleanup"):
        assert any(line.endswith(f"{phase}…") for line in lines), (phase, lines)
    assert lines[-1].endswith("done: passed (2 frames sampled)")


def test_the_stream_shows_a_line_every_few_seconds():
    stream_s = 20.0
    lines, _ = drive(stream_s)
    stream_lines = [line for line in lines if " stream: t=" in line]
    assert PLAIN_EVERY_S <= 3.0
    assert len(stream_lines) >= stream_s / PLAIN_EVERY_S - 1  # never a gap longer than PLAIN_EVERY_S
    assert len(stream_lines) <= stream_s / PLAIN_EVERY_S + 1  # and not a line per tick


def test_the_stop_line_names_run_scenario_orchestrator_and_outcome():
    _, line = drive(stream_s=1.0)
    expected = f"stopped run-1 longlive_t2v_15s @ {RUN['orchestrator']}: aborted"
    assert line.stopped_line({**RUN, "outcome": "aborted"}, "SIGINT") == expected
    assert line.stopped_line(None, "SIGINT") == expected.replace("aborted", "passed")  # from the done event


def test_a_stop_before_any_event_says_the_run_never_started():
    assert ProgressLine(io.StringIO()).stopped_line(None, "SIGTERM") == "loadtest: stopped by SIGTERM before the run started"
