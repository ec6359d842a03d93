"""Run several ASGI apps (instances and discovery) as uvicorn servers on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from simulator.app import TRANSPORT_KEY
from simulator.instance import ScopeInstance

GRACEFUL_SHUTDOWN_S = 2.0
STOP_JOIN_S = 10.0


class ResettableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport so a fault can abort it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and put its transport into every request's scope state."""
        super().connection_made(transport)
        self.app_state = {**self.app_state, TRANSPORT_KEY: transport}


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the group (one handler stops them all)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing."""
        yield


@dataclass
class Binding:
    """One app on one already-bound socket."""

    app: ASGIApp
    sock: socket.socket
    instance: ScopeInstance | None = None

    @property
    def url(self) -> str:
        """http://host:port of the socket."""
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); port 0 picks a free one. OSError when taken."""
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ServerGroup:
    """uvicorn servers for a list of bindings, started and stopped together."""

    def __init__(self, bindings: Sequence[Binding]) -> None:
        self.bindings = list(bindings)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until `request_stop`; then stop every server cleanly."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        servers = [_QuietServer(_config(binding.app)) for binding in self.bindings]
        tasks = [asyncio.create_task(s.serve(sockets=[b.sock])) for s, b in zip(servers, self.bindings, strict=True)]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break  # a server failed to start: stop the others and surface its error
            await asyncio.sleep(0.01)
        else:
            if on_started is not None:
                on_started()
            await self._stop.wait()
        for binding in self.bindings:
            if binding.instance is not None:
                binding.instance.stopping = True
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)
        # Queued lifecycle events get a bounded moment to reach Kafka; the producers close on this loop.
        await asyncio.gather(*(b.instance.events.publisher.close() for b in self.bindings if b.instance is not None))

    def request_stop(self) -> None:
        """Ask the group to stop; safe from any thread and from signal handlers."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the group (main thread, running loop)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop)


def _config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app, http=ResettableH11Protocol, ws="none", lifespan="off", log_config=None, log_level="warning",
        access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


class BackgroundServers:
    """A ServerGroup running on its own event loop in a daemon thread (for tests and embedding)."""

    def __init__(self, bindings: Sequence[Binding]) -> None:
        self.group = ServerGroup(bindings)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scope-sim", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; RuntimeError when the servers do not come up in time."""
        self._thread.start()
        if not self._started.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"simulator servers did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self.group.serve(on_started=self._started.set))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()

    def stop(self) -> None:
        """Stop the servers and wait for the thread to end."""
        self.group.request_stop()
        self._thread.join(STOP_JOIN_S)
        for binding in self.group.bindings:
            binding.sock.close()
