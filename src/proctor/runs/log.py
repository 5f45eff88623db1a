"""RunLog: runs and their actions, written to SQLite (WAL) by a background thread.

Callers hand over a snapshot of each record and go on; a writer thread
redacts, encodes and commits records in batches. ``flush()`` returns once
everything handed over before it is committed, and is called at exit. A
commit survives the process being killed (SIGKILL included): SQLite's WAL
keeps every committed transaction.
"""

from __future__ import annotations

import atexit
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from proctor.errors import ConfigurationError, StoreError
from proctor.runs._schema import MIGRATIONS, SCHEMA_VERSION
from proctor.runs.encode import dumps, snapshot

__all__ = ["DEFAULT_PATH", "ActionRecord", "RunLog", "RunRecord"]

DEFAULT_PATH = ".proctor/runs.db"
"""Where the run log lives when neither the caller nor ``PROCTOR_DB`` says."""

RUN_STATUSES = ("running", "succeeded", "failed", "denied", "terminated", "cancelled")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as stored: JSON fields are decoded text, not yet parsed."""

    run_id: str
    service: str
    agent: str
    function: str
    started: float
    ended: float | None
    status: str
    input: str | None
    output: str | None
    error: str | None
    cost: float
    redacted: bool

    @classmethod
    def _make(cls, row: tuple[Any, ...]) -> RunRecord:
        run_id, service, agent, function, started, ended, status, input_, output, error, cost, redacted = row
        return cls(
            run_id,
            service,
            agent,
            function,
            started,
            ended,
            status,
            input_,
            output,
            error,
            cost,
            bool(redacted),
        )


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action of a run as stored."""

    run_id: str
    seq: int
    tool: str
    started: float
    duration: float | None
    args: str | None
    result: str | None
    error: str | None
    estimated_cost: float | None
    actual_cost: float | None
    decisions: str | None
    redacted: bool

    @classmethod
    def _make(cls, row: tuple[Any, ...]) -> ActionRecord:
        run_id, seq, tool, started, duration, args, result, error, estimated, actual, decisions, redacted = (
            row
        )
        return cls(
            run_id,
            seq,
            tool,
            started,
            duration,
            args,
            result,
            error,
            estimated,
            actual,
            decisions,
            bool(redacted),
        )


_FLUSH = object()
_STOP = object()


