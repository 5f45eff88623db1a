"""A real redis-server for the tests: one per session, on a free loopback port in a temporary folder.

``shared()`` starts it at first use; ``tests/conftest.py`` stops it when the
session ends. Without ``redis-server`` (``make test`` installs it), tests that
need it are skipped, saying why.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.servers import SessionServer, end_process, free_port

__all__ = ["RedisServer", "shared", "stop_shared", "unique_prefix"]

_counter = itertools.count(1)


class RedisServer:
    """A redis-server process started on ``port`` (a free one by default): with no persistence, or
    ``persistent``, writing every change to its append-only file before answering, so that a restart
    finds what the server had acknowledged."""

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("no redis-server: `make test` installs it (apt-get install redis-server)")
        self.folder = Path(tempfile.mkdtemp(prefix="proctor-redis-"))
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        assert self.binary is not None
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "save": "",
            "appendonly": "yes" if self.persistent else "no",
            "appendfsync": "always",
            "protected-mode": "no",
            "loglevel": "warning",
            "logfile": str(self.folder / "redis.log"),
        }
        self.process = subprocess.Popen(
            [self.binary, *(word for name, value in options.items() for word in (f"--{name}", value))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self.process = self.process, None
        end_process(process, 5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def command(self, *words: str) -> bytes:
        """One command in RESP, its raw answer: for PING, SCRIPT FLUSH, CLIENT PAUSE without a client."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
            conn.sendall(request.encode())
            return conn.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False


_session: SessionServer[RedisServer] = SessionServer(RedisServer)
shared = _session.get
"""The session's server, started at first use."""
stop_shared = _session.stop


def unique_prefix() -> str:
    """A key prefix no other store of this session uses: each test's keyspace starts empty."""
    return f"t{next(_counter)}"
