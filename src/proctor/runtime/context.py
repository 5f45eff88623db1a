"""The context of the calling code: the decorated call under way, and the replay, if any.

Context variables, so that each thread and task sees its own; a thread or task
started inside a call sees the call it was started from (with a copy of the
context).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proctor.runtime.playback import Playback
    from proctor.runtime.run import Run

__all__ = ["Frame", "active", "current_run", "replaying"]


class Frame:
    """One decorated call in progress.

    ``reported`` is what it reported with ``add_cost`` (None: nothing), and
    ``charged`` the results of its tool calls whose ``usage.cost`` they were
    already charged, so that passing such a result on does not charge it twice.
    """

    __slots__ = ("charged", "reported", "run")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.reported: float | None = None
        self.charged: list[object] | None = None


active: ContextVar[Frame | None] = ContextVar("proctor_call", default=None)
"""The decorated call the calling code runs in."""
replaying: ContextVar[Playback | None] = ContextVar("proctor_replay", default=None)
"""The replay that the next top-level call is part of."""


def current_run() -> Run:
    """The run the calling code belongs to; ``LookupError`` outside any ``@runlog`` call."""
    frame = active.get()
    if frame is None:
        raise LookupError("not inside a @runlog call: current_run() has no run to return")
    return frame.run
