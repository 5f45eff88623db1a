"""A TCP relay on loopback in front of a real server, that can cut the line or lose the server's replies."""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Forwards connections from its own port to ``port``; ``mode`` says what gets through.

    ``"up"``: everything. ``"cut"``: nothing (new and open connections are
    closed at once, as a partition that resets them). ``"lose_replies"``:
    requests reach the server, which runs them, but its replies are dropped,
    so the caller times out on a command that did run.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.mode = "up"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self) -> None:
        """Close every open connection; refuse new ones until ``mode`` changes."""
        self.mode = "cut"
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.mode == "cut":
                    break
                if replies and self.mode == "lose_replies":
                    continue
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
