"""Task: one unit of work an agent wants to do."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

from proctor._numbers import is_amount
from proctor.labels import SecurityLabel
from proctor.types import Labels

__all__ = ["SecurityLabel", "Task"]

# Task ids: 12 hex digits, as loco-agent's: a count from a random start below 2**47, so that no id
# repeats within a process and processes (a forked child draws a new start) keep apart.
_ids = itertools.count()


def _new_start() -> None:
    global _ids
    _ids = itertools.count(int.from_bytes(os.urandom(6), "big") >> 1)


_new_start()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_start)


@dataclass(slots=True, eq=False)
class Task:
    """One unit of work: how heavy it is, what kind, and what data it touches.

    Parameters:
        task_id: unique identifier; when not given, 12 hex digits that no
            other task of the process has.
        weight: relative size, at least 1.0 (1 cheap, 3 expensive). It counts
            in the agent's queue depth ``Qi`` while the task waits.
        arrival_tick: when the task arrived, in the scheduler's clock
            (``time.monotonic()`` seconds); ``submit_task`` sets it.
        age: how long a queued task waited, in seconds: set when a grant
            or ``serve_oldest_task()`` takes it off the queue (while it
            waits, ``Agent.dmax`` gives the oldest one's wait).
        task_type: a category chosen by the caller, such as ``"llm_call"``.
        labels: sensitivity of the task's data by role, such as
            ``{"input": SecurityLabel.CONFIDENTIAL}``.
        session_id, team, workflow, model: free attribution fields.
        cost: the estimated cost charged to budgets; the weight when not given.
    """

    task_id: str = ""
    weight: float = 1.0
    arrival_tick: float = 0
    age: float = 0
    task_type: str = "default"
    labels: Labels | None = None
    session_id: str | None = None
    team: str | None = None
    workflow: str | None = None
    model: str | None = None
    cost: float | None = None

    def __post_init__(self) -> None:
        weight = self.weight
        if (
            weight.__class__ is not float  # the common case skips the isinstance checks
            and (isinstance(weight, bool) or not isinstance(weight, (int, float)))
        ) or not 1.0 <= weight < math.inf:  # also rejects NaN
            raise ValueError(
                f"Task weight must be >= 1.0, got {weight!r}: a weight must be a finite number >= 1.0 "
                "(1 cheap, 3 expensive)"
            )
        cost = self.cost
        if cost is not None and not is_amount(cost):
            raise ValueError(f"Task cost must be a finite number >= 0 or None, got {cost!r}")
        if not self.task_id:
            self.task_id = "%012x" % next(_ids)  # noqa: UP031  # faster than an f-string here

    @property
    def estimated_cost(self) -> float:
        """What budgets reserve for this task: ``cost`` when given, else ``weight``."""
        return self.weight if self.cost is None else float(self.cost)
