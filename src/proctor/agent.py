"""Agent: a party that competes with others for a shared resource, with its queue of tasks."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
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

    def _assign(self, agent: Agent, tasks: list[Task] | None, completed: list[Task] | None) -> None: ...


def _task_list(what: str, tasks: Iterable[Task]) -> list[Task]:
    if isinstance(tasks, (str, bytes)):
        raise TypeError(f"{what} must hold proctor Tasks, got {tasks!r}")
    listed = list(tasks)
    for task in listed:
        if not isinstance(task, Task):
            raise TypeError(f"{what} must hold proctor Tasks, got {type(task).__name__} {task!r}")
    return listed


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
        tasks: tasks queued from the start, as if submitted now, in this order.
        completed_tasks: tasks to list as already served.
        stats: the counters to continue from; new ones when not given.
    """

    __slots__ = (
        "_claims",
        "_completed",
        "_done",
        "_owner",
        "_queued",
        "_serving",
        "agent_id",
        "agent_type",
        "name",
        "stats",
    )

    def __init__(
        self,
        agent_id: AgentId,
        name: str = "",
        agent_type: str = "default",
        tasks: Iterable[Task] | None = None,
        completed_tasks: Iterable[Task] | None = None,
        *,
        stats: AgentStats | None = None,
    ) -> None:
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError(f"agent_id must be a non-empty string, got {agent_id!r}")
        self.agent_id = agent_id
        self.name = name
        self.agent_type = agent_type
        self.stats = AgentStats() if stats is None else stats
        # Pending tasks that wait for a slot, oldest first, and those a grant runs, in grant order.
        self._queued: deque[Task] = deque()
        self._serving: deque[Task] = deque()
        self._completed: deque[Task] = deque(maxlen=COMPLETED_KEPT)
        self._done = 0  # tasks ever completed, the forgotten ones too
        # Callers waiting in acquire() to serve the queue: each will take one queued task.
        self._claims = 0
        self._owner: _Owner | None = None
        if tasks is not None:
            self._set_tasks(_task_list("tasks", tasks), time.monotonic())
        if completed_tasks is not None:
            self._set_completed(_task_list("completed_tasks", completed_tasks))

    @property
    def tasks(self) -> list[Task]:
        """The pending tasks, oldest first: those being run by a grant, then those waiting (a copy).

        Assigning replaces them: listed tasks that a grant runs go on running, the
        others wait, oldest first (those not pending before count as submitted now);
        pending tasks left out are dropped, not completed.
        """
        return [*self._serving, *self._queued]

    @tasks.setter
    def tasks(self, tasks: Iterable[Task]) -> None:
        listed = _task_list("tasks", tasks)
        owner = self._owner
        if owner is not None:
            owner._assign(self, listed, None)
        else:
            self._set_tasks(listed, time.monotonic())

    @property
    def completed_tasks(self) -> list[Task]:
        """The latest served tasks (at most 1,000), oldest first (a copy); assigning replaces them."""
        return list(self._completed)

    @completed_tasks.setter
    def completed_tasks(self, tasks: Iterable[Task]) -> None:
        listed = _task_list("completed_tasks", tasks)
        owner = self._owner
        if owner is not None:
            owner._assign(self, None, listed)
        else:
            self._set_completed(listed)

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
        self._done += 1
        return task, waiting

    def _finish(self, task: Task) -> None:
        """A grant that ran ``task`` ends: complete it unless ``serve_oldest_task()`` already did."""
        try:
            self._serving.remove(task)
        except ValueError:
            return
        self._completed.append(task)
        self._done += 1

    def _set_tasks(self, tasks: list[Task], now: float) -> None:
        """Make ``tasks`` the pending ones, as the ``tasks`` setter says. Owner's lock held."""
        serving = self._serving
        running = {id(task) for task in serving}
        was_queued = {id(task) for task in self._queued}
        listed = {id(task) for task in tasks}
        waiting: list[Task] = []
        for task in tasks:
            key = id(task)
            if key in running:
                continue
            if key not in was_queued:  # new to the queue: submitted now
                task.arrival_tick = now
                task.age = 0.0
            waiting.append(task)
        waiting.sort(key=_arrival)  # stable: tasks that arrive together keep the given order
        kept = [task for task in serving if id(task) in listed]
        serving.clear()
        serving.extend(kept)
        self._queued.clear()
        self._queued.extend(waiting)

    def _set_completed(self, tasks: list[Task]) -> None:
        """Make ``tasks`` the completed ones. Owner's lock held."""
        self._completed.clear()
        self._completed.extend(tasks)
        self._done = len(tasks)

    def __repr__(self) -> str:
        return f"Agent(agent_id={self.agent_id!r}, name={self.name!r}, agent_type={self.agent_type!r})"


def _arrival(task: Task) -> float:
    return task.arrival_tick
