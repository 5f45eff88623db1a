"""The run log's writer process: it commits records off the interpreter of the code that made them.

A run log's writer thread shares the GIL with the application, so its encoding,
redaction and SQL binding slow the calls that record. When that thread is busy
(``RunLog(writer="auto")``, the default, on a machine with two or more CPUs) or
when told so (``writer="process"``), the log starts this process and hands it
each batch through a pipe: the thread only pickles, the process does the rest
with a ``BatchWriter`` of its own. A log that does not redact encodes on its
thread (JSON in C, cheap) and hands over rows ready to write, so that the
process's core does nothing but SQLite.

The process ends when its pipe closes, after committing what it read: a log's
process killed with SIGKILL loses only the records not yet written into the
pipe. It ignores SIGINT and SIGTERM (a Ctrl-C or a stop sent to the
application's process group would otherwise kill it before the application's
own flush), and runs in a session of its own.

Frames, both ways, are a 4-byte big-endian length and a pickle. To the process:
``("open", url, detector)`` first (``detector``: True for the default one, False
for none), then ``("records", [record, ...])`` (or ``("rows", rows)`` encoded already),
``("sync",)`` and ``("stop",)``.
From it: ``("ready",)`` or ``("error", text)`` after ``open``, ``("synced",
failed)`` after each ``sync`` once everything before it is committed, and
``("stopped", failed)`` last (``failed``: the records it lost so far).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proctor.db import RowKind, database_from_url
from proctor.pii.detector import PIIDetector

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterProcess", "WriterProcessError"]

logger = logging.getLogger("proctor.runs")

_LENGTH = struct.Struct(">I")
_PIPE_SIZE = 1 << 20  # room for a few batches in flight (Linux; elsewhere the default stays)
_SRC = str(Path(__file__).resolve().parents[2])  # the folder that holds the proctor package


class WriterProcessError(Exception):
    """The writer process is gone or refused to start; its message says why."""


_running: weakref.WeakSet[WriterProcess] = weakref.WeakSet()
"""The writer processes this process started, for the fork handler."""


class WriterProcess:
    """The log's end of a writer process: start it, send it batches, wait for what it committed.

    Not thread-safe: one run log's writer thread uses it. ``failed`` is what the process
    reported it lost, as of the last ``sync``; ``unconfirmed`` counts the records sent since.
    """

    def __init__(self, url: str, detector: PIIDetector | bool, *, cwd: str) -> None:
        """``detector``: True for a default ``PIIDetector``, False for none, or one to pickle (an
        unpicklable one raises here, before anything starts)."""
        opening = _frame(("open", url, detector))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_SRC, env.get("PYTHONPATH"))))
        self._process = subprocess.Popen(
            [sys.executable, "-c", "import sys, proctor.runs.writer_process as w; sys.exit(w.main())"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._to = self._process.stdin.fileno()
        self._from = self._process.stdout.fileno()
        _grow_pipe(self._to)
        self.pid = self._process.pid
        self.failed = 0
        self.unconfirmed = 0
        self._ready = False
        self._gone = False
        _running.add(self)
        try:
            self._send(opening)
        except WriterProcessError:
            self.close()
            raise

    @property
    def is_ready(self) -> bool:
        """Whether ``ready()`` said so already; never reads the pipe."""
        return self._ready

    def ready(self) -> bool:
        """Whether the process has opened the database; never blocks. Raises ``WriterProcessError``
        when it could not."""
        if self._ready:
            return True
        if not select.select([self._from], [], [], 0)[0]:
            return False
        reply = self._receive()
        if reply[0] != "ready":
            raise WriterProcessError(str(reply[1]))
        self._ready = True
        return True

    def _wait_ready(self) -> None:
        while not self.ready():
            select.select([self._from], [], [])

    def send(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Hand ``records`` over, to be redacted, encoded and written; blocks while the pipe is full."""
        self._send(_frame(("records", records)))
        self.unconfirmed += len(records)

    def send_rows(self, ordered: list[tuple[RowKind, list[tuple[Any, ...]]]]) -> None:
        """Hand over rows ready to write (``BatchWriter.rows``); blocks while the pipe is full."""
        self._send(_frame(("rows", ordered)))
        self.unconfirmed += sum(len(rows) for _, rows in ordered)

    def sync(self) -> None:
        """Wait until everything sent is committed (or counted in ``failed``)."""
        self._send(_frame(("sync",)))
        self._wait_ready()
        reply = self._receive()
        self.failed = int(reply[1])
        self.unconfirmed = 0

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what was sent, then end the process (killed if it takes longer than ``timeout``).

        A process that is not ready yet was sent nothing: it is ended at once."""
        if not self._ready and not self.ready():
            self.close()
            return
        try:
            self._send(_frame(("stop",)))
            reply = self._receive()
            self.failed = int(reply[1])
            self.unconfirmed = 0
        finally:
            self.close(timeout)

    def close(self, timeout: float = 0.0) -> None:
        """Close the pipes and reap the process; kill it if it is still there after ``timeout``."""
        if self._gone:
            return
        self._gone = True
        _running.discard(self)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._to, view) :]
        except OSError as exc:
            raise WriterProcessError(f"the writer process {self.pid} is gone ({exc})") from exc

    def _receive(self) -> tuple[Any, ...]:
        try:
            frame = _read_frame(self._from)
        except OSError as exc:
            raise WriterProcessError(f"the writer process {self.pid} is gone ({exc})") from exc
        if frame is None:
            raise WriterProcessError(f"the writer process {self.pid} ended")
        reply: tuple[Any, ...] = pickle.loads(frame)
        return reply

    def _forget_after_fork(self) -> None:
        """In a forked child: the pipes are the parent's; close this process's copies, nothing else."""
        self._gone = True
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError):
                os.close(fd)
        # Not this process's child: Popen must neither wait for it nor warn that it still runs.
        self._process.returncode = 0


def _after_fork_in_child() -> None:
    for process in list(_running):
        process._forget_after_fork()
    _running.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _read_exactly(fd: int, count: int) -> bytes | None:
    """``count`` bytes from ``fd``; None at the end of the stream."""
    chunks = []
    while count:
        chunk = os.read(fd, min(count, _PIPE_SIZE))
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes | None:
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(header)[0])


def _grow_pipe(fd: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if set_size is not None:
        with contextlib.suppress(OSError):  # above the system's pipe-max-size: the default works too
            fcntl.fcntl(fd, set_size, _PIPE_SIZE)


def main() -> int:
    """The process: read frames from standard input until it closes, reply on standard output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.dup(1)
    os.dup2(2, 1)  # whatever else prints goes to standard error, never into the replies
    logging.basicConfig(format="proctor run-log writer: %(levelname)s: %(message)s")

    def reply(*message: Any) -> None:
        data = _frame(message)
        while data:
            data = data[os.write(replies, data) :]

    try:
        return _serve(reply)
    except BrokenPipeError:  # the log's process is gone: nobody to answer
        return 0


def _serve(reply: Callable[..., None]) -> int:
    from proctor.runs.batch import BatchWriter

    frame = _read_frame(0)
    if frame is None:
        return 0
    _, url, detector = pickle.loads(frame)
    try:
        database = database_from_url(url)
        if detector is True:
            detector = PIIDetector()
        batch = BatchWriter(database, detector or None)
    except Exception as exc:  # StoreError, or a URL this version cannot use
        reply("error", f"{type(exc).__name__}: {exc}")
        return 1
    reply("ready")
    try:
        while True:
            frame = _read_frame(0)
            if frame is None:  # the log's process ended (or was killed): keep what it sent
                return 0
            message = pickle.loads(frame)
            kind = message[0]
            if kind == "records":
                batch.commit(message[1])
            elif kind == "rows":
                batch.write(message[1])
            elif kind == "sync":
                reply("synced", batch.failed)
            elif kind == "stop":
                reply("stopped", batch.failed)
                return 0
    finally:
        batch.close()
