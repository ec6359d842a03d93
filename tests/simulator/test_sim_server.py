"""The server plumbing: sockets that answer without Nagle delays, a group that stops on request."""

from __future__ import annotations

import socket

import httpx

from simulator.discovery import create_discovery_app
from simulator.fleet import plan_orchestrators
from simulator.server import BackgroundServers, Binding, bind_socket


def test_bound_sockets_disable_nagle() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        # asyncio sets TCP_NODELAY on accepted sockets only when the listener says TCP;
        # without it each answer waits ~40 ms for a delayed ACK.
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()


def test_background_servers_serve_and_stop() -> None:
    binding = Binding(create_discovery_app(plan_orchestrators(2, ["healthy"], 0, pinned=1)), bind_socket("127.0.0.1", 0))
    servers = BackgroundServers([binding])
    servers.start()
    url = binding.url
    try:
        assert len(httpx.get(f"{url}/orchestrators", timeout=5.0).json()) == 2
    finally:
        servers.stop()
    try:
        httpx.get(f"{url}/orchestrators", timeout=1.0)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("still answering after stop")
