"""ApprovalStore: approval requests and the decisions on them, kept in proctor's SQLite database.

A request is ``pending`` until people decide it (``approved``, ``denied``),
its waiter gives up (``expired``) or someone withdraws it (``cancelled``).
Each decision is a row of an append-only audit table; it and the status it
leads to are written in one transaction, so every process sharing the
database sees both or neither.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctor.approvals.approvers import Approvers
from proctor.approvals.base import ApprovalRequest
from proctor.errors import ApprovalError, StoreError
from proctor.pii.detector import PIIDetector
from proctor.runs._schema import connect, migrate
from proctor.runs.encode import dumps, snapshot
from proctor.runs.log import DEFAULT_PATH

__all__ = [
    "APPROVAL_STATUSES",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalStore",
    "DecisionRecord",
]

APPROVAL_STATUSES = ("pending", "approved", "denied", "expired", "cancelled")
"""Every status a request can have; only ``pending`` ones accept decisions."""

_COLUMNS = (
    "id, run_id, seq, service, agent, tool, args, rule_id, rule_name, message, approvers, quorum,"
    " created, deadline, status, decided"
)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """An approval request as stored.

    ``args`` are the action's arguments with personal data redacted;
    ``approvers`` the groups whose members may decide (empty: any listed
    person); ``quorum`` the distinct approvals needed. Times are Unix seconds;
    ``deadline`` is when the waiting call gives up (people may still decide a
    pending request after it), ``decided`` when the status last changed.
    """

    id: str
    run_id: str
    seq: int
    service: str
    agent: str
    tool: str
    args: Any
    rule_id: str
    rule_name: str | None
    message: str
    approvers: tuple[str, ...]
    quorum: int
    created: float
    deadline: float
    status: str
    decided: float | None

    @property
    def pending(self) -> bool:
        """Whether the request still accepts decisions."""
        return self.status == "pending"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One person's decision on a request, as the audit trail keeps it."""

    approval_id: str
    approver: str
    approved: bool
    comment: str | None
    at: float


