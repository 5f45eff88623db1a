"""ApprovalChannel: how a ``require_approval`` rule reaches a person, and what comes back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApprovalChannel", "ApprovalDecision", "ApprovalRequest"]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An action waiting for a person's decision."""

    rule_id: str
    message: str
    approvers: tuple[str, ...]
    timeout: float
    service: str
    agent: str
    tool: str
    run_id: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """A person's answer: approved or not, by whom, and why."""

    approved: bool
    approver: str | None = None
    comment: str | None = None


class ApprovalChannel(ABC):
    """Delivers approval requests to people and returns their decisions."""

    @abstractmethod
    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """Ask for a decision, waiting at most ``request.timeout`` seconds.

        :returns: the decision, or None when nobody decided in time.
        """
