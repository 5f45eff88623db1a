"""RunLog: runs and their actions, written to SQLite (WAL) by a background thread.

Callers hand over a snapshot of each record and go on; a writer thread
redacts, encodes and commits records in batches. ``flush()`` returns once
everything handed over before it is committed, and is called at exit. A
commit survives the process being killed (SIGKILL included): SQLite's WAL
keeps every committed transaction.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import marshal
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal, NamedTuple

from proctor._signals import leave_signals_to_main_thread
from proctor.errors import ConfigurationError, StoreError
from proctor.pii.detector import PIIDetector
from proctor.runs import termination
from proctor.runs._schema import connect, migrate
from proctor.runs.encode import Marshalled, error_value, freeze, thaw, to_json

__all__ = ["DEFAULT_PATH", "NO_RESULT", "RUN_STATUSES", "ActionRecord", "RunLog", "RunRecord", "decode"]

logger = logging.getLogger("proctor.runs")

DEFAULT_PATH = ".proctor/runs.db"
"""Where the run log lives when neither the caller nor ``PROCTOR_DB`` says."""

RUN_STATUSES = ("running", "succeeded", "failed", "denied", "terminated", "cancelled")
"""How a run or an action ended; ``running`` until it has."""


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""Pass as ``result``/``output`` for a call that did not return (it raised, or never ran): stored as NULL."""


def decode(text: str | None) -> Any:
    """The value of a stored JSON column; None for NULL."""
    return None if text is None else json.loads(text)


class RunRecord(NamedTuple):
    """One run as stored. JSON columns are text; ``decode`` them when needed."""

    run_id: str
    service: str
    agent: str
    tool: str
    function: str
    started: float
    ended: float | None
    status: str
    input: str | None
    output: str | None
    error: str | None
    labels: str | None
    estimated_cost: float | None
    actual_cost: float | None
    cost: float
    decisions: str | None
    approval: str | None
    effects: str | None
    resumed_from: str | None
    """The run this one continues (``proctor.resume``), else None."""
    redacted: bool


class ActionRecord(NamedTuple):
    """One action of a run as stored. ``args`` are as called (after ``modify``);
    ``requested_args`` as the caller passed them, when a rule changed them."""

    run_id: str
    seq: int
    tool: str
    service: str
    agent: str
    started: float
    duration: float | None
    status: str
    args: str | None
    requested_args: str | None
    result: str | None
    error: str | None
    labels: str | None
    estimated_cost: float | None
    actual_cost: float | None
    decisions: str | None
    approval: str | None
    effects: str | None
    redacted: bool


# What a run read from the log says it cost: a run that never ended (its process died) has no total
# stored, so it is what its actions spent.
_COST = (
    "CASE WHEN status = 'running' THEN"
    " (SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE actions.run_id = runs.run_id)"
    " ELSE cost END"
)


def _selected(columns: Sequence[str]) -> str:
    """The SELECT list that reads ``columns`` of the runs, ``cost`` as a run read from the log has it."""
    return ", ".join(_COST if column == "cost" else column for column in columns)


_RUN_SELECT = _selected(RunRecord._fields)
_ACTION_COLUMNS = ", ".join(ActionRecord._fields)

_instances: weakref.WeakSet[RunLog] = weakref.WeakSet()
"""The logs of this process, for the fork handler."""


def _after_fork_in_child() -> None:
    for log in list(_instances):
        log._after_fork()


def _flush_every_log(timeout: float) -> None:
    """Flush each run log of this process, waiting at most ``timeout`` seconds for each (SIGTERM, exit)."""
    for log in list(_instances):
        if not log._closed or log._writer.is_alive():
            log.flush(timeout)


os.register_at_fork(after_in_child=_after_fork_in_child)

