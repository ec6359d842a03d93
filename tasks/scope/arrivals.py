"""Per-frame arrival statistics at a WebRTC receiver (quality.md, "Measured at the receiver").

Every received frame costs one ``add``: an append, a running sum and one comparison, so a
receiver can count every frame of many sessions. The figures are computed on demand:

- fps: frames / seconds after a warm-up, and P50/P05 over whole 1 s windows;
- inter-frame gaps: P50/P95/max of the arrival intervals;
- freezes by the W3C webrtc-stats rule: an interval is a freeze when it exceeds
  ``max(3 x mean, mean + 150 ms)`` of the previous (up to) 30 intervals; ``freeze_total_s``
  sums the frozen intervals. The part of an interval the receiver's own event loop was
  blocked (tasks/scope/loop_stalls.py) is taken out before judging: that wait was the harness's.

Pure: the caller supplies every time (``time.monotonic()`` seconds); no I/O, no aiortc.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass

import numpy as np

FREEZE_HISTORY_FRAMES = 30
FREEZE_FACTOR = 3.0
FREEZE_MARGIN_S = 0.150
FPS_WINDOW_S = 1.0


@dataclass(frozen=True)
class ArrivalFigures:
    """What the arrival times say: fps after the warm-up, gaps and freezes."""

    frames_received: int
    first_frame_at: float | None  # monotonic seconds
    fps_received: float | None
    fps_received_p50: float | None
    fps_received_p05: float | None
    freeze_count: int
    freeze_total_s: float
    frame_interval_p50_ms: float | None
    frame_interval_p95_ms: float | None
    frame_interval_max_ms: float | None


class FrameArrivals:
    """Arrival times of one stream's frames, with freezes counted as frames arrive."""

    def __init__(self) -> None:
        self._times = array("d")
        self._recent: deque[float] = deque(maxlen=FREEZE_HISTORY_FRAMES)
        self._recent_sum = 0.0
        self.freeze_count = 0
        self.freeze_total_s = 0.0

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first(self) -> float | None:
        """Arrival time of the first frame, or None before it."""
        return self._times[0] if self._times else None

    @property
    def last(self) -> float | None:
        """Arrival time of the latest frame, or None before the first."""
        return self._times[-1] if self._times else None

    def add(self, at: float, *, harness_stalled_s: float = 0.0) -> None:
        """Count one frame that arrived at `at` (monotonic seconds, non-decreasing); `harness_stalled_s`
        is how much of the gap before it the receiver's own event loop was blocked (not the stream's)."""
        if self._times:
            interval = max(0.0, at - self._times[-1])
            self._judge_freeze(max(0.0, interval - harness_stalled_s))
            if len(self._recent) == self._recent.maxlen:
                self._recent_sum -= self._recent[0]
            self._recent.append(interval)
            self._recent_sum += interval
        self._times.append(at)

    def _judge_freeze(self, interval: float) -> None:
        """Count `interval` as a freeze when the W3C rule says so (needs one earlier interval)."""
        if not self._recent:
            return
        mean = self._recent_sum / len(self._recent)
        if interval > max(FREEZE_FACTOR * mean, mean + FREEZE_MARGIN_S):
            self.freeze_count += 1
            self.freeze_total_s += interval

    def count_between(self, start: float, end: float) -> int:
        """Frames that arrived in (start, end]."""
        return bisect_right(self._times, end) - bisect_right(self._times, start)

    def figures(self, *, warmup_s: float, until: float) -> ArrivalFigures:
        """The figures of the stream up to `until`, fps counted after `warmup_s` past the first frame."""
        first = self.first
        fps, p50, p05 = (None, None, None)
        if first is not None:
            fps, p50, p05 = self._fps(first + warmup_s, until)
        gaps_ms = self._intervals_ms()
        return ArrivalFigures(
            frames_received=len(self._times),
            first_frame_at=first,
            fps_received=fps,
            fps_received_p50=p50,
            fps_received_p05=p05,
            freeze_count=self.freeze_count,
            freeze_total_s=round(self.freeze_total_s, 6),
            frame_interval_p50_ms=_percentile(gaps_ms, 50),
            frame_interval_p95_ms=_percentile(gaps_ms, 95),
            frame_interval_max_ms=float(gaps_ms.max()) if gaps_ms.size else None,
        )

    def _fps(self, start: float, end: float) -> tuple[float | None, float | None, float | None]:
        """Mean fps over [start, end] and P50/P05 over its whole 1 s windows (None under 1 s)."""
        if end - start < FPS_WINDOW_S:
            return None, None, None
        times = np.array(self._times, dtype=np.float64)  # a copy: a view would pin the array's size
        edges = start + FPS_WINDOW_S * np.arange(int((end - start) // FPS_WINDOW_S) + 1)
        counts = np.diff(np.searchsorted(times, edges, side="left")) / FPS_WINDOW_S
        frames = bisect_left(self._times, end) - bisect_left(self._times, start)
        return frames / (end - start), _percentile(counts, 50), _percentile(counts, 5)

    def _intervals_ms(self) -> np.ndarray:
        """Every inter-arrival interval in milliseconds."""
        return np.diff(np.array(self._times, dtype=np.float64)) * 1000.0


def _percentile(values: np.ndarray, q: float) -> float | None:
    """The q-th percentile (linear), or None for no values."""
    return float(np.percentile(values, q)) if values.size else None
