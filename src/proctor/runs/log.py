"""RunLog: runs and their actions, written to proctor's database by a background thread.

Callers hand over a snapshot of each record and go on; a writer thread
redacts, encodes and commits records in batches. ``flush()`` returns once
everything handed over before it is committed, and is called at exit. A
commit survives the process being killed (SIGKILL included): the database
(SQLite's WAL, by default) keeps every committed transaction.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import pickle
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal

from proctor._signals import leave_signals_to_main_thread
from proctor.db import DEFAULT_PATH, Database, database_from_url
from proctor.db.records import ActionRecord, RunRecord
from proctor.errors import ConfigurationError, StoreError
from proctor.pii.detector import PIIDetector
from proctor.runs import termination
from proctor.runs.batch import BatchWriter
from proctor.runs.encode import NO_RESULT, error_value, freeze, to_json
from proctor.runs.writer_process import WriterProcess, WriterProcessError

__all__ = ["DEFAULT_PATH", "NO_RESULT", "RUN_STATUSES", "ActionRecord", "RunLog", "RunRecord", "decode"]

logger = logging.getLogger("proctor.runs")

RUN_STATUSES = ("running", "succeeded", "failed", "denied", "terminated", "cancelled")
"""How a run or an action ended; ``running`` until it has."""


def decode(text: str | None) -> Any:
    """The value of a stored JSON column; None for NULL."""
    return None if text is None else json.loads(text)


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
    """A run log in proctor's database.

    Parameters:
        path: the database: a file path (SQLite) or a URL (``sqlite:///runs.db``); ``$PROCTOR_DB``,
            else ``.proctor/runs.db``. It is created, or brought to the current schema.
        queue_size: records waiting for the writer at most.
        on_full: when the queue is full, ``"block"`` the caller until there
            is room (nothing is lost), or ``"drop"`` the record and count it
            in ``dropped`` (a warning is logged for the first one).
        pii: redact personal data found in stored values (``[REDACTED:email]``
            and so on) with the built-in detector (True), with this detector,
            or not at all (False). A record that was redacted says so.
        batch: records committed in one transaction at most.
        writer: where records are encoded and committed: on a thread of this process
            (``"thread"``), in a writer process of the log's own (``"process"``; see
            ``proctor.runs.writer_process``), or on the thread until it gets busy, then in a
            process (``"auto"``, on machines with two CPUs or more).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        queue_size: int = 10_000,
        on_full: Literal["block", "drop"] = "block",
        pii: bool | PIIDetector = True,
        batch: int = 4096,
        writer: Literal["auto", "thread", "process"] = "auto",
    ) -> None:
        if on_full not in ("block", "drop"):
            raise ConfigurationError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if writer not in ("auto", "thread", "process"):
            raise ConfigurationError(f"writer must be 'auto', 'thread' or 'process', got {writer!r}")
        if queue_size < 1 or batch < 1:
            raise ConfigurationError("queue_size and batch must be >= 1")
        self.database: Database = database_from_url(path)
        """Where the records go."""
        self.database.prepare()
        self._drop = on_full == "drop"
        self._detector: PIIDetector | None = (
            pii if isinstance(pii, PIIDetector) else PIIDetector() if pii else None
        )
        self._pii: PIIDetector | bool = pii if isinstance(pii, PIIDetector) else bool(pii)
        self._mode = writer
        self._cwd = os.getcwd()  # a relative database path names a file from here, in a writer process too
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
        self._sink: _Sink | None = None
        self._start_writer()
        _instances.add(self)

    def _start_writer(self) -> None:
        self._forked = False
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_loop, name=f"proctor-runlog:{self.database}", daemon=True
        )
        self._writer.start()
        atexit.register(self.close)
        termination.watch(_flush_every_log)

    @property
    def writer_pid(self) -> int | None:
        """The process id of the log's writer process while it writes the records; None while its
        thread does (see ``writer``)."""
        sink = self._sink
        return None if sink is None else sink.pid

    def _after_fork(self) -> None:
        """In a forked child: the parent's writer thread is not there, and its queue is the parent's
        to write. Start empty; the child's first record starts a writer of its own."""
        self._pending = deque()
        self._idle = False
        self._wake = SimpleQueue()
        self._room = threading.Condition()
        self._sink = None
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
        """Commit what is queued and stop the writer; later records are dropped and counted.

        The log can still be read.
        """
        if self._writer.is_alive():
            self._pending.append((_STOP,))
            self._wake.put(None)
            self._writer.join()
        self._closed = True
        self.database.close()
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
                "the run log %s dropped a record because %s; see RunLog.dropped", self.database, reason
            )

    # -- the writer's side

    def _write_loop(self) -> None:
        leave_signals_to_main_thread()
        pending = self._pending
        try:
            batch = BatchWriter(self.database, self._detector)
        except StoreError as exc:  # nothing can be written: count what comes as failed, never block callers
            logger.error("the run log %s cannot be opened for writing: %s", self.database, exc)
            self._closed = True
            self.failed += len(pending)
            pending.clear()
            return
        sink = self._sink = _Sink(self, batch)
        if self._mode == "process":
            sink.start_process()
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
                if sink.pid is not None and len(pending) < self._batch:
                    # Handing a pipe a few records at a time costs the callers a thread switch each:
                    # let a batch gather (a flush waits this much longer).
                    time.sleep(_LINGER)
                records = []
                for _ in range(min(len(pending), self._batch)):
                    records.append(pending.popleft())
                self._make_room()
                if self._commit(sink, records):
                    return
        finally:
            sink.close()
            self.failed = sink.failed
            self._make_room()

    def _make_room(self) -> None:
        """Wake callers waiting for room in a full queue; never blocks (a caller may hold the condition
        inside a signal handler that waits for this writer), and they look again every 0.1 s anyway."""
        if self._room.acquire(blocking=False):
            try:
                self._room.notify_all()
            finally:
                self._room.release()

    def _commit(self, sink: _Sink, records: list[tuple[Any, ...]]) -> bool:
        """Write ``records`` and answer the flushes among them; True when the writer should stop."""
        waiting: list[_Done] = []
        stop = False
        rows = []
        for record in records:
            kind = record[0]
            if kind == _FLUSH:
                waiting.append(record[1])
            elif kind == _STOP:
                stop = True
            else:
                rows.append(record)
        sink.write(rows, confirm=bool(waiting) or stop)
        self.failed = sink.failed
        for event in waiting:
            event.set()
        return stop

    # -- reading

    @property
    def path(self) -> Path:
        """The database file; ``ConfigurationError`` for a log kept in a database that is not a file."""
        return self.database.path

    def run(self, run_id: str) -> RunRecord | None:
        """The stored run ``run_id``, or None."""
        return self.database.run(run_id)

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
        return self.database.runs(
            service=service,
            agent=agent,
            status=status,
            since=since,
            until=until,
            limit=limit,
            oldest_first=oldest_first,
        )

    def actions(self, run_id: str) -> list[ActionRecord]:
        """The stored actions of ``run_id``, in the order they began."""
        return self.database.actions(run_id)

    def actions_of(self, run_ids: Sequence[str]) -> Iterator[ActionRecord]:
        """The stored actions of several runs, run by run in the order of ``run_ids``, each in order."""
        return self.database.actions_of(run_ids)

    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        """A leaner ``runs(since=, until=, limit=None, oldest_first=True)``: plain tuples of ``columns``.

        ``columns`` are ``RunRecord`` fields; ValueError for others.
        """
        unknown = [column for column in columns if column not in RunRecord._fields]
        if unknown:
            raise ValueError(f"not columns of the runs: {unknown}")
        return self.database.run_rows(columns, since=since, until=until)

    def action_rows(self, run_ids: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        """A leaner ``actions_of``: for each of ``run_ids`` in order, its actions in seq order.

        Each action is a plain tuple ``(run_id, *columns)``; ``columns`` are ``ActionRecord`` fields
        (ValueError for others).
        """
        unknown = [column for column in columns if column not in ActionRecord._fields]
        if unknown:
            raise ValueError(f"not columns of the actions: {unknown}")
        return self.database.action_rows(run_ids, columns)

    def spent(self, service: str, agent: str, since: float, until: float) -> float:
        """What ``service``/``agent`` was recorded to spend from ``since`` to ``until`` (Unix seconds).

        An action counts when it began in the span; a run's own call when it ended in it.
        """
        return self.database.spent(service, agent, since, until)

    def claim(self, run_id: str, note: BaseException) -> bool:
        """End a run that is still ``running`` as ``cancelled`` with ``note``, at once and only once.

        True for the one caller that did it; False when the run had ended (or another
        caller claimed it first). ``resume`` claims a run before it runs anything.
        """
        self.flush()
        return self.database.claim(run_id, time.time(), to_json(error_value(note)))

    def actions_cost(self, run_id: str) -> float:
        """What the actions of ``run_id`` cost, as recorded."""
        return self.database.actions_cost(run_id)

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
        return self.database.continued(run_ids)

    def unclaim(self, run_id: str) -> None:
        """Undo ``claim``: the run is ``running`` again (its continuation never started)."""
        self.database.unclaim(run_id)

    def prune(self, older_than: float) -> int:
        """Delete runs started before ``older_than`` (Unix seconds) and their actions; returns how many."""
        self.flush()
        return self.database.prune(older_than)

    def __repr__(self) -> str:
        return f"<RunLog {str(self.database)!r}>"


_BUSY_WINDOW = 0.5
"""Seconds over which a writer thread measures how busy it is."""

_LINGER = 0.005
"""Seconds a writer thread that hands batches to a process lets records gather before each batch."""

_BUSY_SHARE = 0.2
"""The share of its time spent writing that makes an ``"auto"`` log start a writer process."""


def _cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class _Sink:
    """Where a writer thread's records go: its own ``BatchWriter``, or a writer process once one runs.

    An ``"auto"`` log starts a process once its thread spends more than ``_BUSY_SHARE`` of
    ``_BUSY_WINDOW`` writing, on a machine with two CPUs or more; the thread keeps writing
    until the process is ready. A process that fails hands back to the thread, and the
    records it had not confirmed count as failed.
    """

    def __init__(self, log: RunLog, batch: BatchWriter) -> None:
        self._log = log
        self._batch = batch
        self._process: WriterProcess | None = None
        self._tried = log._mode != "auto" or _cpus() < 2 or os.name != "posix"
        self._lost = 0  # what processes that ended lost or left unconfirmed
        self._window = time.perf_counter()
        self._busy = 0.0

    @property
    def pid(self) -> int | None:
        """The writer process's id once it is ready (it writes from then on); else None."""
        process = self._process
        return None if process is None or not process.is_ready else process.pid

    @property
    def failed(self) -> int:
        process = self._process
        return self._batch.failed + self._lost + (0 if process is None else process.failed)

    def start_process(self) -> None:
        self._tried = True
        log = self._log
        if os.name != "posix":
            logger.warning("the run log %s writes on its thread: no writer process off POSIX", log.database)
            return
        try:
            self._process = WriterProcess(log.database.url, log._pii, cwd=log._cwd)
        except (OSError, WriterProcessError, pickle.PicklingError, AttributeError, TypeError) as exc:
            logger.warning("the run log %s writes on its own thread, not a process: %s", log.database, exc)

    def write(self, rows: list[tuple[Any, ...]], *, confirm: bool) -> None:
        """Commit or hand over ``rows``; with ``confirm``, return once all so far are committed."""
        process = self._process
        if process is not None:
            try:
                if process.ready():
                    if rows and self._log._detector is None:  # cheap to encode here: SQL alone there
                        process.send_rows(self._batch.rows(rows))
                    elif rows:
                        process.send(rows)
                    if confirm:
                        process.sync()
                    return
            except WriterProcessError as exc:
                self._give_up(process, exc)
        started = time.perf_counter()
        if rows:
            self._batch.commit(rows)
        now = time.perf_counter()
        self._busy += now - started
        if now - self._window >= _BUSY_WINDOW:
            if not self._tried and self._busy >= _BUSY_SHARE * (now - self._window):
                self.start_process()
            self._window, self._busy = now, 0.0

    def close(self) -> None:
        """Commit what was handed over, end the process, close the database."""
        process = self._process
        if process is not None:
            try:
                process.stop()
                self._lost += process.failed
                self._process = None
            except WriterProcessError as exc:
                self._give_up(process, exc)
        self._batch.close()

    def _give_up(self, process: WriterProcess, error: WriterProcessError) -> None:
        lost = process.failed + process.unconfirmed
        self._lost += lost
        self._process = None
        process.close()
        logger.error(
            "the run log %s writes on its own thread from now on: %s; %d record(s) it had not "
            "confirmed are counted in RunLog.failed",
            self._log.database,
            error,
            lost,
        )