class RunLog:
    """A run log in one SQLite file.

    Parameters:
        path: the database file; ``$PROCTOR_DB``, else ``.proctor/runs.db``.
        queue_size: records waiting for the writer at most.
        on_full: when the queue is full, ``"block"`` the caller until there
            is room (nothing is lost), or ``"drop"`` the record and count it
            in ``dropped`` (a warning is logged for the first one).
        redact: a function that returns a redacted copy of a snapshot and
            whether it changed anything; None stores values as they are.
        batch: records committed in one transaction at most.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        queue_size: int = 10_000,
        on_full: Literal["block", "drop"] = "block",
        redact: Callable[[Any], tuple[Any, bool]] | None = None,
        batch: int = 512,
    ) -> None:
        if on_full not in ("block", "drop"):
            raise ConfigurationError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if queue_size < 1 or batch < 1:
            raise ConfigurationError("queue_size and batch must be >= 1")
        self.path = Path(path if path is not None else os.environ.get("PROCTOR_DB", DEFAULT_PATH))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._on_full = on_full
        self._redact = redact
        self._batch = batch
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._migrate()
        self._error: BaseException | None = None
        self._writer = threading.Thread(
            target=self._write_loop, name=f"proctor-runlog:{self.path}", daemon=True
        )
        self._writer.start()
        atexit.register(self.close)

    # -- the caller's side

    def run_started(self, run_id: str, service: str, agent: str, function: str, input: Any) -> None:
        """Record that a run began now with ``input``."""
        self._put(("run", run_id, service, agent, function, time.time(), snapshot(input)))

    def action(
        self,
        run_id: str,
        seq: int,
        tool: str,
        *,
        started: float,
        duration: float | None,
        args: Any,
        result: Any = None,
        error: BaseException | None = None,
        estimated_cost: float | None = None,
        actual_cost: float | None = None,
        decisions: Sequence[Any] = (),
    ) -> None:
        """Record one finished action of a run."""
        self._put(
            (
                "action",
                run_id,
                seq,
                tool,
                started,
                duration,
                snapshot(args),
                snapshot(result),
                _error_text(error),
                estimated_cost,
                actual_cost,
                snapshot(list(decisions)),
            )
        )

    def run_finished(
        self,
        run_id: str,
        status: str,
        *,
        output: Any = None,
        error: BaseException | None = None,
        cost: float = 0.0,
    ) -> None:
        """Record how a run ended."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        self._put(("end", run_id, time.time(), status, snapshot(output), _error_text(error), cost))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed; False if ``timeout`` ran out."""
        if not self._writer.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        return done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued and stop the writer; later records raise ``StoreError``."""
        if self._writer.is_alive():
            self._queue.put((_STOP,))
            self._writer.join()
        atexit.unregister(self.close)

    def _put(self, record: tuple[Any, ...]) -> None:
        if not self._writer.is_alive():
            raise StoreError(f"the run log {self.path} is closed", self._error)
        if self._on_full == "block":
            self._queue.put(record)
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    # -- the writer's side

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _migrate(self) -> None:
        try:
            connection = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run log {self.path}: {exc}", exc) from exc
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                connection.execute("ROLLBACK")
                raise StoreError(
                    f"the run log {self.path} has schema version {version}, newer than this proctor "
                    f"({SCHEMA_VERSION}); upgrade proctor to read it"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    connection.execute(statement)
            connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare the run log {self.path}: {exc}", exc) from exc
        finally:
            connection.close()

    def _write_loop(self) -> None:
        connection = self._connect()
        try:
            while True:
                records = [self._queue.get()]
                while len(records) < self._batch:
                    try:
                        records.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = self._commit(connection, records)
                if stop:
                    return
        except BaseException as exc:  # the writer must not die silently: callers see StoreError
            self._error = exc
            raise
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, records: list[tuple[Any, ...]]) -> bool:
        waiting: list[threading.Event] = []
        stop = False
        connection.execute("BEGIN")
        for record in records:
            kind = record[0]
            if kind is _FLUSH:
                waiting.append(record[1])
            elif kind is _STOP:
                stop = True
            elif kind == "run":
                _, run_id, service, agent, function, started, value = record
                text, redacted = self._encoded(value)
                connection.execute(
                    "INSERT OR IGNORE INTO runs"
                    " (run_id, service, agent, function, started, status, input, redacted)"
                    " VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                    (run_id, service, agent, function, started, text, redacted),
                )
            elif kind == "action":
                (
                    _,
                    run_id,
                    seq,
                    tool,
                    started,
                    duration,
                    args,
                    result,
                    error,
                    estimated,
                    actual,
                    decisions,
                ) = record
                args_text, args_redacted = self._encoded(args)
                result_text, result_redacted = self._encoded(result)
                connection.execute(
                    "INSERT OR REPLACE INTO actions (run_id, seq, tool, started, duration, args, result,"
                    " error, estimated_cost, actual_cost, decisions, redacted)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        seq,
                        tool,
                        started,
                        duration,
                        args_text,
                        result_text,
                        error,
                        estimated,
                        actual,
                        dumps(decisions),
                        args_redacted or result_redacted,
                    ),
                )
            else:  # "end"
                _, run_id, ended, status, output, error, cost = record
                text, redacted = self._encoded(output)
                connection.execute(
                    "UPDATE runs SET ended = ?, status = ?, output = ?, error = ?, cost = ?,"
                    " redacted = redacted OR ? WHERE run_id = ?",
                    (ended, status, text, error, cost, redacted, run_id),
                )
        connection.execute("COMMIT")
        for event in waiting:
            event.set()
        return stop

    def _encoded(self, plain: Any) -> tuple[str, bool]:
        if self._redact is None:
            return dumps(plain), False
        redacted, changed = self._redact(plain)
        return dumps(redacted), changed

    # -- reading

    def runs(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        """Stored runs, newest first, filtered by service, status and start time (Unix seconds)."""
        clauses, values = [], []
        for column, operator, value in (
            ("service", "=", service),
            ("status", "=", status),
            ("started", ">=", since),
            ("started", "<", until),
        ):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                values.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = " LIMIT ?" if limit is not None else ""
        if limit is not None:
            values.append(limit)
        with self._reader() as connection:
            rows = connection.execute(
                "SELECT run_id, service, agent, function, started, ended, status, input, output, error, cost,"
                f" redacted FROM runs{where} ORDER BY started DESC{tail}",
                values,
            ).fetchall()
        return [RunRecord._make(row) for row in rows]

    def actions(self, run_id: str) -> list[ActionRecord]:
        """The stored actions of ``run_id``, in order."""
        with self._reader() as connection:
            rows = connection.execute(
                "SELECT run_id, seq, tool, started, duration, args, result, error, estimated_cost,"
                " actual_cost,"
                " decisions, redacted FROM actions WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [ActionRecord._make(row) for row in rows]

    def prune(self, older_than: float) -> int:
        """Delete runs started before ``older_than`` (Unix seconds) and their actions; returns how many."""
        self.flush()
        with self._reader() as connection:
            connection.execute("BEGIN IMMEDIATE")
            old = "SELECT run_id FROM runs WHERE started < ?"
            connection.execute(f"DELETE FROM actions WHERE run_id IN ({old})", (older_than,))
            count = connection.execute("DELETE FROM runs WHERE started < ?", (older_than,)).rowcount
            connection.execute("COMMIT")
        return int(count)

    def _reader(self) -> _Reader:
        return _Reader(self)


class _Reader:
    """A short-lived connection for reads, closed on exit; driver errors become StoreError."""

    def __init__(self, log: RunLog) -> None:
        self._log = log
        self._connection: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._connection = self._log._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the run log {self._log.path}: {exc}", exc) from exc
        return self._connection

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._connection is not None
        self._connection.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"reading the run log {self._log.path} failed: {exc}", exc) from exc


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # a __str__ that raises must not lose the record
        return type(error).__name__
