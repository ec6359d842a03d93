"""One simulated Scope server for the whole simulator suite, reset to a fast healthy profile per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_helpers import FAST, ScopeHttp

from simulator.testing import SimHandle, running_simulator


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimHandle]:
    """The shared simulator (a background uvicorn thread on a free loopback port)."""
    with running_simulator("healthy", overrides=FAST, seed=7) as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SimHandle) -> SimHandle:
    """The shared simulator, reset and back on the fast healthy profile."""
    sim_server.set_profile("healthy", FAST)
    sim_server.reset()
    return sim_server


@pytest.fixture
def scope(sim: SimHandle) -> Iterator[ScopeHttp]:
    """A plain httpx client on the reset simulator."""
    client = ScopeHttp(sim.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small orange H.264 clip made with PyAV (its first frame tints v2v output)."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("clips") / "orange.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        rgb = np.zeros((64, 64, 3), np.uint8)
        rgb[:, :] = (240, 120, 20)
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()
