"""Agent: a party that competes with others for a shared resource, with its queue of tasks."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from proctor.task import Task
from proctor.types import AgentId

__all__ = ["Agent", "AgentStats"]

COMPLETED_KEPT = 1000
"""How many served tasks ``Agent.completed_tasks`` keeps."""


@dataclass(slots=True)
class AgentStats:
    """Running counters of one agent's requests; constant size however long it runs."""

    granted: int = 0
    """Requests that got a slot and passed every policy."""
    rejected: int = 0
    """Requests that got a slot but were rejected by a policy."""
    timed_out: int = 0
    """Requests that gave up waiting (``timeout=``)."""
    cancelled: int = 0
    """Requests cancelled or interrupted while waiting."""
    wait_total: float = 0.0
    """Seconds waited, summed over granted and rejected requests."""
    wait_max: float = 0.0
    """Longest single wait, in seconds."""

    @property
    def wait_mean(self) -> float:
        """Mean wait in seconds of the requests that reached a slot."""
        served = self.granted + self.rejected
        return self.wait_total / served if served else 0.0


class _Owner(Protocol):
    """The scheduler that keeps an agent's queue: it counts the queue in Qi, under its lock."""

    def _serve_oldest(self, agent: Agent) -> Task | None: ...


@dataclass(slots=True, eq=False)
class Agent:
    """An agent known to a scheduler, and the tasks it has queued there.

    ``scheduler.submit_task(agent_id, task)`` queues a task; ``acquire(agent_id)``
    without a task serves the oldest one. A task is *pending* from its submission
    until it is served: while it waits for a slot, then while a grant runs it,
    until the body calls ``serve_oldest_task()`` or the grant ends.

    Parameters:
        agent_id: unique identifier within the scheduler.
        name: a readable name, for people.
        agent_type: a category chosen by the caller, such as ``"batch"``.
    """

    agent_id: AgentId
    name: str = ""
    agent_type: str = "default"
    stats: AgentStats = field(default_factory=AgentStats, repr=False)
    # Pending tasks that wait for a slot, oldest first, and those a grant runs, in grant order.
    _queued: deque[Task] = field(default_factory=deque, init=False, repr=False)
    _serving: deque[Task] = field(default_factory=deque, init=False, repr=False)
    _completed: deque[Task] = field(
        default_factory=lambda: deque(maxlen=COMPLETED_KEPT), init=False, repr=False
    )
    # Callers waiting in acquire() to serve the queue: each will take one queued task.
    _claims: int = field(default=0, init=False, repr=False)
    _owner: _Owner | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.agent_id, str) or not self.agent_id:
            raise ValueError(f"agent_id must be a non-empty string, got {self.agent_id!r}")

    @property
    def tasks(self) -> list[Task]:
        """The pending tasks, oldest first: those being run by a grant, then those waiting (a copy)."""
        return [*self._serving, *self._queued]

    @property
    def completed_tasks(self) -> list[Task]:
        """The latest served tasks (at most 1,000), oldest first (a copy)."""
        return list(self._completed)

    @property
    def queue_depth_weighted(self) -> float:
        """``Qi``'s share from the queue: the summed weight of the tasks waiting for a slot."""
        return math.fsum(task.weight for task in list(self._queued))

    @property
    def dmax(self) -> float:
        """``Dmax_i``'s share from the queue: seconds the oldest waiting task has waited; 0.0 if none."""
        try:
            oldest = self._queued[0]
        except IndexError:  # none waits (checked this way: another thread may empty the queue)
            return 0.0
        return time.monotonic() - oldest.arrival_tick

    def serve_oldest_task(self) -> Task | None:
        """Take the oldest pending task off the queue and mark it completed; None if there is none.

        Called inside a grant that serves the queue, that is the grant's own task
        (the oldest being run); otherwise the oldest task still waiting.
        """
        owner = self._owner
        if owner is not None:
            return owner._serve_oldest(self)
        served = self._pop_oldest(time.monotonic())
        return served[0] if served is not None else None

    def _pop_oldest(self, now: float) -> tuple[Task, bool] | None:
        """Complete the oldest pending task; with it, whether it was still waiting. Owner's lock held."""
        if self._serving:
            task = self._serving.popleft()
            waiting = False
        elif self._queued:
            task = self._queued.popleft()
            task.age = now - task.arrival_tick
            waiting = True
        else:
            return None
        self._completed.append(task)
        return task, waiting

    def _finish(self, task: Task) -> None:
        """A grant that ran ``task`` ends: complete it unless ``serve_oldest_task()`` already did."""
        try:
            self._serving.remove(task)
        except ValueError:
            return
        self._completed.append(task)