_START_RUN = (
    "INSERT OR IGNORE INTO runs (run_id, service, agent, tool, function, started, status, input, labels,"
    " redacted) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)"
)
_START_RESUMED_RUN = (
    "INSERT OR IGNORE INTO runs (run_id, service, agent, tool, function, started, status, input, labels,"
    " redacted, resumed_from) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)"
)
_ADD_ACTION = f"INSERT OR REPLACE INTO actions ({_ACTION_COLUMNS}) VALUES ({', '.join('?' * 19)})"
# Most actions: no modify, error, labels, approval, decision or redaction. Every parameter bound
# costs the writer; the columns left out take their defaults.
_ADD_PLAIN_ACTION = (
    "INSERT OR REPLACE INTO actions (run_id, seq, tool, service, agent, started, duration, status, args,"
    f" result, estimated_cost, actual_cost) VALUES ({', '.join('?' * 12)})"
)
_END_RUN = (
    "UPDATE runs SET ended = ?, status = ?, output = ?, error = ?, estimated_cost = ?, actual_cost = ?,"
    " cost = ?, decisions = ?, approval = ?, effects = ?, redacted = redacted OR ? WHERE run_id = ?"
)
_ORDER = {_START_RUN: 0, _START_RESUMED_RUN: 0, _ADD_ACTION: 1, _ADD_PLAIN_ACTION: 1, _END_RUN: 2}
"""Run starts, then actions, then run ends: a run's end updates the row its start made."""

_FLUSH = "flush"


