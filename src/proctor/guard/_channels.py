"""Where ``require_approval`` asks when a decorator names no channel of its own."""

from __future__ import annotations

from collections.abc import Callable

from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.approvals.callback import CallbackChannel
from proctor.approvals.durable import DurableChannel
from proctor.errors import ConfigurationError

__all__ = ["default_channel", "set_approval_channel"]

_channel: ApprovalChannel | None = None
_durable: DurableChannel | None = None


def default_channel() -> ApprovalChannel:
    """The channel set with ``set_approval_channel``, else the durable approval queue (made once)."""
    global _durable
    if _channel is not None:
        return _channel
    if _durable is None:
        _durable = DurableChannel()
    return _durable


def set_approval_channel(
    channel: ApprovalChannel | Callable[[ApprovalRequest], ApprovalDecision | bool | None] | None,
) -> None:
    """Register where ``require_approval`` rules ask, for decorators without their own ``approvals=``.

    Takes an ``ApprovalChannel`` or a function of the request returning a
    decision, True/False, or None (no answer). Without any (None), requests go
    to the durable approval queue (``DurableChannel``: the run log's database,
    decided with ``proctor approvals approve`` or in ``proctor serve``).
    """
    global _channel
    if channel is None or isinstance(channel, ApprovalChannel):
        _channel = channel
    elif callable(channel):
        _channel = CallbackChannel(channel)
    else:
        raise ConfigurationError(f"expected an ApprovalChannel or a function, got {type(channel).__name__}")
