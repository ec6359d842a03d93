"""Plain-httpx helpers for the simulator tests (no harness code: the simulator is tested on its own)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import numpy as np
from PIL import Image

T = TypeVar("T")
FAST = {"connect_s": 0.05, "load_s": 0.05, "first_frame_s": 0.05, "prompt_latency_s": 0.05, "load_status_lag_s": 0.0}
TIMEOUT_S = 5.0


def wait_until(probe: Callable[[], T], *, timeout_s: float = 5.0, poll_s: float = 0.02, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def luma_thumb(jpeg: bytes) -> np.ndarray:
    """Luma at 1/4 scale, decoded the cheap way (as the harness's frame checks do)."""
    image = Image.open(io.BytesIO(jpeg))
    image.draft("L", (image.width // 4, image.height // 4))
    return np.asarray(image.convert("L"), dtype=np.float32)


def frame_diff(a: bytes, b: bytes) -> float:
    """Mean absolute luma difference at 1/4 scale, normalised to 0-1."""
    return float(np.mean(np.abs(luma_thumb(a) - luma_thumb(b)))) / 255


def decodes(jpeg: bytes) -> bool:
    """True when Pillow decodes the bytes fully."""
    try:
        Image.open(io.BytesIO(jpeg)).load()
    except Exception:
        return False
    return True


class ScopeHttp:
    """A plain httpx client on one simulated Scope server, with the few steps tests repeat."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def load(self, *pipeline_ids: str) -> dict:
        """Load and wait for `loaded`; returns the final status body."""
        response = self.http.post("/api/v1/pipeline/load", json={"pipeline_ids": list(pipeline_ids)})
        assert response.status_code == 200, response.text
        return wait_until(self._loaded_status, what=f"{pipeline_ids} loaded")

    def _loaded_status(self) -> dict | None:
        status = self.http.get("/api/v1/pipeline/status").json()
        return status if status["status"] == "loaded" else None

    def start(self, **body) -> dict:
        """POST /session/start, expecting 200."""
        response = self.http.post("/api/v1/session/start", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def frame(self, **params) -> bytes | None:
        """The latest frame, or None on 404."""
        response = self.http.get("/api/v1/session/frame", params=params)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.content

    def wait_frame(self, **params) -> bytes:
        """Poll until a frame is available."""
        return wait_until(lambda: self.frame(**params), what="a frame")

    def next_frame(self, previous: bytes, **params) -> bytes:
        """Poll until the frame bytes differ from `previous`."""
        return wait_until(lambda: (f := self.frame(**params)) is not None and f != previous and f, what="a new frame")

    def metrics(self) -> dict:
        """GET /session/metrics."""
        return self.http.get("/api/v1/session/metrics").json()

    def frames_out(self) -> int:
        """frames_out of the headless session."""
        return self.metrics()["sessions"]["headless"]["frames_out"]

    def switch_prompt(self, text: str) -> None:
        """POST /session/parameters with one prompt."""
        response = self.http.post("/api/v1/session/parameters", json={"prompts": [{"text": text, "weight": 1.0}]})
        assert response.status_code == 200, response.text

    def log_lines(self) -> list[str]:
        """The whole log tail (up to 1000 lines)."""
        return self.http.get("/api/v1/logs/tail", params={"lines": 1000}).json()["lines"]

    def truth(self) -> dict:
        """GET /_sim/truth."""
        return self.http.get("/_sim/truth").json()
