"""ApprovalStore: approval requests and the decisions on them, kept in proctor's database.

A request is ``pending`` until people decide it (``approved``, ``denied``),
its waiter gives up (``expired``) or someone withdraws it (``cancelled``).
Each decision is a row of an append-only audit table; it and the status it
leads to are written in one transaction, so every process sharing the
database sees both or neither.
"""

from __future__ import annotations

import builtins
import os
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

from proctor.approvals.approvers import Approvers
from proctor.approvals.base import ApprovalRequest
from proctor.db import Database, database_from_url
from proctor.db.records import ApprovalRecord, DecisionRecord
from proctor.errors import ApprovalError
from proctor.pii.detector import PIIDetector
from proctor.runs.encode import snapshot

__all__ = [
    "APPROVAL_STATUSES",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalStore",
    "DecisionRecord",
]

APPROVAL_STATUSES = ("pending", "approved", "denied", "expired", "cancelled")
"""Every status a request can have; only ``pending`` ones accept decisions."""


class ApprovalStore:
    """Approval requests in proctor's database, shared by every process that opens it.

    Parameters:
        path: the database: a file path (SQLite) or a URL (``sqlite:///runs.db``); the run log's by
            default (``$PROCTOR_DB``, else ``.proctor/runs.db``). It is created, or brought to the
            current schema, when missing or older.
        pii: redact personal data in the arguments before they are stored, with the built-in
            detector (True), with this detector, or not at all (False).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, pii: bool | PIIDetector = True) -> None:
        self.database: Database = database_from_url(path)
        """Where the requests are kept."""
        self.database.prepare()
        self._detector: PIIDetector | None = (
            pii if isinstance(pii, PIIDetector) else PIIDetector() if pii else None
        )

    @property
    def path(self) -> Path:
        """The database file; ``ConfigurationError`` for a database that is not a file."""
        return self.database.path

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
        created = time.time()
        record = ApprovalRecord(
            id=uuid.uuid4().hex,
            run_id=request.run_id,
            seq=request.seq,
            service=request.service,
            agent=request.agent,
            tool=request.tool,
            args=self.stored_args(request),
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
        with self.database.approval_changes() as changes:
            changes.add(record)
        return record

    def get(self, id: str) -> ApprovalRecord:
        """The request ``id``; ``ApprovalError`` when there is none."""
        return _known(id, self.database.approval(id))

    def resolve(self, prefix: str) -> str:
        """The id of the one request whose id is ``prefix`` or starts with it (like git's short ids).

        ``ApprovalError`` when none does, or when several do (it lists them, newest first).
        """
        prefix = prefix.strip()
        records = self.database.approvals_by_prefix(prefix, 11)
        if not records:
            raise ApprovalError(
                f"unknown approval id {prefix!r}; `proctor approvals list` shows the ids", prefix
            )
        if records[0].id == prefix or len(records) == 1:
            return records[0].id
        shown = "".join(f"\n  {r.id}  {r.status:9} {r.tool} of {r.agent}" for r in records[:10])
        more = "\n  ..." if len(records) > 10 else ""
        raise ApprovalError(
            f"approval id prefix {prefix!r} is ambiguous: it starts several ids (newest first); "
            f"give more of the one you mean:{shown}{more}",
            prefix,
        )

    def list(self, status: str | None = None, limit: int | None = 100) -> builtins.list[ApprovalRecord]:
        """Requests, newest first: all, or those with ``status``; at most ``limit`` (None: no limit)."""
        if status is not None and status not in APPROVAL_STATUSES:
            raise ApprovalError(f"unknown status {status!r}; one of {', '.join(APPROVAL_STATUSES)}")
        return self.database.approvals(status, limit)

    def of_run(self, run_id: str) -> builtins.list[ApprovalRecord]:
        """The requests of run ``run_id``, oldest first."""
        return self.database.approvals_of_run(run_id)

    def find(self, run_id: str, seq: int, tool: str, rule_id: str) -> ApprovalRecord | None:
        """The newest request for action ``seq`` of run ``run_id`` by rule ``rule_id``; None if none."""
        return self.database.latest_approval(run_id, seq, tool, rule_id)

    def decisions(self, id: str) -> builtins.list[DecisionRecord]:
        """The decisions taken on request ``id``, oldest first; ``ApprovalError`` when there is no such."""
        self.get(id)
        return self.database.decisions(id)

    def finished(self, ids: Collection[str]) -> builtins.list[ApprovalRecord]:
        """The requests among ``ids`` that are no longer pending, in one read (the waiters' poll)."""
        return self.database.finished_approvals(ids)

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
        with self.database.approval_changes() as changes:
            record = _known(id, changes.get(id))
            if not record.pending:
                raise ApprovalError(
                    f"approval {id} is already {record.status}; it takes no more decisions", id
                )
            if approvers is not None:
                refusal = approvers.refusal(approver, record.approvers)
                if refusal is not None:
                    raise ApprovalError(f"{refusal}, so they may not decide approval {id}", id)
            earlier = changes.decision(id, approver)
            if earlier is not None:
                said = "approved" if earlier else "denied"
                raise ApprovalError(f"{approver} already {said} approval {id}; each person decides once", id)
            now = time.time()
            changes.add_decision(DecisionRecord(id, approver, approved, comment, now))
            if approved:
                status = "approved" if changes.approval_count(id) >= record.quorum else "pending"
            else:
                status = "denied"
            if status != "pending":
                changes.set_status(id, status, now)
            return _known(id, changes.get(id))

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
        with self.database.approval_changes() as changes:
            record = _known(id, changes.get(id))
            if record.pending and record.deadline < deadline:
                changes.set_deadline(id, deadline)
            return _known(id, changes.get(id))

    def close(self) -> None:
        """Close the connection to the database."""
        self.database.close()

    def __enter__(self) -> ApprovalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ApprovalStore({str(self.database)!r})"

    # -- internals

    def _close(self, id: str, status: str) -> ApprovalRecord:
        with self.database.approval_changes() as changes:
            record = _known(id, changes.get(id))
            if record.pending:
                changes.set_status(id, status, time.time())
                record = _known(id, changes.get(id))
            return record


def _known(id: str, record: ApprovalRecord | None) -> ApprovalRecord:
    """``record``; ``ApprovalError`` when there is no request ``id``."""
    if record is None:
        raise ApprovalError(f"unknown approval id {id!r}; `proctor approvals list` shows the ids", id)
    return record
