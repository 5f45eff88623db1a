"""The approval store's SQL on SQLite: requests, the append-only audit trail of decisions, transactions."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proctor.db.base import ApprovalChanges
from proctor.db.records import ApprovalRecord, DecisionRecord
from proctor.db.sqlite.schema import connect
from proctor.errors import StoreError

__all__ = ["SQLiteApprovalChanges", "SQLiteApprovals"]

_COLUMNS = (
    "id, run_id, seq, service, agent, tool, args, rule_id, rule_name, message, approvers, quorum,"
    " created, deadline, status, decided"
)

_CHUNK = 500
"""Ids bound in one statement at most, well under SQLite's limit on bound parameters."""


class SQLiteApprovalChanges(ApprovalChanges):
    """The statements of one approvals transaction, on the connection that holds it."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def get(self, id: str) -> ApprovalRecord | None:
        return _get(self._connection, id)

    def add(self, record: ApprovalRecord) -> None:
        row = (
            *(record.id, record.run_id, record.seq, record.service, record.agent, record.tool),
            json.dumps(record.args, ensure_ascii=False, separators=(",", ":"), allow_nan=False),
            *(record.rule_id, record.rule_name, record.message),
            json.dumps(list(record.approvers)),
            *(record.quorum, record.created, record.deadline, record.status, record.decided),
        )
        self._connection.execute(f"INSERT INTO approvals ({_COLUMNS}) VALUES ({', '.join('?' * 16)})", row)

    def set_status(self, id: str, status: str, at: float) -> None:
        self._connection.execute(
            "UPDATE approvals SET status = ?, decided = ? WHERE id = ?", (status, at, id)
        )

    def set_deadline(self, id: str, deadline: float) -> None:
        self._connection.execute("UPDATE approvals SET deadline = ? WHERE id = ?", (deadline, id))

    def decision(self, id: str, approver: str) -> bool | None:
        row = self._connection.execute(
            "SELECT approved FROM approval_decisions WHERE approval_id = ? AND approver = ?", (id, approver)
        ).fetchone()
        return None if row is None else bool(row[0])

    def add_decision(self, decision: DecisionRecord) -> None:
        self._connection.execute(
            "INSERT INTO approval_decisions (approval_id, approver, approved, comment, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (decision.approval_id, decision.approver, int(decision.approved), decision.comment, decision.at),
        )

    def approval_count(self, id: str) -> int:
        (count,) = self._connection.execute(
            "SELECT COUNT(*) FROM approval_decisions WHERE approval_id = ? AND approved = 1", (id,)
        ).fetchone()
        return int(count)


class SQLiteApprovals:
    """The ``Database`` operations on approval requests, for ``SQLiteDatabase``.

    They share one connection, which one thread uses at a time.
    """

    _file: Path
    _lock: threading.Lock
    _connection: sqlite3.Connection | None

    def _connected(self) -> sqlite3.Connection:
        """The shared connection, opened on first use; the caller holds ``_lock``."""
        if self._connection is None:
            self._connection = connect(self._file)
        return self._connection

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connected()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read approvals from {self._file}: {exc}", exc) from exc

    @contextmanager
    def approval_changes(self) -> Iterator[ApprovalChanges]:
        # BEGIN IMMEDIATE takes the database's write lock at once: no other writer interleaves.
        with self._lock:
            connection: sqlite3.Connection | None = None
            try:
                connection = self._connected()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield SQLiteApprovalChanges(connection)
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection is not None and connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise StoreError(f"cannot write approvals to {self._file}: {exc}", exc) from exc

    def approval(self, id: str) -> ApprovalRecord | None:
        with self._reading() as connection:
            return _get(connection, id)

    def approvals(self, status: str | None, limit: int | None) -> list[ApprovalRecord]:
        params: list[Any] = [] if status is None else [status]
        where = "" if status is None else "WHERE status = ?"
        query = f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY created DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._reading() as connection:
            return [_record(row) for row in connection.execute(query, params)]

    def approvals_by_prefix(self, prefix: str, limit: int) -> list[ApprovalRecord]:
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM approvals"
                " WHERE id = ?1 OR (?1 != '' AND substr(id, 1, length(?1)) = ?1)"
                " ORDER BY id = ?1 DESC, created DESC LIMIT ?2",
                (prefix, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def approvals_of_run(self, run_id: str) -> list[ApprovalRecord]:
        with self._reading() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE run_id = ? ORDER BY created, rowid", (run_id,)
            ).fetchall()
        return [_record(row) for row in rows]

    def latest_approval(self, run_id: str, seq: int, tool: str, rule_id: str) -> ApprovalRecord | None:
        with self._reading() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE run_id = ? AND seq = ? AND tool = ? AND rule_id = ?"
                " ORDER BY created DESC, rowid DESC LIMIT 1",
                (run_id, seq, tool, rule_id),
            ).fetchone()
        return None if row is None else _record(row)

    def finished_approvals(self, ids: Collection[str]) -> list[ApprovalRecord]:
        ids = list(ids)
        records: list[ApprovalRecord] = []
        with self._reading() as connection:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                records.extend(
                    _record(row)
                    for row in connection.execute(
                        f"SELECT {_COLUMNS} FROM approvals WHERE status != 'pending'"
                        f" AND id IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                )
        return records

    def decisions(self, id: str) -> list[DecisionRecord]:
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT approval_id, approver, approved, comment, at FROM approval_decisions"
                " WHERE approval_id = ? ORDER BY at, rowid",
                (id,),
            ).fetchall()
        return [DecisionRecord(row[0], row[1], bool(row[2]), row[3], row[4]) for row in rows]


def _get(connection: sqlite3.Connection, id: str) -> ApprovalRecord | None:
    row = connection.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (id,)).fetchone()
    return None if row is None else _record(row)


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
