"""AutoChannel: scripted answers, for tests and demos."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest

__all__ = ["AutoChannel"]


class AutoChannel(ApprovalChannel):
    """Answers requests from a script, in order; ``requests`` keeps what was asked.

    Parameters:
        answers: decisions (or True/False, or None for "no answer in time") to give in turn;
            when they run out, ``default`` answers.
        default: the answer once the script is used up.
    """

    def __init__(
        self, answers: Iterable[ApprovalDecision | bool | None] = (), default: bool | None = None
    ) -> None:
        self._answers: deque[ApprovalDecision | bool | None] = deque(answers)
        self._default = default
        self.requests: list[ApprovalRequest] = []

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        self.requests.append(request)
        answer = self._answers.popleft() if self._answers else self._default
        if isinstance(answer, bool):
            return ApprovalDecision(answer, approver="auto")
        return answer

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        return self.request(request)  # a scripted answer is immediate: no thread needed
