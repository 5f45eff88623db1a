"""Outcome: how an action that was let through ended."""

from __future__ import annotations

import asyncio
from enum import StrEnum

__all__ = ["SUCCEEDED", "Outcome", "Status", "status_of"]


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
    """

    __slots__ = ("cost", "error", "status")

    def __init__(
        self,
        status: Status,
        cost: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.status = status
        self.cost = cost
        self.error = error

    def __repr__(self) -> str:
        return f"Outcome({self.status.value}, cost={self.cost!r})"


SUCCEEDED = Outcome(Status.SUCCESS)
"""The outcome of work that ended without an exception and reported no cost."""


def status_of(exc: BaseException | None) -> Status:
    """How work that ended with ``exc`` (None: no exception) ended."""
    if exc is None:
        return Status.SUCCESS
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit)):
        return Status.CANCELLED
    return Status.ERROR