class ApprovalStore:
    """Approval requests in one SQLite file, shared by every process that opens it.

    Parameters:
        path: the database; the run log's by default (``$PROCTOR_DB``, else ``.proctor/runs.db``).
            It is created, or brought to the current schema, when missing or older.
        pii: redact personal data in the arguments before they are stored, with the built-in
            detector (True), with this detector, or not at all (False).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, pii: bool | PIIDetector = True) -> None:
        self.path = Path(path if path is not None else os.environ.get("PROCTOR_DB") or DEFAULT_PATH)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the database {self.path}: {exc}", exc) from exc
        migrate(self.path)
        try:
            self._connection = connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}", exc) from exc
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._detector: PIIDetector | None = (
            pii if isinstance(pii, PIIDetector) else PIIDetector() if pii else None
        )

    # -- requests

    def stored_args(self, request: ApprovalRequest) -> Any:
        """``request``'s arguments as a record keeps them: plain JSON values, personal data redacted."""
        args = snapshot(dict(request.args))
        return self._detector.redact(args)[0] if self._detector is not None else args

    def create(self, request: ApprovalRequest) -> ApprovalRecord:
        """Store ``request`` as a new pending request, due ``request.timeout`` seconds from now."""
        if request.quorum < 1:
            raise ApprovalError(f"quorum must be 1 or more, got {request.quorum}")
        if not request.timeout >= 0:
            raise ApprovalError(f"timeout must be 0 or more seconds, got {request.timeout!r}")
        args = self.stored_args(request)
        created = time.time()
        record = ApprovalRecord(
            id=uuid.uuid4().hex,
            run_id=request.run_id,
            seq=request.seq,
            service=request.service,
            agent=request.agent,
            tool=request.tool,
            args=args,
            rule_id=request.rule_id,
            rule_name=request.rule_name,
            message=request.message,
            approvers=tuple(request.approvers),
            quorum=request.quorum,
            created=created,
            deadline=created + request.timeout,
            status="pending",
            decided=None,
        )
        row = (
            *(record.id, record.run_id, record.seq, record.service, record.agent, record.tool),
            dumps(args),
            *(record.rule_id, record.rule_name, record.message),
            json.dumps(list(record.approvers)),
            *(record.quorum, record.created, record.deadline, record.status, record.decided),
        )
        with self._transaction() as connection:
            connection.execute(f"INSERT INTO approvals ({_COLUMNS}) VALUES ({', '.join('?' * 16)})", row)
        return record

    def get(self, id: str) -> ApprovalRecord:
        """The request ``id``; ``ApprovalError`` when there is none."""
        with self._reading() as connection:
            return self._get(connection, id)

    def resolve(self, prefix: str) -> str:
        """The id of the one request whose id is ``prefix`` or starts with it (like git's short ids).

        ``ApprovalError`` when none does, or when several do (it lists them, newest first).
        """
        prefix = prefix.strip()
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT id, status, tool, agent FROM approvals"
                " WHERE id = ?1 OR (?1 != '' AND substr(id, 1, length(?1)) = ?1)"
                " ORDER BY id = ?1 DESC, created DESC LIMIT 11",
                (prefix,),
            ).fetchall()
        if not rows:
            raise ApprovalError(
                f"unknown approval id {prefix!r}; `proctor approvals list` shows the ids", prefix
            )
        if rows[0][0] == prefix or len(rows) == 1:
            return str(rows[0][0])
        shown = "".join(f"\n  {id}  {status:9} {tool} of {agent}" for id, status, tool, agent in rows[:10])
        more = "\n  ..." if len(rows) > 10 else ""
        raise ApprovalError(
            f"approval id prefix {prefix!r} is ambiguous: it starts several ids (newest first); "
            f"give more of the one you mean:{shown}{more}",
            prefix,
        )

    def list(self, status: str | None = None, limit: int | None = 100) -> builtins.list[ApprovalRecord]:
        """Requests, newest first: all, or those with ``status``; at most ``limit`` (None: no limit)."""
        if status is not None and status not in APPROVAL_STATUSES:
            raise ApprovalError(f"unknown status {status!r}; one of {', '.join(APPROVAL_STATUSES)}")
        params: builtins.list[Any] = [] if status is None else [status]
        where = "" if status is None else "WHERE status = ?"
        query = f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY created DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._reading() as connection:
            return [_record(row) for row in connection.execute(query, params)]

    def find(self, run_id: str, seq: int, tool: str, rule_id: str) -> ApprovalRecord | None:
        """The newest request for action ``seq`` of run ``run_id`` by rule ``rule_id``; None if none."""
        with self._reading() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE run_id = ? AND seq = ? AND tool = ? AND rule_id = ?"
                " ORDER BY created DESC, rowid DESC LIMIT 1",
                (run_id, seq, tool, rule_id),
            ).fetchone()
        return None if row is None else _record(row)

    def decisions(self, id: str) -> builtins.list[DecisionRecord]:
        """The decisions taken on request ``id``, oldest first; ``ApprovalError`` when there is no such."""
        with self._reading() as connection:
            self._get(connection, id)
            rows = connection.execute(
                "SELECT approval_id, approver, approved, comment, at FROM approval_decisions"
                " WHERE approval_id = ? ORDER BY at, rowid",
                (id,),
            ).fetchall()
        return [DecisionRecord(row[0], row[1], bool(row[2]), row[3], row[4]) for row in rows]

    def finished(self, ids: Collection[str]) -> builtins.list[ApprovalRecord]:
        """The requests among ``ids`` that are no longer pending, in one read (the waiters' poll)."""
        ids = builtins.list(ids)
        records: builtins.list[ApprovalRecord] = []
        with self._reading() as connection:
            for start in range(0, len(ids), 500):  # well under SQLite's limit on bound parameters
                chunk = ids[start : start + 500]
                records.extend(
                    _record(row)
                    for row in connection.execute(
                        f"SELECT {_COLUMNS} FROM approvals WHERE status != 'pending'"
                        f" AND id IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                )
        return records

    # -- changes

    def decide(
        self,
        id: str,
        approver: str,
        approved: bool,
        comment: str | None = None,
        approvers: Approvers | None = None,
    ) -> ApprovalRecord:
        """Record ``approver``'s decision on pending request ``id``; returns the request after it.

        Any denial denies the request; ``quorum`` distinct approvals approve
        it; until then it stays pending. ``approvers``, when given, must let
        ``approver`` decide for the request's groups (None: anyone may, as in
        a local setup without an approvers file). A person decides once.
        Raises ``ApprovalError`` saying why a decision is refused.
        """
        approver = approver.strip()
        if not approver:
            raise ApprovalError("say who decides: the approver's name is empty", id)
        comment = comment.strip() or None if comment is not None else None
        with self._transaction() as connection:
            record = self._get(connection, id)
            if not record.pending:
                raise ApprovalError(
                    f"approval {id} is already {record.status}; it takes no more decisions", id
                )
            if approvers is not None:
                refusal = approvers.refusal(approver, record.approvers)
                if refusal is not None:
                    raise ApprovalError(f"{refusal}, so they may not decide approval {id}", id)
            earlier = connection.execute(
                "SELECT approved FROM approval_decisions WHERE approval_id = ? AND approver = ?",
                (id, approver),
            ).fetchone()
            if earlier is not None:
                said = "approved" if earlier[0] else "denied"
                raise ApprovalError(f"{approver} already {said} approval {id}; each person decides once", id)
            now = time.time()
            connection.execute(
                "INSERT INTO approval_decisions (approval_id, approver, approved, comment, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (id, approver, int(approved), comment, now),
            )
            if approved:
                (count,) = connection.execute(
                    "SELECT COUNT(*) FROM approval_decisions WHERE approval_id = ? AND approved = 1", (id,)
                ).fetchone()
                status = "approved" if count >= record.quorum else "pending"
            else:
                status = "denied"
            if status != "pending":
                connection.execute(
                    "UPDATE approvals SET status = ?, decided = ? WHERE id = ?", (status, now, id)
                )
            return self._get(connection, id)

    def expire(self, id: str) -> ApprovalRecord:
        """Mark request ``id`` expired if it is still pending (its waiter gave up); returns it after."""
        return self._close(id, "expired")

    def cancel(self, id: str) -> ApprovalRecord:
        """Withdraw pending request ``id``; ``ApprovalError`` if it is already decided."""
        record = self._close(id, "cancelled")
        if record.status != "cancelled":
            raise ApprovalError(
                f"approval {id} is already {record.status}; only a pending one is cancelled", id
            )
        return record

    def extend(self, id: str, deadline: float) -> ApprovalRecord:
        """Move the deadline of pending request ``id`` to ``deadline`` if that is later; returns it after.

        For a resumed run that waits again on the request its first attempt made.
        """
        with self._transaction() as connection:
            connection.execute(
                "UPDATE approvals SET deadline = ? WHERE id = ? AND status = 'pending' AND deadline < ?",
                (deadline, id, deadline),
            )
            return self._get(connection, id)

    def close(self) -> None:
        """Close the connection to the database."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> ApprovalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ApprovalStore({str(self.path)!r})"

    # -- internals

    def _close(self, id: str, status: str) -> ApprovalRecord:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE approvals SET status = ?, decided = ? WHERE id = ? AND status = 'pending'",
                (status, time.time(), id),
            )
            return self._get(connection, id)

    @staticmethod
    def _get(connection: sqlite3.Connection, id: str) -> ApprovalRecord:
        row = connection.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise ApprovalError(f"unknown approval id {id!r}; `proctor approvals list` shows the ids", id)
        return _record(row)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read approvals from {self.path}: {exc}", exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its start (BEGIN IMMEDIATE)."""
        with self._lock:
            connection = self._connection
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise StoreError(f"cannot write approvals to {self.path}: {exc}", exc) from exc


def _record(row: tuple[Any, ...]) -> ApprovalRecord:
    (id, run_id, seq, service, agent, tool, args, rule_id, rule_name, message, approvers) = row[:11]
    quorum, created, deadline, status, decided = row[11:]
    return ApprovalRecord(
        id,
        run_id,
        seq,
        service,
        agent,
        tool,
        json.loads(args),
        rule_id,
        rule_name,
        message,
        tuple(json.loads(approvers)),
        quorum,
        created,
        deadline,
        status,
        decided,
    )
