"""How many simulated 512x512 sessions at 10 fps does one core sustain?

A fleet of K instances runs in one process (`python -m simulator fleet`) pinned to one core;
a load generator in this process, pinned to another core, plays the harness: per session it
fetches a frame and the metrics 10 times a second and switches the prompt every few seconds.
For each K it prints the simulator's CPU use (from /proc), the CPU per session, the achieved
fetch rate and the frame latency; a K is sustained when the fetch rate holds (>= 95 %) and the
simulator stays under 90 % of its core. Goal: >= 16 sessions.

    uv run python bench/bench_simulator.py [--sweep 8,16,32,64,96,128] [--measure-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FPS = 10.0
TICK_S = 1.0 / FPS
PROMPTS = [f"benchmark scene {n}: {w}" for n, w in enumerate("harbour desert forest city glacier canyon reef meadow".split())]
PROMPT_SWITCH_S = 5.0
WARMUP_S = 3.0
SUSTAINED_RATE = 0.95
CPU_BUDGET = 0.90
CLK_TCK = os.sysconf("SC_CLK_TCK")


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client: far cheaper than a full client, so the generator is not the limit."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read the whole answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await self.reader.readexactly(length)

    async def json(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        """A JSON request."""
        status, body = await self.request(method, path, json.dumps(payload).encode() if payload is not None else b"")
        return status, json.loads(body) if body else {}

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


@dataclass
class SessionStats:
    """What one simulated harness session saw during the measurement window."""

    frames: int = 0
    bad_frames: int = 0
    latencies_s: list[float] = field(default_factory=list)


async def prepare(port: int, rng: random.Random) -> RawHttp:
    """Load longlive and start a session on one instance; wait for its first frame."""
    client = RawHttp(port)
    await client.json("POST", "/api/v1/pipeline/load", {"pipeline_ids": ["longlive"]})
    while (await client.json("GET", "/api/v1/pipeline/status"))[1]["status"] != "loaded":
        await asyncio.sleep(0.05)
    prompt = [{"text": rng.choice(PROMPTS), "weight": 1.0}]
    await client.json("POST", "/api/v1/session/start", {"pipeline_id": "longlive", "prompts": prompt})
    while (await client.request("GET", "/api/v1/session/frame"))[0] != 200:
        await asyncio.sleep(0.05)
    return client


async def drive(client: RawHttp, rng: random.Random, until: float, measure_from: float, stats: SessionStats) -> None:
    """Frame + metrics at 10 Hz, a prompt switch every few seconds, until `until`."""
    next_tick = time.monotonic() + rng.random() * TICK_S
    next_switch = next_tick + rng.random() * PROMPT_SWITCH_S
    while next_tick < until:
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        started = time.monotonic()
        status, frame = await client.request("GET", "/api/v1/session/frame?quality=85")
        latency_s = time.monotonic() - started
        await client.request("GET", "/api/v1/session/metrics")
        if started >= measure_from:
            stats.frames += 1
            stats.latencies_s.append(latency_s)
            stats.bad_frames += status != 200 or not frame.startswith(b"\xff\xd8")
        if started >= next_switch:
            await client.json("POST", "/api/v1/session/parameters", {"prompts": [{"text": rng.choice(PROMPTS), "weight": 1.0}]})
            next_switch += PROMPT_SWITCH_S
        next_tick = max(next_tick + TICK_S, time.monotonic() - TICK_S)  # never burst to catch up


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_base_port(count: int) -> int:
    """A base port with `count` consecutive free loopback ports."""
    for base in range(30000, 60000, 211):
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def fleet_file(base: int) -> Path:
    """Where the benchmark's fleet writes its description (removed after each step)."""
    return Path(tempfile.gettempdir()) / f"bench-fleet-{base}.json"


def start_fleet(instances: int, base: int, sim_core: int | None) -> subprocess.Popen:
    """The fleet process, pinned to `sim_core` from its first instruction."""
    args = [
        sys.executable, "-m", "simulator", "fleet", "--instances", str(instances), "--orchestrators", str(instances),
        "--base-port", str(base), "--profiles", "healthy", "--set", f"fps_out={FPS}", "--set", "load_s=0.05",
        "--set", "first_frame_s=0.1", "--fleet-file", str(fleet_file(base)),
    ]
    pin = (lambda: os.sched_setaffinity(0, {sim_core})) if sim_core is not None else None
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin)


