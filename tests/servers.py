"""What the tests' own servers (redis-server, PostgreSQL) share: a free loopback port, one a session."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closable)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def end_process(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Stop ``process`` (SIGTERM, then SIGKILL after ``grace`` seconds) and wait for it to exit."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


class SessionServer(Generic[S]):
    """One server for the whole test session, started at first use and closed at its end."""

    def __init__(self, start: Callable[[], S]) -> None:
        self._start = start
        self._server: S | None = None

    def get(self) -> S:
        if self._server is None:
            self._server = self._start()
        return self._server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):  # the session is ending: a server already gone is fine
                server.close()
