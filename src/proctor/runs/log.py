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
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal

from proctor._signals import leave_signals_to_main_thread
from proctor.db import DEFAULT_PATH, Database, RowKind, RunWriter, database_from_url
from proctor.db.records import ActionRecord, RunRecord
from proctor.errors import ConfigurationError, StoreError
from proctor.pii.detector import PIIDetector
from proctor.runs import termination
from proctor.runs.encode import error_value, freeze, plain_json, thaw, to_json

__all__ = ["DEFAULT_PATH", "NO_RESULT", "RUN_STATUSES", "ActionRecord", "RunLog", "RunRecord", "decode"]

logger = logging.getLogger("proctor.runs")

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

_ORDER: dict[RowKind, int] = {"run": 0, "resumed_run": 0, "action": 1, "plain_action": 1, "end": 2}
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
        self.database: Database = database_from_url(path)
        """Where the records go."""
        self.database.prepare()
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
            writer = self.database.run_writer()
        except StoreError as exc:  # nothing can be written: count what comes as failed, never block callers
            logger.error("the run log %s cannot be opened for writing: %s", self.database, exc)
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
                if self._commit(writer, records):
                    return
        finally:
            writer.close()
            self._make_room()

    def _make_room(self) -> None:
        """Wake callers waiting for room in a full queue; never blocks (a caller may hold the condition
        inside a signal handler that waits for this writer), and they look again every 0.1 s anyway."""
        if self._room.acquire(blocking=False):
            try:
                self._room.notify_all()
            finally:
                self._room.release()

    def _commit(self, writer: RunWriter, records: list[tuple[Any, ...]]) -> bool:
        """Write ``records`` in one transaction; True when the writer should stop."""
        waiting: list[_Done] = []
        stop = False
        groups: dict[RowKind, list[tuple[Any, ...]]] = {}  # kind: rows, in queue order
        for record in records:
            kind = record[0]
            if kind == _FLUSH:
                waiting.append(record[1])
            elif kind == _STOP:
                stop = True
            else:
                try:
                    kind, values = self._row(record)
                except Exception:  # a record that cannot be encoded is lost alone, counted
                    self.failed += 1
                    logger.exception("the run log %s could not encode a record", self.database)
                    continue
                rows = groups.get(kind)
                if rows is None:
                    rows = groups[kind] = []
                rows.append(values)
        ordered = [(kind, groups[kind]) for kind in sorted(groups, key=_ORDER.__getitem__)]
        for attempt in range(3):
            if not ordered or self._write(writer, ordered):
                break
            if attempt == 2:  # the database refuses the batch: try its records one by one
                for kind, rows in ordered:
                    for row in rows:
                        if not self._write(writer, [(kind, [row])]):
                            self.failed += 1
            else:
                time.sleep(0.05 * (attempt + 1))
        for event in waiting:
            event.set()
        return stop

    def _write(self, writer: RunWriter, batches: list[tuple[RowKind, list[tuple[Any, ...]]]]) -> bool:
        """Write ``batches`` in one transaction; False (logged, nothing written) if the database refused."""
        try:
            writer.write(batches)
        except StoreError as exc:
            count = sum(len(rows) for _, rows in batches)
            logger.error("the run log %s could not write %d record(s): %s", self.database, count, exc)
            return False
        return True

    def _row(self, record: tuple[Any, ...]) -> tuple[RowKind, tuple[Any, ...]]:
        kind = record[0]
        if kind == "run":
            _, run_id, service, agent, tool, function, started, input_, labels, resumed_from = record
            redacted, input_text, labels_text = self._encoded(input_, labels)
            row: tuple[Any, ...] = (run_id, service, agent, tool, function, started)
            if resumed_from is not None:
                return "resumed_run", (*row, input_text or "null", labels_text, redacted, resumed_from)
            return "run", (*row, input_text or "null", labels_text, redacted)
        if kind == "action":
            (_, run_id, seq, tool, service, agent, started, duration, status, args, requested) = record[:11]
            result, error, labels, estimated, actual, decisions, approval, effects = record[11:]
            if (
                requested is None
                and error is None
                and labels is None
                and approval is None
                and not decisions
                and effects is None
            ):  # the common shape: 12 columns bound, not 19
                args_text, result_text, redacted = self._pair(args, result)
                if not redacted:
                    return "plain_action", (
                        run_id,
                        seq,
                        tool,
                        service,
                        agent,
                        started,
                        duration,
                        status,
                        args_text,
                        result_text,
                        estimated,
                        actual,
                    )
                requested_text = error_text = labels_text = approval_text = None
            else:
                redacted, args_text, requested_text, result_text, error_text, labels_text, approval_text = (
                    self._encoded(args, requested, result, error, labels, approval)
                )
                args_text = args_text or "null"  # None is "null"; NULL is for what was not there
                result_text = None if result is NO_RESULT else result_text or "null"
            return "action", (
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
        return "end", (
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
        redacted = False
        texts: list[str | None] = []
        for value in values:
            if value is None or value is NO_RESULT:
                texts.append(None)
                continue
            text, changed = self._json(value)
            redacted = redacted or changed
            texts.append(text)
        return (redacted, *texts)

    def _pair(self, args: Any, result: Any) -> tuple[str, str | None, bool]:
        """``_json`` of an action's args and result (None for ``NO_RESULT``), and whether either was
        redacted; one clean test for both when neither needs a scan."""
        detector = self._detector
        if detector is None:
            return to_json(thaw(args)), None if result is NO_RESULT else to_json(thaw(result)), False
        args_text = plain_json(thaw(args))
        if args_text is not None:
            if result is NO_RESULT:
                if detector.clean_json(args_text):
                    return args_text, None, False
            else:
                result_text = plain_json(thaw(result))
                # The JSON of [args, result]: what redact leaves alone in it, it leaves alone in each.
                if result_text is not None and detector.clean_json(f"[{args_text},{result_text}]"):
                    return args_text, result_text, False
        args_text, redacted = self._json(args)
        if result is NO_RESULT:
            return args_text, None, redacted
        result_text, result_redacted = self._json(result)
        return args_text, result_text, redacted or result_redacted

    def _json(self, frozen: Any) -> tuple[str, bool]:
        """The JSON text of a handed-over value, redacted when the log redacts, and whether it was."""
        value = thaw(frozen)
        detector = self._detector
        if detector is None:
            return to_json(value), False
        text = plain_json(value)
        if text is not None and detector.clean_json(text):  # nothing to redact: no walk, no copy
            return text, False
        value, kinds = detector.redact(value)
        return to_json(value), bool(kinds)

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
