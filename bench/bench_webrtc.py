"""What does a WebRTC session cost the harness, and how many does one harness process hold?

One harness process (this one) runs WebRTC sessions (`ScopePeer`, the WebRTC driver's peer)
against a simulated Scope server in another process (`python -m simulator serve`), both on
this machine. It prints:

- harness CPU per 15-fps video-mode session (sending the clip, receiving every frame) and per
  text-mode session (receiving only), and the simulator's CPU beside it;
- decode ms per received frame (CPU time of aiortc's decoder threads / frames received);
- the most concurrent video-mode sessions held with <= 1 % of the frames the simulator sent
  lost at the receiver, stepping up 4, 8, 16, 24, 32 (bounded), and where it stopped.

Nothing is asserted: the numbers are for the report.

    uv run python bench/bench_webrtc.py [--steps 4,8,16,24,32] [--measure-s 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.scope.client import ScopeClient  # noqa: E402
from tasks.scope.webrtc import OfferPlan, ScopePeer, encoded_clip  # noqa: E402
from tasks.session.inputs import generate_clip  # noqa: E402

CLIP_FPS = 15
MAX_LOSS = 0.01
WARMUP_S = 3.0
FIRST_FRAME_DEADLINE_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_s() -> float:
    """User + system CPU seconds of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decoder_cpu_s() -> float:
    """CPU seconds of aiortc's video decoder threads alive now."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.endswith("-decoder") and thread.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def frames_sent_by_simulator(url: str) -> dict[str, int]:
    """Frames the simulator sent per live WebRTC session (its ground truth)."""
    truth = httpx.get(f"{url}/_sim/truth", timeout=5).json()
    return {s["session_id"]: int(s.get("frames_sent") or 0) for s in truth.get("webrtc_sessions", [])
            if s.get("session_id")}


async def open_sessions(client: ScopeClient, count: int, mode: str, clip: Path | None) -> list[ScopePeer]:
    """`count` sessions offered together; returns once every one received a frame."""
    pipeline = "passthrough" if mode == "video" else "longlive"
    plan = OfferPlan({"pipeline_ids": [pipeline], "input_mode": mode, "produces_video": True,
                      "prompts": [{"text": "bench", "weight": 1.0}]}, connection_id="bench", clip=clip)
    peers = [ScopePeer(client) for _ in range(count)]
    await asyncio.gather(*(peer.open(plan) for peer in peers))
    deadline = time.monotonic() + FIRST_FRAME_DEADLINE_S
    while any(p.frames_received == 0 for p in peers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return peers


async def close_sessions(client: ScopeClient, peers: list[ScopePeer]) -> None:
    """DELETE every session, then close its peer connection."""
    for peer in peers:
        peer.mark_closing()
        if peer.session_id:
            await client.webrtc_delete(peer.session_id)
        await peer.close()


async def measure(client: ScopeClient, url: str, sim_pid: int, count: int, mode: str, clip: Path | None,
                  measure_s: float) -> dict:
    """Run `count` sessions, measure a window after the warm-up, end them; the window's figures."""
    peers = await open_sessions(client, count, mode, clip)
    started = sum(1 for p in peers if p.frames_received)
    try:
        await asyncio.sleep(WARMUP_S)
        sent0, recv0 = frames_sent_by_simulator(url), [p.frames_received for p in peers]
        cpu0, sim0, dec0, t0 = own_cpu_s(), process_cpu_s(sim_pid), decoder_cpu_s(), time.monotonic()
        await asyncio.sleep(measure_s)
        sent1, recv1 = frames_sent_by_simulator(url), [p.frames_received for p in peers]
        cpu1, sim1, dec1, t1 = own_cpu_s(), process_cpu_s(sim_pid), decoder_cpu_s(), time.monotonic()
        stats = await asyncio.gather(*(p.network_stats() for p in peers))
    finally:
        await close_sessions(client, peers)
    received = sum(b - a for a, b in zip(recv0, recv1))
    sent = sum(sent1.get(p.session_id, 0) - sent0.get(p.session_id, 0) for p in peers)
    window = t1 - t0
    return {
        "sessions": count, "started": started, "mode": mode,
        "harness_cpu": (cpu1 - cpu0) / window, "sim_cpu": (sim1 - sim0) / window,
        "fps_received": received / window / count, "sent": sent, "received": received,
        "loss": max(0.0, 1 - received / sent) if sent else None,
        "decode_ms": (dec1 - dec0) * 1000 / received if received else None,
        "packets_lost": sum(s.packets_lost or 0 for s in stats),
    }


def show(row: dict) -> None:
    """Print one measured row."""
    loss = f"{row['loss'] * 100:5.2f} %" if row["loss"] is not None else "  n/a  "
    decode = f"{row['decode_ms']:.2f}" if row["decode_ms"] is not None else "n/a"
    print(f"{row['mode']:5} {row['sessions']:3d} sessions ({row['started']:3d} started): harness "
          f"{row['harness_cpu'] * 100:6.1f} % CPU ({row['harness_cpu'] * 100 / row['sessions']:5.1f} %/session), "
          f"simulator {row['sim_cpu'] * 100:6.1f} %, fps received {row['fps_received']:5.2f}, frames lost {loss} "
          f"({row['received']}/{row['sent']}), RTP packets lost {row['packets_lost']}, decode {decode} ms/frame",
          flush=True)


async def load(client: ScopeClient, pipeline: str) -> None:
    """Load one pipeline and wait until it is loaded."""
    await client.load_pipelines([pipeline])
    await client.wait_until_loaded(timeout_s=30)


async def bench(url: str, sim_pid: int, steps: list[int], measure_s: float, clip: Path) -> None:
    """Text-mode cost, then video-mode sessions stepped up until more than 1 % of frames are lost."""
    async with ScopeClient(url) as client:
        for _ in range(100):
            try:
                await client.health()
                break
            except Exception:  # noqa: BLE001  (the server is still starting)
                await asyncio.sleep(0.1)
        started = time.perf_counter()
        encoded_clip(clip)
        print(f"input clip encoded once to VP8: {(time.perf_counter() - started) * 1000:.0f} ms")
        await load(client, "longlive")
        show(await measure(client, url, sim_pid, 4, "text", None, measure_s))
        await load(client, "passthrough")
        held = 0
        for count in steps:
            row = await measure(client, url, sim_pid, count, "video", clip, measure_s)
            show(row)
            if row["started"] < count or row["loss"] is None or row["loss"] > MAX_LOSS:
                break
            held = count
        print(f"most concurrent video-mode sessions held with <= {MAX_LOSS:.0%} frames lost: {held}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="4,8,16,24,32")
    parser.add_argument("--measure-s", type=float, default=8.0)
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip15.mp4"
        clip.write_bytes(generate_clip(fps=CLIP_FPS, duration_s=4.0))
        simulator = subprocess.Popen(
            [sys.executable, "-m", "simulator", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other work on the machine "
                  f"skews every figure); simulator pid {simulator.pid}; 512x512 VP8, clip at {CLIP_FPS} fps")
            asyncio.run(bench(f"http://127.0.0.1:{port}", simulator.pid, steps, args.measure_s, clip))
            print(f"load average at the end {os.getloadavg()[0]:.1f}")
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)


if __name__ == "__main__":
    main()
