"""ApprovalChannel: how a ``require_approval`` rule reaches a person, and what comes back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApprovalChannel", "ApprovalDecision", "ApprovalRequest"]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An action waiting for a person's decision.

    ``approvers`` are the groups whose members may decide (empty: anyone who may
    approve at all); ``quorum`` how many distinct people must approve. ``seq``
    is the action's number in run ``run_id`` (0: the run's own call) when the run
    is recorded; ``resuming`` says the call is made again by ``proctor.resume``.
    """

    rule_id: str
    message: str
    approvers: tuple[str, ...]
    timeout: float
    service: str
    agent: str
    tool: str
    run_id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    rule_name: str | None = None
    quorum: int = 1
    seq: int = 0
    resuming: bool = False


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """A person's answer: approved or not, by whom, and why."""

    approved: bool
    approver: str | None = None
    comment: str | None = None


class ApprovalChannel(ABC):
    """Delivers approval requests to people and returns their decisions."""

    def withdraw(self, request: ApprovalRequest) -> None:  # noqa: B027 (a hook; doing nothing is right)
        """The caller stopped waiting for ``request`` (it was cancelled); by default nothing happens.

        A channel that keeps requests somewhere closes them, so that nobody decides a call
        that no longer waits, and its ``request`` returns soon.
        """

    @abstractmethod
    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """Ask for a decision, waiting at most ``request.timeout`` seconds.

        :returns: the decision, or None when nobody decided in time.
        """