class _Done:
    """A one-shot signal from the writer to a flushing caller, made of a bare lock.

    Unlike ``threading.Event`` it holds no Python-level lock between bytecodes, so a
    SIGTERM handler that flushes cannot deadlock with the code it interrupted.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


_STOP = "stop"


class RunLog:
    """A run log in one SQLite file.

    Parameters:
        path: the database file; ``$PROCTOR_DB``, else ``.proctor/runs.db``.
        queue_size: records waiting for the writer at most.
        on_full: when the queue is full, ``"block"`` the caller until there
            is room (nothing is lost), or ``"drop"`` the record and count it
            in ``dropped`` (a warning is logged for the first one).
        pii: redact personal data found in stored values (``[REDACTED:email]``
            and so on) with the built-in detector (True), with this detector,
            or not at all (False). A record that was redacted says so.
        batch: records committed in one transaction at most.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        queue_size: int = 10_000,
        on_full: Literal["block", "drop"] = "block",
        pii: bool | PIIDetector = True,
        batch: int = 4096,
    ) -> None:
        if on_full not in ("block", "drop"):
            raise ConfigurationError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if queue_size < 1 or batch < 1:
            raise ConfigurationError("queue_size and batch must be >= 1")
        self.path = Path(path if path is not None else os.environ.get("PROCTOR_DB") or DEFAULT_PATH)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the run log {self.path}: {exc}", exc) from exc
        self._drop = on_full == "drop"
        self._detector: PIIDetector | None = (
            pii if isinstance(pii, PIIDetector) else PIIDetector() if pii else None
        )
        self._batch = batch
        self._capacity = queue_size
        self.dropped = 0
        """Records dropped because the queue was full (``on_full="drop"``) or the log was closed."""
        self.failed = 0
        """Records the database refused to take (a disk full, a file locked for too long)."""
        # The caller's side is a deque append (atomic); the writer sleeps on _wake when idle.
        self._pending: deque[tuple[Any, ...]] = deque()
        self._idle = False
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._room = threading.Condition()
        self._closed = False
        self._forked = False
        self._migrate()
        self._start_writer()
        _instances.add(self)

    def _start_writer(self) -> None:
        self._forked = False
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_loop, name=f"proctor-runlog:{self.path}", daemon=True
        )
        self._writer.start()
        atexit.register(self.close)
        termination.watch(_flush_every_log)

    def _after_fork(self) -> None:
        """In a forked child: the parent's writer thread is not there, and its queue is the parent's
        to write. Start empty; the child's first record starts a writer of its own."""
        self._pending = deque()
        self._idle = False
        self._wake = SimpleQueue()
        self._room = threading.Condition()
        if not self._closed:
            self._closed = self._forked = True

    # -- the caller's side

    def run_started(
        self,
        run_id: str,
        *,
        service: str,
        agent: str,
        tool: str,
        function: str,
        started: float,
        input: Any,
        labels: Any = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record that a run began at ``started`` (Unix seconds) with ``input``; ``resumed_from``: the
        run it continues, for a run made by ``proctor.resume``."""
        if not termination.watching():  # the log was opened off the main thread: try again from here
            termination.watch(_flush_every_log)
        self._put(
            (
                "run",
                run_id,
                service,
                agent,
                tool,
                function,
                started,
                freeze(input),
                freeze(labels),
                resumed_from,
            )
        )

    def action(
        self,
        run_id: str,
        seq: int,
        tool: str,
        service: str,
        agent: str,
        started: float,
        duration: float | None,
        status: str,
        args: Any,
        requested_args: Any = None,
        result: Any = NO_RESULT,
        error: BaseException | None = None,
        labels: Any = None,
        estimated_cost: float | None = None,
        actual_cost: float | None = None,
        decisions: Sequence[Any] = (),
        approval: Any = None,
        effects: Any = None,
    ) -> None:
        """Record one finished action of a run: a decorated call inside it, numbered ``seq``.

        ``result`` is what the function returned (``NO_RESULT``: it raised or never ran);
        ``duration`` None when it never ran. ``effects`` are the run's nondeterminism drawn
        so far (see ``run_finished``), kept so that a run cut off can be resumed exactly.
        (Positional arguments are the decorator's fast path.)
        """
        self._put(
            (
                "action",
                run_id,
                seq,
                tool,
                service,
                agent,
                started,
                duration,
                status,
                freeze(args),
                None if requested_args is None else freeze(requested_args),
                result if result is NO_RESULT else freeze(result),
                None if error is None else error_value(error),
                None if labels is None else freeze(labels),
                estimated_cost,
                actual_cost,
                freeze(decisions) if decisions else (),
                None if approval is None else freeze(approval),
                None if effects is None else freeze(effects),
            )
        )

    def run_finished(
        self,
        run_id: str,
        *,
        status: str,
        ended: float,
        output: Any = NO_RESULT,
        error: BaseException | None = None,
        estimated_cost: float | None = None,
        actual_cost: float | None = None,
        cost: float = 0.0,
        decisions: Sequence[Any] = (),
        approval: Any = None,
        effects: Any = None,
    ) -> None:
        """Record how a run ended: its status, what the caller got (``output``) or the error, its cost.

        ``actual_cost`` is the top-level call's own; ``cost`` the run's total, its actions included.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        self._put(
            (
                "end",
                run_id,
                ended,
                status,
                output if output is NO_RESULT else freeze(output),
                None if error is None else error_value(error),
                estimated_cost,
                actual_cost,
                cost,
                freeze(decisions) if decisions else (),
                None if approval is None else freeze(approval),
                None if effects is None else freeze(effects),
            )
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed (or counted in ``failed``); False if
        ``timeout`` ran out."""
        if not self._writer.is_alive():
            return not self._pending
        done = _Done()
        self._pending.append((_FLUSH, done))
        self._wake.put(None)
        return done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued and stop the writer; later records are dropped and counted."""
        if self._writer.is_alive():
            self._pending.append((_STOP,))
            self._wake.put(None)
            self._writer.join()
        self._closed = True
        atexit.unregister(self.close)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _put(self, record: tuple[Any, ...]) -> None:
        pending = self._pending
        if len(pending) >= self._capacity or self._closed:
            if self._forked:  # the first record of a forked child: it gets a writer of its own
                self._start_writer()
                pending = self._pending
            elif self._drop or self._closed or not self._writer.is_alive():
                self._dropped()
                return
            with self._room:
                while len(pending) >= self._capacity and self._writer.is_alive():
                    self._wake.put(None)
                    self._room.wait(0.1)
        pending.append(record)
        if self._idle:
            self._wake.put(None)

    def _dropped(self) -> None:
        self.dropped += 1
        if self.dropped == 1:
            reason = "it is closed" if self._closed else "its queue is full"
            logger.warning(
                "the run log %s dropped a record because %s; see RunLog.dropped", self.path, reason
            )

    # -- the writer's side

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _migrate(self) -> None:
        migrate(self.path)

    def _write_loop(self) -> None:
        leave_signals_to_main_thread()
        pending = self._pending
        try:
            connection = self._connect()
        except (
            sqlite3.Error
        ) as exc:  # nothing can be written: count what comes as failed, never block callers
            logger.error("the run log %s cannot be opened for writing: %s", self.path, exc)
            self._closed = True
            self.failed += len(pending)
            pending.clear()
            return
        try:
            while True:
                if not pending:
                    self._idle = True
                    if not pending:  # a caller that saw _idle unset appended before this check
                        with contextlib.suppress(Empty):
                            self._wake.get(timeout=0.1)
                    while not self._wake.empty():
                        self._wake.get_nowait()
                    self._idle = False
                    continue
                records = []
                for _ in range(min(len(pending), self._batch)):
                    records.append(pending.popleft())
                self._make_room()
                if self._commit(connection, records):
                    return
        finally:
            connection.close()
            self._make_room()

    def _make_room(self) -> None:
        """Wake callers waiting for room in a full queue; never blocks (a caller may hold the condition
        inside a signal handler that waits for this writer), and they look again every 0.1 s anyway."""
        if self._room.acquire(blocking=False):
            try:
                self._room.notify_all()
            finally:
                self._room.release()

    def _commit(self, connection: sqlite3.Connection, records: list[tuple[Any, ...]]) -> bool:
        """Write ``records`` in one transaction; True when the writer should stop."""
        waiting: list[_Done] = []
        stop = False
        groups: dict[str, list[tuple[Any, ...]]] = {}  # statement: rows, in queue order
        for record in records:
            kind = record[0]
            if kind == _FLUSH:
                waiting.append(record[1])
            elif kind == _STOP:
                stop = True
            else:
                try:
                    statement, values = self._row(record)
                except Exception:  # a record that cannot be encoded is lost alone, counted
                    self.failed += 1
                    logger.exception("the run log %s could not encode a record", self.path)
                    continue
                rows = groups.get(statement)
                if rows is None:
                    rows = groups[statement] = []
                rows.append(values)
        ordered = [(statement, groups[statement]) for statement in sorted(groups, key=_ORDER.__getitem__)]
        for attempt in range(3):
            if not ordered or self._transaction(connection, ordered):
                break
            if attempt == 2:  # the database refuses the batch: try its records one by one
                for statement, rows in ordered:
                    for row in rows:
                        if not self._transaction(connection, [(statement, [row])]):
                            self.failed += 1
            else:
                time.sleep(0.05 * (attempt + 1))
        for event in waiting:
            event.set()
        return stop

    def _transaction(
        self, connection: sqlite3.Connection, batches: list[tuple[str, list[tuple[Any, ...]]]]
    ) -> bool:
        """Write ``batches`` in one transaction; False (logged, rolled back) if the database refused."""
        try:
            connection.execute("BEGIN")
            for statement, rows in batches:
                connection.executemany(statement, rows)
            connection.execute("COMMIT")
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:  # a value SQLite cannot take too
            if connection.in_transaction:
                connection.rollback()
            count = sum(len(rows) for _, rows in batches)
            logger.error("the run log %s could not write %d record(s): %s", self.path, count, exc)
            return False
        return True

    def _row(self, record: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        kind = record[0]
        if kind == "run":
            _, run_id, service, agent, tool, function, started, input_, labels, resumed_from = record
            redacted, input_text, labels_text = self._encoded(input_, labels)
            row: tuple[Any, ...] = (run_id, service, agent, tool, function, started)
            if resumed_from is not None:
                return _START_RESUMED_RUN, (*row, input_text or "null", labels_text, redacted, resumed_from)
            return _START_RUN, (*row, input_text or "null", labels_text, redacted)
        if kind == "action":
            (_, run_id, seq, tool, service, agent, started, duration, status, args, requested) = record[:11]
            result, error, labels, estimated, actual, decisions, approval, effects = record[11:]
            if self._detector is None:  # the common shape, without the general loop
                if type(args) is Marshalled:
                    args = marshal.loads(args.data)
                if type(result) is Marshalled:
                    result = marshal.loads(result.data)
                if (
                    requested is None
                    and error is None
                    and labels is None
                    and approval is None
                    and not decisions
                    and effects is None
                ):
                    return _ADD_PLAIN_ACTION, (
                        run_id,
                        seq,
                        tool,
                        service,
                        agent,
                        started,
                        duration,
                        status,
                        to_json(args),
                        None if result is NO_RESULT else to_json(result),
                        estimated,
                        actual,
                    )
                redacted = False
                args_text = to_json(args)
                result_text = None if result is NO_RESULT else to_json(result)
                requested_text = None if requested is None else to_json(thaw(requested))
                error_text = None if error is None else to_json(error)
                labels_text = None if labels is None else to_json(labels)
                approval_text = None if approval is None else to_json(approval)
            else:
                redacted, args_text, requested_text, result_text, error_text, labels_text, approval_text = (
                    self._encoded(args, requested, result, error, labels, approval)
                )
                args_text = args_text or "null"  # None is "null"; NULL is for what was not there
                result_text = None if result is NO_RESULT else result_text or "null"
            return _ADD_ACTION, (
                run_id,
                seq,
                tool,
                service,
                agent,
                started,
                duration,
                status,
                args_text,
                requested_text,
                result_text,
                error_text,
                labels_text,
                estimated,
                actual,
                to_json(thaw(decisions)) if decisions else "[]",
                approval_text,
                None if effects is None else to_json(thaw(effects)),
                redacted,
            )
        _, run_id, ended, status, output, error, estimated, actual, cost, decisions, approval, effects = (
            record
        )
        redacted, output_text, error_text, approval_text = self._encoded(output, error, approval)
        return _END_RUN, (
            ended,
            status,
            None if output is NO_RESULT else output_text or "null",
            error_text,
            estimated,
            actual,
            cost,
            to_json(thaw(decisions)) if decisions else "[]",
            approval_text,
            None if effects is None else to_json(thaw(effects)),
            redacted,
            run_id,
        )

    def _encoded(self, *values: Any) -> tuple[Any, ...]:
        """Whether the detector redacted any of ``values``, then their JSON text (None for None)."""
        detector = self._detector
        if detector is None:
            return (
                False,
                *(None if value is None or value is NO_RESULT else to_json(thaw(value)) for value in values),
            )
        redacted = False
        texts: list[str | None] = []
        for value in values:
            if value is None or value is NO_RESULT:
                texts.append(None)
                continue
            value, kinds = detector.redact(thaw(value))
            redacted = redacted or bool(kinds)
            texts.append(to_json(value))
        return (redacted, *texts)

    # -- reading

    def run(self, run_id: str) -> RunRecord | None:
        """The stored run ``run_id``, or None."""
        with self._reader() as connection:
            row = connection.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def runs(
        self,
        *,
        service: str | None = None,
        agent: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        oldest_first: bool = False,
    ) -> list[RunRecord]:
        """Stored runs, newest first, filtered by service, agent, status and start time (Unix seconds)."""
        clauses, values = [], []
        for column, operator, value in (
            ("service", "=", service),
            ("agent", "=", agent),
            ("status", "=", status),
            ("started", ">=", since),
            ("started", "<", until),
        ):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                values.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if oldest_first else "DESC"
        tail = ""
        if limit is not None:
            tail = " LIMIT ?"
            values.append(limit)
        with self._reader() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_SELECT} FROM runs{where} ORDER BY started {order}, run_id{tail}", values
            ).fetchall()
        return [_run_record(row) for row in rows]

    def actions(self, run_id: str) -> list[ActionRecord]:
        """The stored actions of ``run_id``, in the order they began."""
        with self._reader() as connection:
            rows = connection.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [_action_record(row) for row in rows]

    def actions_of(self, run_ids: Sequence[str]) -> Iterator[ActionRecord]:
        """The stored actions of several runs, run by run in the order of ``run_ids``, each in order."""
        chunk = 500
        with self._reader() as connection:
            for start in range(0, len(run_ids), chunk):
                ids = run_ids[start : start + chunk]
                marks = ", ".join("?" * len(ids))
                rows = connection.execute(
                    f"SELECT {_ACTION_COLUMNS} FROM actions WHERE run_id IN ({marks}) ORDER BY run_id, seq",
                    ids,
                ).fetchall()
                by_run: dict[str, list[ActionRecord]] = {}
                for row in rows:
                    by_run.setdefault(row[0], []).append(_action_record(row))
                for run_id in ids:
                    yield from by_run.get(run_id, ())

    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        """A leaner ``runs(since=, until=, limit=None, oldest_first=True)``: plain tuples of ``columns``.

        ``columns`` are ``RunRecord`` fields; ValueError for others.
        """
        unknown = [column for column in columns if column not in RunRecord._fields]
        if unknown:
            raise ValueError(f"not columns of the runs: {unknown}")
        selected = _selected(columns)
        with self._reader() as connection:
            return connection.execute(
                f"SELECT {selected} FROM runs WHERE started >= ? AND started < ? ORDER BY started, run_id",
                (since, until),
            ).fetchall()

    def action_rows(self, run_ids: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        """A leaner ``actions_of``: for each of ``run_ids`` in order, its actions in seq order.

        Each action is a plain tuple ``(run_id, *columns)``; ``columns`` are ``ActionRecord`` fields
        (ValueError for others).
        """
        unknown = [column for column in columns if column not in ActionRecord._fields]
        if unknown:
            raise ValueError(f"not columns of the actions: {unknown}")
        selected = ", ".join(("run_id", *columns))
        chunk = 500
        with self._reader() as connection:
            for start in range(0, len(run_ids), chunk):
                ids = run_ids[start : start + chunk]
                marks = ", ".join("?" * len(ids))
                rows = connection.execute(
                    f"SELECT {selected} FROM actions WHERE run_id IN ({marks}) ORDER BY run_id, seq", ids
                ).fetchall()
                by_run: dict[str, list[tuple[Any, ...]]] = {}
                for row in rows:
                    by_run.setdefault(row[0], []).append(row)
                for run_id in ids:
                    yield by_run.get(run_id) or []

    def spent(self, service: str, agent: str, since: float, until: float) -> float:
        """What ``service``/``agent`` was recorded to spend from ``since`` to ``until`` (Unix seconds).

        An action counts when it began in the span; a run's own call when it ended in it.
        """
        with self._reader() as connection:
            (actions,) = connection.execute(
                "SELECT TOTAL(actual_cost) FROM actions WHERE service = ? AND agent = ?"
                " AND started >= ? AND started < ?",
                (service, agent, since, until),
            ).fetchone()
            (runs,) = connection.execute(
                "SELECT TOTAL(actual_cost) FROM runs WHERE service = ? AND agent = ?"
                " AND ended >= ? AND ended < ?",
                (service, agent, since, until),
            ).fetchone()
        return float(actions) + float(runs)

    def claim(self, run_id: str, note: BaseException) -> bool:
        """End a run that is still ``running`` as ``cancelled`` with ``note``, at once and only once.

        True for the one caller that did it; False when the run had ended (or another
        caller claimed it first). ``resume`` claims a run before it runs anything.
        """
        self.flush()
        with self._reader() as connection:
            connection.execute("BEGIN IMMEDIATE")
            count = connection.execute(
                "UPDATE runs SET status = 'cancelled', ended = ?, error = ?"
                " WHERE run_id = ? AND status = 'running'",
                (time.time(), to_json(error_value(note)), run_id),
            ).rowcount
            connection.execute("COMMIT")
        return count == 1

    def actions_cost(self, run_id: str) -> float:
        """What the actions of ``run_id`` cost, as recorded."""
        with self._reader() as connection:
            (total,) = connection.execute(
                "SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE run_id = ?", (run_id,)
            ).fetchone()
        return float(total)

    def chain(self, run: RunRecord) -> list[RunRecord]:
        """``run`` and the runs it continues (``proctor.resume``), the first of them first."""
        chain = [run]
        while chain[0].resumed_from is not None and len(chain) < 1000:
            earlier = self.run(chain[0].resumed_from)
            if earlier is None:
                break
            chain.insert(0, earlier)
        return chain

    def continued(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` that a resumed run continues."""
        found: set[str] = set()
        with self._reader() as connection:
            for start in range(0, len(run_ids), 500):
                ids = run_ids[start : start + 500]
                found.update(
                    row[0]
                    for row in connection.execute(
                        f"SELECT resumed_from FROM runs WHERE resumed_from IN ({', '.join('?' * len(ids))})",
                        ids,
                    )
                )
        return found

    def unclaim(self, run_id: str) -> None:
        """Undo ``claim``: the run is ``running`` again (its continuation never started)."""
        with self._reader() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL"
                " WHERE run_id = ? AND status = 'cancelled'",
                (run_id,),
            )
            connection.execute("COMMIT")

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

    def __repr__(self) -> str:
        return f"<RunLog {str(self.path)!r}>"


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord._make((*row[:-1], bool(row[-1])))


def _action_record(row: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord._make((*row[:-1], bool(row[-1])))


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
