"""Outcome: how an action that was let through ended."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome", "Status"]


class Status(StrEnum):
    """How the work under a grant ended."""

    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


class Outcome:
    """What policies learn when they settle an action.

    Parameters:
        status: success, error or cancelled.
        cost: the actual cost reported by the caller (``grant.cost = ...``),
            or None when it reported none.
        error: the exception that ended the work, if any.
        duration: seconds the work held its slot.
    """

    __slots__ = ("cost", "duration", "error", "status")

    def __init__(
        self,
        status: Status,
        cost: float | None = None,
        error: BaseException | None = None,
        duration: float = 0.0,
    ) -> None:
        self.status = status
        self.cost = cost
        self.error = error
        self.duration = duration

    def __repr__(self) -> str:
        return f"Outcome({self.status.value}, cost={self.cost!r}, duration={self.duration:.6f})"
