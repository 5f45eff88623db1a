"""Database: the backend the run log, the approval store and the console reach their records through.

``RunLog`` keeps its queue, writer thread and redaction, ``ApprovalStore`` its
quorum and status rules; a backend only stores and reads, in SQL or whatever
its database speaks. A backend subclasses ``Database``, sets ``SCHEME``
(which registers it for ``database_from_url``) and implements every abstract
method. Each method raises ``StoreError`` when the database fails, keeping
the driver's exception, so no driver's own exception escapes proctor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Literal

from proctor.db.records import ActionRecord, ApprovalRecord, DecisionCounts, DecisionRecord, RunRecord
from proctor.errors import ConfigurationError

__all__ = [
    "ApprovalChanges",
    "Database",
    "RowKind",
    "RunWriter",
    "known_schemes",
    "runs_query",
    "scheme_class",
]

_SCHEMES: dict[str, type[Database]] = {}

RowKind = Literal["run", "resumed_run", "action", "plain_action", "end"]
"""What a row handed to ``RunWriter.write`` records; ``RunWriter.write`` gives each kind's fields."""


def known_schemes() -> list[str]:
    """The URL schemes a backend serves, sorted."""
    return sorted(_SCHEMES)


def scheme_class(scheme: str) -> type[Database] | None:
    """The backend that serves URLs of ``scheme``; None when no backend does."""
    return _SCHEMES.get(scheme)


