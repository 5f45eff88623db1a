"""The records a database backend reads and writes: runs, actions, approval requests, decisions, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["ActionRecord", "ApprovalRecord", "DecisionCounts", "DecisionRecord", "RunRecord"]


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


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """How many actions began in the last hour and day, and how many of them each rule decided.

    ``by_rule`` maps (rule id, action) to (last hour, last day); the rule id is None for the
    policy file's default action.
    """

    hour: int = 0
    day: int = 0
    by_rule: dict[tuple[str | None, str], tuple[int, int]] = field(default_factory=dict)

    def of(self, rule: str | None) -> tuple[int, int]:
        """What ``rule`` decided, whatever the action, in the last hour and day."""
        pairs = [counts for (name, _), counts in self.by_rule.items() if name == rule]
        return sum(hour for hour, _ in pairs), sum(day for _, day in pairs)

    def of_action(self, action: str) -> tuple[int, int]:
        """How many actions any rule decided to ``action``, in the last hour and day."""
        pairs = [counts for (_, name), counts in self.by_rule.items() if name == action]
        return sum(hour for hour, _ in pairs), sum(day for _, day in pairs)
