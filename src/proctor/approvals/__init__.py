"""Human approval of actions: the channel interface, its built-in channels, and the durable queue."""

from __future__ import annotations

from proctor.approvals.approvers import Approvers, Person, approvers_path
from proctor.approvals.auto import AutoChannel
from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.approvals.callback import CallbackChannel
from proctor.approvals.durable import DurableChannel
from proctor.approvals.notify import WebhookNotifier
from proctor.approvals.polling import PollingChannel
from proctor.approvals.store import (
    APPROVAL_STATUSES,
    ApprovalError,
    ApprovalRecord,
    ApprovalStore,
    DecisionRecord,
)
from proctor.approvals.terminal import TerminalChannel

__all__ = [
    "APPROVAL_STATUSES",
    "ApprovalChannel",
    "ApprovalDecision",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalRequest",
    "ApprovalStore",
    "Approvers",
    "AutoChannel",
    "CallbackChannel",
    "DecisionRecord",
    "DurableChannel",
    "Person",
    "PollingChannel",
    "TerminalChannel",
    "WebhookNotifier",
    "approvers_path",
]