class RunWriter(ABC):
    """The run log writer's own connection to the database; one thread uses it."""

    @abstractmethod
    def write(self, batches: Sequence[tuple[RowKind, Sequence[tuple[Any, ...]]]]) -> None:
        """Write every row of ``batches`` in one transaction, batch after batch, or nothing.

        JSON fields are text; ``redacted`` says whether redaction changed a value. A row of kind:

        - ``run`` starts a run: ``(run_id, service, agent, tool, function, started, input, labels,
          redacted)``, status ``running``; a run already stored is left as it is.
        - ``resumed_run``: the same, then ``resumed_from``.
        - ``action`` stores an action: the ``ActionRecord`` fields in order; it replaces a stored
          action of the same run and ``seq``.
        - ``plain_action``: the same for an action without requested arguments, error, labels,
          decisions, approval, effects or redaction: ``(run_id, seq, tool, service, agent, started,
          duration, status, args, result, estimated_cost, actual_cost)``.
        - ``end`` ends a stored run: ``(ended, status, output, error, estimated_cost, actual_cost,
          cost, decisions, approval, effects, redacted, run_id)``; ``redacted`` adds to the stored flag.

        Raises ``StoreError`` when the database refuses a row (a value it cannot hold included);
        then nothing of ``batches`` is written.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""


class ApprovalChanges(ABC):
    """The reads and writes of one transaction on approval requests, which no other can interleave."""

    @abstractmethod
    def get(self, id: str) -> ApprovalRecord | None:
        """The request ``id``; None when there is none."""

    @abstractmethod
    def add(self, record: ApprovalRecord) -> None:
        """Store a new request."""

    @abstractmethod
    def set_status(self, id: str, status: str, at: float) -> None:
        """Give request ``id`` ``status``, decided at ``at`` (Unix seconds)."""

    @abstractmethod
    def set_deadline(self, id: str, deadline: float) -> None:
        """Move the deadline of request ``id`` to ``deadline``."""

    @abstractmethod
    def decision(self, id: str, approver: str) -> bool | None:
        """Whether ``approver`` approved request ``id``; None when they have not decided it."""

    @abstractmethod
    def add_decision(self, decision: DecisionRecord) -> None:
        """Append ``decision`` to the audit trail, which never changes what it holds."""

    @abstractmethod
    def approval_count(self, id: str) -> int:
        """How many people approved request ``id``."""


class Database(ABC):
    """Abstract database backend of the run log, the approval store and the console.

    Subclasses set ``SCHEME``, implement ``from_url`` and every operation below.
    """

    SCHEME: ClassVar[str] = ""
    """The URL scheme that selects this backend in ``database_from_url``."""

    url: str
    """The URL that ``database_from_url`` turns into this database again."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        scheme = cls.__dict__.get("SCHEME")  # a subclass does not take over its parent's scheme
        if scheme:
            _SCHEMES[scheme] = cls

    @classmethod
    @abstractmethod
    def from_url(cls, url: str) -> Database:
        """The database ``url`` names; ``ConfigurationError`` for a URL this backend cannot use."""

    @property
    def path(self) -> Path:
        """The file that holds the database; ``ConfigurationError`` for a database that is not a file."""
        raise ConfigurationError(f"the database {self} is not a file")

    @abstractmethod
    def missing(self) -> str | None:
        """Why there is no database to read yet (``the file does not exist``), else None.

        For readers that must not create it; ``prepare`` does.
        """

    @abstractmethod
    def prepare(self) -> None:
        """Create the database, or bring it to this proctor's schema; ``StoreError`` if it cannot."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds open; a later operation opens it again."""

    # -- runs and their actions

    @abstractmethod
    def run_writer(self) -> RunWriter:
        """A new connection for the run log's writer thread."""

    @abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """The stored run ``run_id``, or None.

        A run still ``running`` costs what its actions spent (a process that died stored no total).
        """

    @abstractmethod
    def runs(
        self,
        *,
        service: str | None,
        agent: str | None,
        status: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
        oldest_first: bool,
    ) -> list[RunRecord]:
        """Stored runs that match every filter given, by start time then run id, at most ``limit``.

        ``since`` and ``until`` bound the start (Unix seconds, ``until`` excluded); newest first
        unless ``oldest_first``. Costs as ``run`` has them.
        """

    @abstractmethod
    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        """``runs(since=, until=, limit=None, oldest_first=True)`` as plain tuples of ``columns``.

        ``columns`` are ``RunRecord`` fields, checked by the caller.
        """

    @abstractmethod
    def actions(self, run_id: str) -> list[ActionRecord]:
        """The stored actions of ``run_id``, by ``seq``."""

    @abstractmethod
    def actions_of(self, run_ids: Sequence[str]) -> Iterator[ActionRecord]:
        """The stored actions of several runs, run by run in the order of ``run_ids``, each by ``seq``."""

    @abstractmethod
    def action_rows(self, run_ids: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        """For each of ``run_ids`` in order, its actions by ``seq`` as tuples ``(run_id, *columns)``.

        ``columns`` are ``ActionRecord`` fields, checked by the caller.
        """

    @abstractmethod
    def actions_cost(self, run_id: str) -> float:
        """What the stored actions of ``run_id`` cost."""

    @abstractmethod
    def spent(self, service: str, agent: str, since: float, until: float) -> float:
        """The actual cost of ``service``/``agent`` from ``since`` to ``until`` (Unix seconds, excluded).

        An action counts when it began in the span; a run's own call when it ended in it.
        """

    @abstractmethod
    def continued(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` that a stored run continues (its ``resumed_from``)."""

    @abstractmethod
    def claim(self, run_id: str, ended: float, error: str) -> bool:
        """End run ``run_id`` as ``cancelled`` at ``ended`` with ``error`` (JSON), if it is ``running``.

        Atomic: True for the one caller that changed it.
        """

    @abstractmethod
    def unclaim(self, run_id: str) -> None:
        """Make a ``cancelled`` run ``running`` again, without its end and error."""

    @abstractmethod
    def prune(self, older_than: float) -> int:
        """Delete the runs started before ``older_than`` (Unix seconds) and their actions; how many runs."""

    # -- approval requests and decisions

    @abstractmethod
    def approval_changes(self) -> AbstractContextManager[ApprovalChanges]:
        """A transaction on approval requests: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def approval(self, id: str) -> ApprovalRecord | None:
        """The request ``id``; None when there is none."""

    @abstractmethod
    def approvals(self, status: str | None, limit: int | None) -> list[ApprovalRecord]:
        """Requests, newest first: all, or those with ``status``; at most ``limit`` (None: all)."""

    @abstractmethod
    def approvals_by_prefix(self, prefix: str, limit: int) -> list[ApprovalRecord]:
        """The request whose id is ``prefix``, else those whose id starts with it, newest first.

        At most ``limit``; none for an empty ``prefix``.
        """

    @abstractmethod
    def approvals_of_run(self, run_id: str) -> list[ApprovalRecord]:
        """The requests of run ``run_id``, oldest first."""

    @abstractmethod
    def latest_approval(self, run_id: str, seq: int, tool: str, rule_id: str) -> ApprovalRecord | None:
        """The newest request for action ``seq`` (``tool``) of ``run_id`` by rule ``rule_id``, or None."""

    @abstractmethod
    def finished_approvals(self, ids: Collection[str]) -> list[ApprovalRecord]:
        """The requests among ``ids`` that are no longer pending."""

    @abstractmethod
    def decisions(self, id: str) -> list[DecisionRecord]:
        """The decisions on request ``id``, oldest first."""

    def on_approval_change(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Have ``wake`` called, from another thread, whenever a request may have left ``pending``.

        Returns what stops that; None (the default) when the database cannot tell, and waiters poll.
        """
        return None

    # -- the console's summaries

    @abstractmethod
    def services(self) -> list[str]:
        """The services that have stored runs, by name."""

    @abstractmethod
    def decision_counts(self, now: float) -> DecisionCounts:
        """The calls that began in the hour and the day before ``now``, and what rules decided of them.

        A call is an action, or a run's own top-level call; a rule deciding a call before and
        after it counts once.
        """


def runs_query(
    select: str,
    placeholder: str,
    *,
    service: str | None,
    agent: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    oldest_first: bool,
) -> tuple[str, list[Any]]:
    """The SQL of ``Database.runs`` for the columns ``select``, with the backend's ``placeholder``
    (``?`` or ``%s``), and its values: what every SQL backend asks of its ``runs`` table."""
    clauses, values = [], []
    for column, operator, value in (
        ("service", "=", service),
        ("agent", "=", agent),
        ("status", "=", status),
        ("started", ">=", since),
        ("started", "<", until),
    ):
        if value is not None:
            clauses.append(f"{column} {operator} {placeholder}")
            values.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "ASC" if oldest_first else "DESC"
    tail = ""
    if limit is not None:
        tail = f" LIMIT {placeholder}"
        values.append(limit)
    return f"SELECT {select} FROM runs{where} ORDER BY started {order}, run_id{tail}", values
