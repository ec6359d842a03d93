"""The orchestrator's profile acts on relay WebRTC sessions, media-path faults included; never on local ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest_asyncio
from sim_helpers import FAST
from test_sim_webrtc import RtcClient, load, session_truth, until, until_async

from simulator.testing import SimHandle

VIDEO = {"pipeline_ids": ["passthrough"], "input_mode": "video", "produces_video": True}


@pytest_asyncio.fixture(loop_scope="function")
async def http(sim: SimHandle) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on the reset simulator."""
    async with httpx.AsyncClient(base_url=sim.url, timeout=10.0) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[RtcClient]:
    """One peer sending the synthetic clip, closed afterwards."""
    peer = RtcClient()
    yield peer
    await peer.close()


async def relay_session(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient, profile: str, **overrides) -> None:
    """Connect to the cloud under `profile`, load passthrough and open a relay session."""
    sim.set_profile(profile, {**FAST, **overrides})
    await http.post("/api/v1/cloud/connect", json={"app_id": "a/b/ws"})

    async def connected() -> bool:
        return (await http.get("/api/v1/cloud/status")).json()["connected"]

    await until_async(connected, what="connected")
    await load(http, "passthrough")
    assert (await client.offer(http, VIDEO)).status_code == 200


def gaps_s(client: RtcClient) -> list[float]:
    """Time between consecutive received frames."""
    times = [t for t, *_ in client.frames]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def test_freeze_bursts_pause_output_when_and_as_long_as_truth_says(
    http: httpx.AsyncClient, sim: SimHandle, client: RtcClient
) -> None:
    await relay_session(http, sim, client, "freeze_bursts", fault_after_s=0.6, freeze_burst_count=2,
                        freeze_burst_ms=700, freeze_burst_every_s=1.6)
    await until_async(lambda: _bursts_over(http, client, 2), timeout_s=10, what="two bursts injected and over")
    await until(lambda: len(client.frames) >= 45, timeout_s=10, what="frames after the bursts")
    bursts = (await session_truth(http, client.session_id))["freeze_bursts"]
    assert bursts["count"] == 2 and all(abs(end - start - 0.7) < 0.01 for start, end in bursts["times"])
    long_gaps = [gap for gap in gaps_s(client) if gap > 0.5]
    assert len(long_gaps) == 2 and all(0.55 < gap < 1.2 for gap in long_gaps)


async def _bursts_over(http: httpx.AsyncClient, client: RtcClient, count: int) -> bool:
    truth = await session_truth(http, client.session_id)
    return truth["freeze_bursts"]["count"] == count


async def test_relay_drop_stops_frames_and_closes_the_connection(
    http: httpx.AsyncClient, sim: SimHandle, client: RtcClient
) -> None:
    await relay_session(http, sim, client, "relay_drop", fault_after_s=1.0)
    await until(lambda: client.pc.connectionState == "closed", timeout_s=10, what="the server closing the connection")
    truth = await session_truth(http, client.session_id)
    assert truth["state"] == "ended" and truth["end_reason"] == "relay_drop"
    assert 0 < len(client.frames) <= truth["frames_sent"] and truth["first_frame_s"] < 1.0
    faults = (await http.get("/_sim/truth")).json()["faults"]
    assert [f["kind"] for f in faults if f["kind"] == "relay_drop"] == ["relay_drop"]


async def test_packet_loss_drops_about_that_share_of_frames(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient) -> None:
    await relay_session(http, sim, client, "packet_loss", packet_loss_pct=50)
    truth = await until_async(lambda: _made_at_least(http, client, 40), timeout_s=10, what="40 frames made")
    share = truth["frames_lost"] / (truth["frames_lost"] + truth["frames_sent"])
    assert 0.3 < share < 0.7
    assert len(client.frames) <= truth["frames_sent"]


async def _made_at_least(http: httpx.AsyncClient, client: RtcClient, count: int) -> dict | None:
    truth = await session_truth(http, client.session_id)
    return truth if truth["frames_lost"] + truth["frames_sent"] >= count else None


async def test_added_latency_delays_the_first_frame(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient) -> None:
    await relay_session(http, sim, client, "added_latency", added_latency_ms=800, first_frame_s=0.05)
    await until(lambda: client.frames, what="a frame")
    assert client.frames[0][0] - client.offered_at >= 0.8
    assert max(gaps_s(client) or [0.0]) < 0.5  # the rate is unchanged, only shifted


async def test_black_relay_frames_turn_dark(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient) -> None:
    await relay_session(http, sim, client, "black", fault_after_s=0.5)
    await until(lambda: client.frames and float(np.mean(client.frames[-1][3])) < 25, what="black frames")
    assert float(np.mean(client.frames[0][3])) > 60  # the clip's picture came first


async def test_stall_on_a_relay_session_is_recorded(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient) -> None:
    await relay_session(http, sim, client, "stall", fault_after_s=0.5)
    stalls = await until_async(lambda: _open_faults(http, "stall"), what="the stall in truth")
    assert stalls[0]["session_id"] == client.session_id
    sent = (await session_truth(http, client.session_id))["frames_sent"]
    assert sent <= 15 * 0.5 + 8  # at most the frames due before the stall (clip start adds a little)


async def _open_faults(http: httpx.AsyncClient, kind: str) -> list[dict]:
    return [f for f in (await http.get("/_sim/truth")).json()["faults"] if f["kind"] == kind and f["ended_at"] is None]


async def test_media_path_faults_spare_a_local_session(http: httpx.AsyncClient, sim: SimHandle, client: RtcClient) -> None:
    sim.set_profile("packet_loss", {**FAST, "packet_loss_pct": 100})
    await load(http, "passthrough")
    await client.offer(http, VIDEO)
    await until(lambda: len(client.frames) >= 10, what="local frames despite 100 % loss on the relay path")
    truth = await session_truth(http, client.session_id)
    assert truth["relay"] is False and truth["frames_lost"] == 0
