"""DurableChannel: approval requests that wait in proctor's database for people to decide them."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection

from proctor.approvals.approvers import Approvers, approvers_path
from proctor.approvals.base import ApprovalDecision, ApprovalRequest
from proctor.approvals.notify import WebhookNotifier
from proctor.approvals.polling import PollingChannel
from proctor.approvals.store import ApprovalError, ApprovalRecord, ApprovalStore
from proctor.db import database_from_url
from proctor.errors import ConfigurationError
from proctor.runs.default import run_log

__all__ = ["DurableChannel"]

logger = logging.getLogger("proctor.approvals")


class DurableChannel(PollingChannel):
    """Writes each request to the database and waits there for people's decisions.

    People decide from any process that shares the database: ``proctor
    approvals approve ID``, the web console, or ``ApprovalStore.decide``. The
    request is written before anyone is notified, so it outlives a failed
    webhook and a waiter that dies; a resumed run (``request.resuming``: same
    run id, action number, tool, rule and arguments) waits on the request its
    first attempt made, or takes the decision people gave it meanwhile,
    instead of asking again. Any other call asks anew.
    When the timeout passes the request is marked expired and ``request``
    returns None.

    Parameters:
        store: where requests are kept; by default an ``ApprovalStore`` on the
            database of the run log in use (``$PROCTOR_DB``, else ``.proctor/runs.db``).
        approvers: whose groups' webhooks to notify; by default the approvers
            file in force (``$PROCTOR_APPROVERS``, else ``./approvers.yaml``), read at each request.
        notifier: sends the webhooks; a ``WebhookNotifier`` by default.
    """

    def __init__(
        self,
        store: ApprovalStore | None = None,
        approvers: Approvers | None = None,
        notifier: WebhookNotifier | None = None,
    ) -> None:
        self._store = store
        self._approvers = approvers
        self._notifier = notifier
        self._stores: dict[str, ApprovalStore] = {}  # by database URL
        self._lock = threading.Lock()

    def submit(self, request: ApprovalRequest) -> str:
        """Write ``request`` (or find the one a resumed run's first attempt made); returns its id."""
        store = self.store()
        record = None
        if request.resuming:  # the request the run's first attempt made, for the very same call
            record = store.find(request.run_id, request.seq, request.tool, request.rule_id)
            if record is not None and record.args != store.stored_args(request):
                record = None
        if record is None or record.status in ("expired", "cancelled"):
            record = store.create(request)
            self._notify(record)
        elif record.pending:
            record = store.extend(record.id, time.time() + request.timeout)
        if record.pending:
            logger.warning(
                "%s of %s waits up to %gs for approval %s (rule %s): decide with "
                "`proctor approvals approve %s` (or `deny`), or in `proctor serve`",
                request.tool,
                request.agent,
                request.timeout,
                record.id,
                request.rule_id,
                record.id,
            )
        return record.id

    def poll(self, tickets: Collection[str]) -> dict[str, ApprovalDecision | None]:
        store = self.store()
        return {record.id: _decision(store, record) for record in store.finished(tickets)}

    def expire(self, ticket: str) -> ApprovalDecision | None:
        store = self.store()
        return _decision(store, store.expire(ticket))  # a decision that came in meanwhile wins

    def cancel(self, ticket: str) -> None:
        with contextlib.suppress(ApprovalError):  # decided just before: nothing is left to withdraw
            self.store().cancel(ticket)

    def wakeups(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """The database's own announcements, where it makes them (PostgreSQL's LISTEN/NOTIFY)."""
        return self.store().database.on_approval_change(wake)

    def store(self) -> ApprovalStore:
        """The store requests go to now: the one given, else the run log's database."""
        if self._store is not None:
            return self._store
        log = run_log()
        url = (log.database if log is not None else database_from_url()).url
        with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._stores[url] = ApprovalStore(url)
        return store

    def _notify(self, record: ApprovalRecord) -> None:
        approvers = self._approvers
        if approvers is None:
            path = approvers_path()
            if path is None:
                return
            try:
                approvers = Approvers.load(path)
            except ConfigurationError as exc:
                logger.warning("approval %s: no webhooks sent: %s", record.id, exc)
                return
        nobody = [group for group in record.approvers if not approvers.members(group)]
        if nobody:
            logger.warning(
                "approval %s names group(s) %s with nobody in them%s: nobody can approve it; add people with "
                "`proctor approvers add NAME --group GROUP`",
                record.id,
                ", ".join(nobody),
                f" in {approvers.path}" if approvers.path is not None else "",
            )
        if self._notifier is None:
            with self._lock:
                if self._notifier is None:
                    self._notifier = WebhookNotifier()
        self._notifier.notify(record, approvers)


def _decision(store: ApprovalStore, record: ApprovalRecord) -> ApprovalDecision | None:
    """What the waiting call gets for ``record``, now that it is not pending."""
    if record.status == "expired":
        return None
    if record.status == "cancelled":
        return ApprovalDecision(False, None, "the approval request was cancelled")
    decisions = store.decisions(record.id)
    if record.status == "denied":
        denial = next(decision for decision in decisions if not decision.approved)
        return ApprovalDecision(False, denial.approver, denial.comment)
    approvals = [decision for decision in decisions if decision.approved]
    if len(approvals) == 1:
        return ApprovalDecision(True, approvals[0].approver, approvals[0].comment)
    comments = "; ".join(f"{each.approver}: {each.comment}" for each in approvals if each.comment)
    return ApprovalDecision(True, ", ".join(each.approver for each in approvals), comments or None)
