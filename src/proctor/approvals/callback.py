"""CallbackChannel: approvals decided by a function of the application's own."""

from __future__ import annotations

from collections.abc import Callable

from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest

__all__ = ["CallbackChannel"]


class CallbackChannel(ApprovalChannel):
    """Calls ``handler(request)``; it returns a decision, True/False, or None for "no answer"."""

    def __init__(self, handler: Callable[[ApprovalRequest], ApprovalDecision | bool | None]) -> None:
        self._handler = handler

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        answer = self._handler(request)
        if isinstance(answer, bool):
            return ApprovalDecision(answer, approver="callback")
        if answer is None or isinstance(answer, ApprovalDecision):
            return answer
        kind = type(answer).__name__
        raise TypeError(f"an approval handler returns an ApprovalDecision, True/False or None, got {kind}")