async def wait_healthy(port: int, timeout_s: float = 30.0) -> None:
    """Poll /health until the instance answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client = RawHttp(port)
            status, _ = await client.request("GET", "/health")
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"instance on {port} did not start")


async def run_step(instances: int, measure_s: float, sim_core: int | None) -> dict:
    """One fleet of `instances` sessions, measured for `measure_s` seconds."""
    base = free_base_port(instances + 1)
    fleet = start_fleet(instances, base, sim_core)
    try:
        await wait_healthy(base + instances)
        rng = random.Random(instances)
        clients = await asyncio.gather(*(prepare(base + 1 + i, rng) for i in range(instances)))
        stats = [SessionStats() for _ in clients]
        measure_from = time.monotonic() + WARMUP_S
        until = measure_from + measure_s
        drivers = asyncio.gather(*(drive(c, random.Random(i), until, measure_from, s) for i, (c, s) in enumerate(zip(clients, stats))))
        await asyncio.sleep(WARMUP_S)
        cpu0, wall0 = cpu_seconds(fleet.pid), time.monotonic()
        await drivers
        cpu_s, wall_s = cpu_seconds(fleet.pid) - cpu0, time.monotonic() - wall0
        for client in clients:
            client.close()
    finally:
        fleet.send_signal(signal.SIGTERM)
        fleet.communicate(timeout=30)
        fleet_file(base).unlink(missing_ok=True)
    return summarize(instances, stats, cpu_s / wall_s, measure_s)


def summarize(instances: int, stats: list[SessionStats], cpu_cores: float, measure_s: float) -> dict:
    """Per-step figures."""
    latencies = sorted(latency for s in stats for latency in s.latencies_s)
    frames = sum(s.frames for s in stats)
    rate = frames / (instances * FPS * measure_s)
    return {
        "sessions": instances,
        "sim_cpu_cores": cpu_cores,
        "cpu_per_session": cpu_cores / instances,
        "fetch_rate": rate,
        "frame_p50_ms": 1000 * latencies[len(latencies) // 2],
        "frame_p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "bad_frames": sum(s.bad_frames for s in stats),
        "sustained": rate >= SUSTAINED_RATE and cpu_cores <= CPU_BUDGET,
    }


def choose_cores() -> tuple[int | None, str]:
    """One core for the simulator, another for this generator (when the machine has two)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, f"only {len(cores)} core available: simulator and generator share it"
    os.sched_setaffinity(0, {cores[1]})
    return cores[0], f"simulator pinned to core {cores[0]}, load generator to core {cores[1]}"


def main() -> int:
    """Run the sweep and print the table and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="8,16,32,64,96,128")
    parser.add_argument("--measure-s", type=float, default=10.0)
    args = parser.parse_args()
    sim_core, placement = choose_cores()
    print(f"simulator benchmark: 512x512 longlive sessions at {FPS:.0f} fps, frame+metrics at {FPS:.0f} Hz each; {placement}")
    print(f"{'sessions':>8} {'sim cpu':>8} {'cpu/sess':>9} {'fetched':>8} {'p50 ms':>7} {'p95 ms':>7} {'bad':>4}  sustained")
    best = None
    for instances in (int(k) for k in args.sweep.split(",")):
        row = asyncio.run(run_step(instances, args.measure_s, sim_core))
        print(f"{row['sessions']:>8} {row['sim_cpu_cores']:>7.0%} {row['cpu_per_session']:>8.2%} {row['fetch_rate']:>7.0%} "
              f"{row['frame_p50_ms']:>7.1f} {row['frame_p95_ms']:>7.1f} {row['bad_frames']:>4}  {'yes' if row['sustained'] else 'no'}",
              flush=True)
        if not row["sustained"]:
            break
        best = row
    if best is None:
        print("no step was sustained")
        return 1
    ceiling = int(CPU_BUDGET / best["cpu_per_session"])
    print(f"\nsustained {best['sessions']} sessions on one core ({best['sim_cpu_cores']:.0%} CPU, "
          f"{best['cpu_per_session']:.2%} per session); at that cost one core fits ~{ceiling} sessions "
          f"(goal >= 16: {'met' if best['sessions'] >= 16 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
