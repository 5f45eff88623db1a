"""SchedulerCore: what both schedulers decide, with no waiting: request -> granted | wait, release -> next.

The core keeps the agents, their task queues, the waiting requests (a
``FairQueue``) and the count of held slots; the slots themselves are leases
in the resource's store (``SlotLeaseSupport``). With a store that also keeps
the waiting requests (``SlotQueueSupport``: Redis), the store chooses among
the waiters of every process and the core keeps only this process's side
(``_shared``, a ``SharedSlots``): the ``_shared_*`` methods. Every method returns at once:
it never blocks, awaits, sleeps or reads the clock for a slot decision (the
caller passes ``now``). The drivers, ``_threads.LOCOScheduler`` and
``_asyncio.AsyncLOCOScheduler``, call it (the threaded one under its lock),
wait where it says "wait", and wake the waiter it says is granted.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from proctor._numbers import is_amount
from proctor.agent import Agent
from proctor.errors import BackpressureError, ConfigurationError, ShutdownError
from proctor.outcome import SUCCEEDED, Outcome, status_of
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.resource import SharedResource
from proctor.scheduling._shared import SharedSlots
from proctor.scheduling.fair import Entry, FairQueue
from proctor.scheduling.grant import Grant
from proctor.scheduling.metrics import SchedulerMetrics
from proctor.stores.base import SlotLeaseSupport, missing_capability
from proctor.stores.slot_queue import Grants, SlotQueueSupport
from proctor.task import Task

__all__ = ["DEFAULT_MAX_WAITERS", "OPTIMIZE_FOR_ALPHA", "SchedulerCore", "Waiter", "check_timeout"]

OPTIMIZE_FOR_ALPHA: dict[str, float] = {"latency": 0.0, "balanced": 0.25, "throughput": 0.5}
"""The alpha each ``optimize_for`` goal picks: latency weighs only waiting time."""

DEFAULT_MAX_WAITERS = 10_000
"""How many callers may wait at once before ``acquire()`` raises ``BackpressureError``."""


def resolve_alpha(alpha: float | None, optimize_for: str | None) -> float:
    """The alpha to use, from at most one of ``alpha`` and ``optimize_for``."""
    if alpha is not None and optimize_for is not None:
        raise ConfigurationError("pass alpha or optimize_for, not both")
    if optimize_for is not None:
        if optimize_for not in OPTIMIZE_FOR_ALPHA:
            choices = ", ".join(map(repr, OPTIMIZE_FOR_ALPHA))
            raise ConfigurationError(f"optimize_for must be one of {choices}, got {optimize_for!r}")
        return OPTIMIZE_FOR_ALPHA[optimize_for]
    if alpha is None:
        return OPTIMIZE_FOR_ALPHA["balanced"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ConfigurationError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def check_timeout(timeout: float | None) -> float | None:
    """A valid ``acquire()`` timeout: None (or infinity) waits for ever; else seconds >= 0."""
    if timeout is None or timeout == math.inf:
        return None
    if not is_amount(timeout):
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return None if timeout >= threading.TIMEOUT_MAX else float(timeout)


def _since(queued: deque[Task]) -> float:
    """When the oldest of ``queued`` arrived; infinity when it is empty."""
    return queued[0].arrival_tick if queued else math.inf


class Waiter(Entry):
    """A waiting request; the driver's subclass adds the means to wake it.

    ``token`` is the fencing token of the slot's lease once the core grants
    it one (None while it waits); ``error`` is what to raise instead. In a
    shared queue, ``caller`` is its id there and ``shared_weight`` what it
    weighs in its agent's Qi (the task it will serve).
    """

    __slots__ = ("caller", "error", "shared_weight", "token")

    caller: int
    shared_weight: float

    def __init__(self, agent_id: str, weight: float, arrived: float) -> None:
        super().__init__(agent_id, weight, arrived)
        self.token: int | None = None
        self.error: BaseException | None = None


W = TypeVar("W", bound=Waiter)


class SchedulerCore(Generic[W]):
    """Agents, task queues, policies and the slot decisions common to both schedulers; never waits.

    Not thread-safe: the threaded driver calls it under its lock. A driver
    sets ``_waiter_class``, its ``Waiter`` class.
    """

    _waiter_class: Callable[[str, float, float], W]

    def __init__(
        self,
        agents: Iterable[Agent] | None = None,
        resource: SharedResource | None = None,
        *,
        alpha: float | None = None,
        optimize_for: str | None = None,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        budget: Policy | None = None,
        enforcer: PolicyEnforcer | None = None,
    ) -> None:
        if resource is None:
            # agents is optional (unknown agents register on first use); the resource is not.
            hint = "after the agents or " if isinstance(agents, SharedResource) else ""
            raise TypeError(
                f"{type(self).__name__}() needs the resource whose slots it grants: pass it {hint}"
                'as resource=SharedResource("llm_api", capacity=3)'
            )
        if not isinstance(resource, SharedResource):
            raise ConfigurationError(
                f"resource must be a SharedResource, got {type(resource).__name__}; "
                'use SharedResource("llm_api", capacity=3)'
            )
        store = resource.store
        if not isinstance(store, SlotLeaseSupport):
            raise missing_capability(store, SlotLeaseSupport, type(self).__name__)
        if isinstance(max_waiters, bool) or not isinstance(max_waiters, int) or max_waiters < 0:
            raise ConfigurationError(f"max_waiters must be an int >= 0, got {max_waiters!r}")
        if budget is not None and not isinstance(budget, Policy):
            raise ConfigurationError(f"budget must be a BudgetPolicy, got {type(budget).__name__}")
        if enforcer is not None and not isinstance(enforcer, PolicyEnforcer):
            raise ConfigurationError(f"enforcer must be a PolicyEnforcer, got {type(enforcer).__name__}")
        self._alpha = resolve_alpha(alpha, optimize_for)
        self._resource = resource
        self._capacity = resource.capacity
        self._slots: SlotLeaseSupport = store
        self._name = resource.name
        self._lease = store.slot_lease
        self._max_waiters = max_waiters
        self._make_waiter = self._waiter_class  # an instance attribute: the fastest to look up
        self._agents: dict[str, Agent] = {}
        self._queue: FairQueue[W] = FairQueue(self._alpha)
        self._closed = False
        self._shared: SharedSlots | None = None
        if isinstance(store, SlotQueueSupport):
            self._shared = SharedSlots(store, resource.name, resource.capacity, self._alpha, self._delivered)
        self._metrics = SchedulerMetrics(self)
        self._costs = self._metrics._cost  # what each agent's ended grants cost, kept by _release()
        for agent in agents or ():
            self.register_agent(agent)
        self._budget = budget
        if enforcer is not None and budget is not None and budget not in enforcer.policies:
            # The budget joins the caller's enforcer in a view; the caller's object is not changed.
            self._enforcer: PolicyEnforcer | None = enforcer._extended(budget)
        elif enforcer is not None:
            self._enforcer = enforcer
        elif budget is not None:
            self._enforcer = PolicyEnforcer([budget])
        else:
            self._enforcer = None

    @property
    def alpha(self) -> float:
        """Weight of queue depth against waiting time in L(i)."""
        return self._alpha

    @property
    def resource(self) -> SharedResource:
        """The resource whose slots this scheduler grants."""
        return self._resource

    @property
    def enforcer(self) -> PolicyEnforcer | None:
        """The policies checked after each grant (with ``budget`` appended); None if there are none."""
        return self._enforcer

    @property
    def budget(self) -> Policy | None:
        """The ``budget=`` policy, if one was given."""
        return self._budget

    @property
    def max_waiters(self) -> int:
        """How many callers may wait at once."""
        return self._max_waiters

    @property
    def metrics(self) -> SchedulerMetrics:
        """Costs by agent and by session, completions and queue depths, as loco-agent's ``metrics``."""
        return self._metrics

    @property
    def agents(self) -> dict[str, Agent]:
        """The known agents by id (a copy)."""
        return dict(self._agents)

    def get_agent(self, agent_id: str) -> Agent:
        """The agent called ``agent_id``; ``KeyError`` if it is unknown."""
        try:
            return self._agents[agent_id]
        except KeyError:
            raise KeyError(f"unknown agent {agent_id!r}; it is registered on its first acquire()") from None

    def register_agent(self, agent: Agent) -> None:
        """Add an agent; ``ValueError`` if one with the same id is known. Its queued tasks come with it."""
        if not isinstance(agent, Agent):
            raise ConfigurationError(
                f"expected an Agent, got {type(agent).__name__}; use Agent(agent_id=...)"
            )
        if agent.agent_id in self._agents:
            raise ConfigurationError(f"agent {agent.agent_id!r} is already registered")
        owner = agent._owner
        if agent._queued and owner is not None and owner is not self:
            raise ConfigurationError(
                f"agent {agent.agent_id!r} has tasks queued in another scheduler; "
                "unregister it there first, or register a new Agent"
            )
        self._agents[agent.agent_id] = agent
        # The scheduler that registered an agent last keeps its queue (agents may be shared).
        agent._owner = self
        for task in agent._queued:
            self._queue.add_backlog(agent.agent_id, task.weight, _since(agent._queued))

    def unregister_agent(self, agent_id: str) -> Agent:
        """Forget an agent that has no caller waiting; returns it, with the tasks it still has queued."""
        agent = self.get_agent(agent_id)
        if self._queue.waiting(agent_id):
            raise ValueError(f"agent {agent_id!r} has requests waiting; let them finish first")
        del self._agents[agent_id]
        self._queue.forget(agent_id)
        if agent._owner is self:
            agent._owner = None
        return agent

    def scores(self) -> dict[str, float]:
        """L(i) of every agent that is waiting now."""
        return self._queue.scores(time.monotonic())

    # A request: _request() grants at once or queues a waiter; the driver waits for the waiter's
    # token, or calls _withdraw() when it gives up; _release() passes a slot on.

    def _request(
        self, agent_id: str, task: Task | None, now: float
    ) -> tuple[Agent, Task | None, int, W | None]:
        """Ask for a slot for ``agent_id``'s ``task`` at ``now``: granted at once, or a waiter to wait on.

        Returns the agent, the task to serve, the fencing token of the slot
        granted at once (0 when the caller waits) and the queued waiter
        (None when granted at once), whose ``token`` is set when the slot
        comes. The task is None when the caller (given no
        task) serves the oldest queued task not promised to an earlier
        caller, which it claims once granted; a caller given no task with
        none left serves a new default ``Task``. Raises ``ShutdownError``
        once closed and ``BackpressureError`` when ``max_waiters`` wait already.
        """
        agent, task = self._resolve(agent_id, task)
        resource = self._resource
        queue = self._queue
        if resource._holders < self._capacity and not queue._size:
            token = self._slots.acquire_slot(self._name, self._capacity, agent_id, now, self._lease)
            if token is not None:
                resource._holders += 1
                return agent, task, token, None
        if resource._waiters >= self._max_waiters:
            raise self._backpressure()
        # A caller serving the queue weighs nothing here: its task counts in the backlog.
        make_waiter = self._make_waiter  # not self._make_waiter(): an attribute loads faster than a method
        waiter = make_waiter(agent_id, 0.0 if task is None else task.weight, now)
        queue.push(waiter)
        resource._waiters += 1
        if task is None:
            agent._claims += 1
        return agent, task, 0, waiter

    def _resolve(self, agent_id: str, task: Task | None) -> tuple[Agent, Task | None]:
        """The agent of a request and the task it serves (None: a queued one, claimed once granted)."""
        if self._closed:
            raise ShutdownError("the scheduler is shutting down")
        try:
            agent = self._agents[agent_id]
        except KeyError:
            agent = self._agent(agent_id)
        if task is None:
            queued = agent._queued
            if not queued or agent._owner is not self or len(queued) <= agent._claims:
                task = Task()
        elif not isinstance(task, Task):
            raise TypeError(f"task must be a proctor Task, got {type(task).__name__}")
        return agent, task

    def _backpressure(self) -> BackpressureError:
        resource = self._resource
        return BackpressureError(
            f"{resource._waiters} callers already wait for {resource.name!r} "
            f"(max_waiters={self._max_waiters}); retry later or raise max_waiters"
        )

    def _release(self, token: int, now: float, grant: Grant | None = None) -> W | None:
        """The slot of lease ``token`` is free: the waiter it passes to (its ``token`` set), or None.

        With ``grant``, the slot's grant, its work has ended: the grant is
        released, its cost counts in the metrics (what the budgets settle on)
        and its task completes; settling the policies is the driver's next
        step. The waiter's wait counts in its agent's stats. A driver that
        finds the waiter gone (cancelled meanwhile) calls ``_unserve()``, then
        this again with the waiter's token.
        """
        if grant is not None:  # one call for the end of a grant and its release: once per grant
            self._ended(grant)
        queue = self._queue
        resource = self._resource
        if queue._size:
            waiter = queue.pop(now)
            resource._waiters -= 1
            agent_id = waiter.agent_id
            passed = self._slots.hand_over_slot(self._name, token, agent_id, now, self._lease)
            if passed is None:  # the lease had ended (expired in a shared store)
                resource._holders -= 1
                passed = self._slots.acquire_slot(self._name, self._capacity, agent_id, now, self._lease)
                if passed is None:  # and the slot went elsewhere
                    queue.unpop(waiter)
                    resource._waiters += 1
                    return None
                resource._holders += 1
            waiter.token = passed
            waited = now - waiter.arrived
            stats = self._agents[agent_id].stats
            stats.wait_total += waited
            if waited > stats.wait_max:
                stats.wait_max = waited
            return waiter
        resource._holders -= 1
        self._slots.release_slot(self._name, token)
        return None

    def _ended(self, grant: Grant) -> None:
        """The work under ``grant`` has ended: its cost counts in the metrics, its task completes."""
        grant._scheduler = None
        agent = grant.agent
        agent.stats.granted += 1
        task = grant.task
        cost = grant._cost
        if cost is None:
            cost = task.cost
            if cost is None:
                cost = task.weight
        agent_id = agent.agent_id
        try:
            self._costs[agent_id] += cost
        except KeyError:
            self._costs[agent_id] = cost
        if task.session_id is not None:
            self._metrics._count_session(agent_id, task.session_id, cost)
        if agent._serving:
            agent._finish(task)

    # The shared queue (``_shared``): the store chooses who is next among every process's waiters.
    # A request always queues a waiter here first (the store may grant at once); the driver makes
    # the store calls outside its lock (off the event loop), and hands grants to _shared_grant().

    def _shared_request(self, agent_id: str, task: Task | None, now: float) -> tuple[Agent, Task | None, W]:
        """A request in the shared queue: this process's waiter for it, registered before the store call."""
        shared = self._shared
        assert shared is not None
        agent, task = self._resolve(agent_id, task)
        resource = self._resource
        if resource._waiters >= self._max_waiters:
            raise self._backpressure()
        if task is None:
            weight = agent._queued[agent._claims].weight  # the queued task this caller will serve
            agent._claims += 1
        else:
            weight = task.weight
        waiter = self._make_waiter(agent_id, 0.0 if task is None else task.weight, now)
        waiter.shared_weight = weight
        waiter.caller = shared.add(waiter)
        resource._waiters += 1
        return agent, task, waiter

    def _shared_grant(self, caller: int, token: int, now: float) -> W | None:
        """The store granted lease ``token`` to caller ``caller``: its waiter, now holding it.

        None when the caller has left: the driver passes the slot on.
        """
        shared = self._shared
        assert shared is not None
        waiter: W | None = shared.take(caller)
        if waiter is None:
            return None
        waiter.token = token
        resource = self._resource
        resource._waiters -= 1
        resource._holders += 1
        shared.hold(token)
        waited = now - waiter.arrived
        agent = self._agents.get(waiter.agent_id)
        if agent is not None:
            stats = agent.stats
            stats.wait_total += waited
            if waited > stats.wait_max:
                stats.wait_max = waited
        return waiter

    def _shared_leave(self, waiter: W) -> bool:
        """``waiter`` gives up before its grant reached it: False when the grant came (it holds a slot)."""
        shared = self._shared
        assert shared is not None
        if waiter.token is not None:
            return False
        if shared.take(waiter.caller) is not None:
            self._resource._waiters -= 1
        return True

    def _shared_unhold(self, token: int) -> None:
        """This process no longer holds lease ``token`` (the driver passes its slot on in the store)."""
        shared = self._shared
        assert shared is not None
        self._resource._holders -= 1
        shared.unhold(token)

    def _delivered(self, grants: Grants) -> None:
        """Grants the store's keeper thread collected: each driver hands them to its waiters."""
        raise NotImplementedError

    def _unserve(self, waiter: W, now: float) -> int:
        """Take back the slot ``_release()`` gave a waiter that turned out gone: its token, to pass on."""
        token = waiter.token
        assert token is not None
        waiter.token = None
        self._agents[waiter.agent_id].stats.wait_total -= now - waiter.arrived
        return token

    def _withdraw(self, waiter: W, now: float) -> W | None:
        """``waiter`` gives up: it leaves the queue, or passes on the slot it got meanwhile.

        Returns the waiter that gets that slot, as ``_release()`` does.
        """
        token = waiter.token
        if token is not None:
            waiter.token = None
            return self._release(token, now)
        if self._queue.remove(waiter):
            self._resource._waiters -= 1
        return None

    def _close(self, now: float) -> list[W]:
        """Refuse new work; every waiter, out of the queue, for the driver to fail."""
        self._closed = True
        queue = self._queue
        turned_away = []
        while queue:
            turned_away.append(queue.pop(now))
            self._resource._waiters -= 1
        shared = self._shared
        if shared is not None:
            for caller in list(shared.waiting):
                waiter = shared.take(caller)
                if waiter is not None:
                    turned_away.append(waiter)
                    self._resource._waiters -= 1
        return turned_away

    def _agent(self, agent_id: str) -> Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = Agent(agent_id)  # validates the id
            agent._owner = self
            self._agents[agent_id] = agent
        return agent

    # The task queue. The threaded driver calls these with its lock held.

    def _submit(self, agent_id: str, task: Task, now: float) -> None:
        """Queue ``task`` for ``agent_id``: it counts in the agent's Qi from ``now`` until it is served."""
        if self._closed:
            raise ShutdownError("the scheduler is shutting down")
        if not isinstance(task, Task):
            raise TypeError(f"task must be a proctor Task, got {type(task).__name__}")
        agent = self._agents.get(agent_id) or self._agent(agent_id)
        if agent._owner is not self:
            raise ValueError(
                f"agent {agent_id!r} was registered with another scheduler after this one, which "
                "keeps its queue now; give each scheduler its own Agent objects"
            )
        task.arrival_tick = now
        task.age = 0.0
        queued = agent._queued
        queued.append(task)
        self._queue.add_backlog(agent_id, task.weight, _since(queued))

    def _claim(self, agent: Agent, now: float) -> Task | None:
        """Take ``agent``'s oldest queued task for a grant that serves the queue; None if none is left."""
        queued = agent._queued
        if not queued or agent._owner is not self:
            return None
        task = queued.popleft()
        task.age = now - task.arrival_tick
        self._queue.remove_backlog(agent.agent_id, task.weight, _since(queued))
        return task

    def _unclaim(self, agent: Agent, task: Task) -> None:
        """Put a claimed ``task`` back at the head of ``agent``'s queue: its caller went away unserved."""
        if agent._owner is self:
            agent._queued.appendleft(task)
            self._queue.add_backlog(agent.agent_id, task.weight, task.arrival_tick)

    def _serve_oldest(self, agent: Agent) -> Task | None:
        """``agent.serve_oldest_task()`` for an agent whose queue this scheduler keeps."""
        served = agent._pop_oldest(time.monotonic())
        if served is None:
            return None
        task, waiting = served
        if waiting:
            self._queue.remove_backlog(agent.agent_id, task.weight, _since(agent._queued))
        return task

    def _assign(self, agent: Agent, tasks: list[Task] | None, completed: list[Task] | None) -> None:
        """Assign ``agent.tasks`` or ``completed_tasks`` of an agent whose queue this scheduler keeps."""
        if completed is not None:
            agent._set_completed(completed)
        if tasks is None:
            return
        queued = agent._queued
        removed = [task.weight for task in queued]
        agent._set_tasks(tasks, time.monotonic())
        self._queue.replace_backlog(agent.agent_id, removed, [task.weight for task in queued], _since(queued))

    def _check_handle(self, handle: Grant) -> None:
        if not isinstance(handle, Grant):
            raise TypeError(f"expected the Grant that acquire_start() returned, got {type(handle).__name__}")
        if handle._scheduler is not None and handle._scheduler is not self:
            raise ValueError("this grant holds a slot of another scheduler; release it there")

    def _settle(self, grant: Grant, exc: BaseException | None) -> None:
        admission = grant.admission
        if admission is not None and self._enforcer is not None:
            cost = grant.cost
            outcome = SUCCEEDED if exc is None and cost is None else Outcome(status_of(exc), cost, exc)
            self._enforcer.settle(admission, outcome)

    def __repr__(self) -> str:
        res = self._resource
        return (
            f"{type(self).__name__}(resource={res.name!r}, capacity={res.capacity}, "
            f"holders={res.holder_count}, waiters={res.waiter_count}, alpha={self._alpha})"
        )
