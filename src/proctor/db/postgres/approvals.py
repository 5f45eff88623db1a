"""The approval store's SQL on PostgreSQL: requests, the append-only audit trail, transactions."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from proctor.db.base import ApprovalChanges
from proctor.db.postgres.connection import SharedConnection
from proctor.db.postgres.schema import APPROVALS_LOCK
from proctor.db.records import ApprovalRecord, DecisionRecord

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["PostgresApprovalChanges", "PostgresApprovals"]

_COLUMNS = (
    "id, run_id, seq, service, agent, tool, args, rule_id, rule_name, message, approvers, quorum,"
    " created, deadline, status, decided"
)


class PostgresApprovalChanges(ApprovalChanges):
    """The statements of one approvals transaction, on the connection that holds it."""

    def __init__(self, connection: Connection[tuple[Any, ...]]) -> None:
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
        self._connection.execute(f"INSERT INTO approvals ({_COLUMNS}) VALUES ({', '.join(['%s'] * 16)})", row)

    def set_status(self, id: str, status: str, at: float) -> None:
        # The table's trigger notifies the waiters when this transaction commits.
        self._connection.execute(
            "UPDATE approvals SET status = %s, decided = %s WHERE id = %s", (status, at, id)
        )

    def set_deadline(self, id: str, deadline: float) -> None:
        self._connection.execute("UPDATE approvals SET deadline = %s WHERE id = %s", (deadline, id))

    def decision(self, id: str, approver: str) -> bool | None:
        row = self._connection.execute(
            "SELECT approved FROM approval_decisions WHERE approval_id = %s AND approver = %s", (id, approver)
        ).fetchone()
        return None if row is None else bool(row[0])

    def add_decision(self, decision: DecisionRecord) -> None:
        self._connection.execute(
            "INSERT INTO approval_decisions (approval_id, approver, approved, comment, at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (decision.approval_id, decision.approver, decision.approved, decision.comment, decision.at),
        )

    def approval_count(self, id: str) -> int:
        row = self._connection.execute(
            "SELECT COUNT(*) FROM approval_decisions WHERE approval_id = %s AND approved", (id,)
        ).fetchone()
        return int(row[0]) if row else 0


class PostgresApprovals:
    """The ``Database`` operations on approval requests, for ``PostgresDatabase``."""

    _shared: SharedConnection

    def _rows(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._shared.use("read approvals from") as connection:
            return connection.execute(query, params).fetchall()

    @contextmanager
    def approval_changes(self) -> Iterator[ApprovalChanges]:
        # Every approvals transaction takes one advisory lock first, as SQLite's BEGIN IMMEDIATE takes
        # the write lock: no other transaction on requests interleaves, on any host.
        with self._shared.use("write approvals to") as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (APPROVALS_LOCK,))
            yield PostgresApprovalChanges(connection)

    def approval(self, id: str) -> ApprovalRecord | None:
        with self._shared.use("read approvals from") as connection:
            return _get(connection, id)

    def approvals(self, status: str | None, limit: int | None) -> list[ApprovalRecord]:
        params: list[Any] = [] if status is None else [status]
        where = "" if status is None else "WHERE status = %s"
        query = f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY created DESC, position DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        return [_record(row) for row in self._rows(query, params)]

    def approvals_by_prefix(self, prefix: str, limit: int) -> list[ApprovalRecord]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM approvals"
            " WHERE id = %(prefix)s OR (%(prefix)s <> '' AND starts_with(id, %(prefix)s))"
            " ORDER BY id = %(prefix)s DESC, created DESC LIMIT %(limit)s",
            {"prefix": prefix, "limit": limit},  # type: ignore[arg-type]
        )
        return [_record(row) for row in rows]

    def approvals_of_run(self, run_id: str) -> list[ApprovalRecord]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM approvals WHERE run_id = %s ORDER BY created, position", (run_id,)
        )
        return [_record(row) for row in rows]

    def latest_approval(self, run_id: str, seq: int, tool: str, rule_id: str) -> ApprovalRecord | None:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM approvals WHERE run_id = %s AND seq = %s AND tool = %s AND rule_id = %s"
            " ORDER BY created DESC, position DESC LIMIT 1",
            (run_id, seq, tool, rule_id),
        )
        return _record(rows[0]) if rows else None

    def finished_approvals(self, ids: Collection[str]) -> list[ApprovalRecord]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM approvals WHERE status <> 'pending' AND id = ANY(%s)", (list(ids),)
        )
        return [_record(row) for row in rows]

    def decisions(self, id: str) -> list[DecisionRecord]:
        rows = self._rows(
            "SELECT approval_id, approver, approved, comment, at FROM approval_decisions"
            " WHERE approval_id = %s ORDER BY at, position",
            (id,),
        )
        return [DecisionRecord(row[0], row[1], bool(row[2]), row[3], row[4]) for row in rows]


def _get(connection: Connection[tuple[Any, ...]], id: str) -> ApprovalRecord | None:
    row = connection.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = %s", (id,)).fetchone()
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
