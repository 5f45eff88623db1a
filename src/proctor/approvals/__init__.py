"""Human approval of actions: the channel interface and its built-in channels."""

from __future__ import annotations

from proctor.approvals.auto import AutoChannel
from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.approvals.callback import CallbackChannel
from proctor.approvals.terminal import TerminalChannel

__all__ = [
    "ApprovalChannel",
    "ApprovalDecision",
    "ApprovalRequest",
    "AutoChannel",
    "CallbackChannel",
    "TerminalChannel",
]
