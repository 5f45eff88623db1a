"""AsyncLOCOScheduler: fair slots on a shared resource for asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from proctor.agent import Agent
from proctor.errors import BackpressureError, ShutdownError
from proctor.outcome import SUCCEEDED, Outcome
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.scheduling._worker import CallThread
from proctor.scheduling.base import SchedulerBase, Waiter, check_timeout, status_of
from proctor.scheduling.grant import Grant
from proctor.task import Task

__all__ = ["AsyncLOCOScheduler"]

T = TypeVar("T")

_monotonic = time.monotonic


class _AsyncWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, agent_id: str, weight: float, arrived: float, future: asyncio.Future[None]) -> None:
        # Entry's and Waiter's fields set here rather than through two super() calls: one per wait.
        self.agent_id = agent_id
        self.weight = weight
        self.arrived = arrived
        self.seq = 0
        self.queued = False
        self.units = 0
        self.granted = False
        self.error: BaseException | None = None
        self.future = future


class AsyncLOCOScheduler(SchedulerBase):
    """Grants the slots of a ``SharedResource`` to asyncio tasks in L(i) order, then checks policies.

    ``async with scheduler.acquire(agent_id, task) as grant:`` waits for a
    slot, runs the policies, and yields a ``Grant``; leaving the block
    releases the slot to the next waiter and settles the policies with the
    outcome. An exception, a cancellation or a timeout anywhere in or around
    ``acquire()`` never leaks a slot or leaves a waiter behind. Use the
    scheduler from one event loop.

    Policies whose calls may wait on I/O (``Policy.blocking``: a SQLite or
    other shared store) are admitted and settled in one worker thread of the
    scheduler, in the order of the grants and releases, so that the event
    loop runs on meanwhile; policies on the in-memory store are called inline.

    Work may also be queued first: ``await scheduler.submit_task(agent_id, task)``
    puts the task on the agent's queue, where its weight counts in the agent's
    ``Qi``, and ``acquire(agent_id)`` without a task serves the oldest one.

    Parameters:
        agents: the agents known from the start, if any; others register on first use.
        resource: the resource whose slots are granted.
        alpha: weight of queue depth (``Qi``) against waiting time (``Dmax``)
            in L(i), from 0 to 1; 0.25 when neither it nor ``optimize_for`` is given.
        optimize_for: ``"latency"`` (alpha 0), ``"balanced"`` (0.25) or
            ``"throughput"`` (0.5), instead of ``alpha``.
        max_waiters: how many callers may wait at once; one more raises
            ``BackpressureError``.
        budget: a ``BudgetPolicy`` checked after ``enforcer``'s policies.
        enforcer: the policies checked after each grant.
    """

    def acquire(self, agent_id: str, task: Task | None = None, *, timeout: float | None = None) -> _Acquire:
        """Wait for a slot for ``agent_id``'s ``task``.

        Without a task, the grant serves the agent's oldest queued task (see
        ``submit_task``); when every queued task is already promised to an
        earlier caller, or none is queued, it serves a default ``Task``.

        Raises ``PolicyViolationError`` when a policy rejects the task (a
        rejected queued task leaves the queue), ``TimeoutError`` after
        ``timeout`` seconds without a slot, ``BackpressureError`` when too
        many callers wait and ``ShutdownError`` once ``shutdown()`` has begun.
        """
        return _Acquire(self, agent_id, task, None if timeout is None else check_timeout(timeout))

    async def acquire_start(
        self, agent_id: str, task: Task | None = None, *, timeout: float | None = None
    ) -> Grant:
        """Wait for a slot as ``acquire()`` does, and return its ``Grant`` for ``release_handle()``.

        For callers whose work starts and ends in different callbacks. The
        slot stays held until the grant is passed to ``release_handle()``.
        """
        return await _Acquire(self, agent_id, task, check_timeout(timeout)).__aenter__()

    async def release_handle(self, handle: Grant) -> None:
        """Give back the slot of a grant from ``acquire_start()``; a second call does nothing.

        The policies settle as after work that succeeded, on ``handle.cost``
        when it was set.
        """
        self._check_handle(handle)
        if handle._scheduler is not None:
            self._finish(handle)
            enforcer = self._enforcer
            if handle.admission is not None and enforcer is not None and enforcer._blocking:
                await asyncio.shield(self._off_loop(self._settle, handle, None))
            else:
                self._settle(handle, None)

    async def submit_task(self, agent_id: str, task: Task) -> None:
        """Queue ``task`` for ``agent_id`` (registered if unknown); ``acquire(agent_id)`` serves it.

        Sets ``task.arrival_tick`` to now, in ``time.monotonic()`` seconds.
        Raises ``ShutdownError`` once ``shutdown()`` has begun.
        """
        self._submit(agent_id, task, _monotonic())

    def _finish(self, grant: Grant) -> None:
        """The work under ``grant`` has ended: pass the slot on and complete its task; settling is next.

        Leaving ``acquire()``'s block does the same, inline.
        """
        grant._scheduler = None
        agent = grant.agent
        agent.stats.granted += 1
        self._release()
        self._count(grant)
        if agent._serving:
            agent._finish(grant.task)

    def _off_loop(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``call(*args)`` in the scheduler's thread for policies, which makes the calls in the order given.

        Await the future shielded: a cancelled caller must not drop a call
        that reserves or settles.
        """
        worker = self._worker
        if worker is None:
            worker = self._worker = CallThread("proctor-policies")
        return worker.submit(call, *args)

    async def _admit_off_loop(self, enforcer: PolicyEnforcer, agent_id: str, task: Task) -> Admission:
        """``enforcer.admit`` in the worker thread; withdrawn once made if the caller has gone away."""
        made = self._off_loop(enforcer.admit, agent_id, task)
        try:
            return await asyncio.shield(made)
        except BaseException:
            made.add_done_callback(functools.partial(self._withdraw, enforcer))
            raise

    def _withdraw(self, enforcer: PolicyEnforcer, made: asyncio.Future[Admission]) -> None:
        """``made`` has ended after its caller went away: give back what the admission reserved."""
        if not made.cancelled() and made.exception() is None:  # else a rejection, rolled back already
            self._off_loop(enforcer.withdraw, made.result())

    def _release(self) -> None:
        """Hand a held slot to the best live waiter, or free it."""
        queue = self._queue
        resource = self._resource
        while queue._size:
            now = _monotonic()
            waiter: _AsyncWaiter = queue.pop(now)
            resource._waiters -= 1
            if not waiter.future.done():
                waiter.granted = True
                waited = now - waiter.arrived
                stats = self._agents[waiter.agent_id].stats
                stats.wait_total += waited
                if waited > stats.wait_max:
                    stats.wait_max = waited
                waiter.future.set_result(None)
                return
        resource._holders -= 1
        if not resource._holders and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def shutdown(self, timeout: float = 30.0) -> dict[str, int]:
        """Refuse new work, fail every waiter with ``ShutdownError``, and wait for holders to finish.

        Returns ``{"cancelled_waiters": n, "active_holders": m}``: how many
        waiters were turned away, and how many slots were still held when
        ``timeout`` seconds ran out. Queued tasks stay on their agents.
        """
        self._closed = True
        turned_away = 0
        while self._queue:
            waiter: _AsyncWaiter = self._queue.pop(_monotonic())
            self._resource._waiters -= 1
            if not waiter.future.done():
                waiter.future.set_exception(ShutdownError("the scheduler is shutting down"))
                turned_away += 1
        if self._resource._holders:
            if self._idle is None or self._idle.done():
                # A shutdown() already waiting shares its future; a new one would strand it.
                self._idle = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._idle), timeout)
        if self._worker is not None and not self._resource._holders:
            self._worker.close()  # the calls already given still run; a later settle starts a new thread
        return {"cancelled_waiters": turned_away, "active_holders": self._resource._holders}

    _idle: asyncio.Future[None] | None = None
    _worker: CallThread | None = None


class _Acquire:
    """The context manager returned by ``AsyncLOCOScheduler.acquire``."""

    __slots__ = ("_agent_id", "_entered", "_grant", "_scheduler", "_task", "_timeout")

    def __init__(
        self, scheduler: AsyncLOCOScheduler, agent_id: str, task: Task | None, timeout: float | None
    ) -> None:
        self._scheduler = scheduler
        self._agent_id = agent_id
        self._task = task
        self._timeout = timeout
        self._grant: Grant | None = None
        self._entered = False

    async def __aenter__(self) -> Grant:
        if self._entered:
            raise RuntimeError("this acquire() is already in use; call acquire() again for another slot")
        self._entered = True
        try:
            scheduler = self._scheduler
            if scheduler._closed:
                raise ShutdownError("the scheduler is shutting down")
            agent_id = self._agent_id
            agent = scheduler._agents.get(agent_id) or scheduler._agent(agent_id)
            task = self._task
            # A caller without a task serves the queue when a queued task is left for it.
            serves_queue = False
            if task is None:
                queued = agent._queued
                if queued and agent._owner is scheduler and len(queued) > agent._claims:
                    serves_queue = True
                else:
                    task = Task()
            elif not isinstance(task, Task):
                raise TypeError(f"task must be a proctor Task, got {type(task).__name__}")
            resource = scheduler._resource
            arrived = _monotonic()
            if resource._holders < scheduler._capacity and not scheduler._queue._size:
                resource._holders += 1
                waited = 0.0
            else:
                # Waiting is inline rather than in a helper coroutine: one coroutine less per wait.
                if resource._waiters >= scheduler._max_waiters:
                    raise BackpressureError(
                        f"{resource._waiters} callers already wait for {resource.name!r} "
                        f"(max_waiters={scheduler._max_waiters}); retry later or raise max_waiters"
                    )
                # A caller serving the queue weighs nothing here: its task counts in the backlog.
                weight = 0.0 if task is None else task.weight
                waiter = _AsyncWaiter(agent_id, weight, arrived, asyncio.get_running_loop().create_future())
                scheduler._queue.push(waiter)
                resource._waiters += 1
                if serves_queue:
                    agent._claims += 1
                try:
                    if self._timeout is None:
                        await waiter.future
                    else:
                        async with asyncio.timeout(self._timeout):
                            await waiter.future
                except BaseException as exc:
                    if serves_queue:
                        agent._claims -= 1
                    self._abandon(scheduler, agent, waiter, exc)
                    raise
                if serves_queue:
                    agent._claims -= 1
                waited = _monotonic() - arrived
            claimed = None
            if task is None:
                claimed = scheduler._claim(agent, _monotonic())
                task = claimed if claimed is not None else Task()
            admission = None
            enforcer = scheduler._enforcer
            if enforcer is not None:
                try:
                    if enforcer._blocking:
                        admission = await scheduler._admit_off_loop(enforcer, agent_id, task)
                    else:
                        admission = enforcer.admit(agent_id, task)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        # Cancelled while the policies ran off the loop: the task was not served.
                        agent.stats.cancelled += 1
                        if claimed is not None:
                            scheduler._unclaim(agent, claimed)
                    else:
                        agent.stats.rejected += 1
                    scheduler._release()
                    raise
            if claimed is not None:
                agent._serving.append(claimed)
            grant = self._grant = Grant(agent, task, waited, admission, scheduler)
            return grant
        except BaseException:
            self._entered = False
            raise

    @staticmethod
    def _abandon(
        scheduler: AsyncLOCOScheduler, agent: Agent, waiter: _AsyncWaiter, exc: BaseException
    ) -> None:
        """The wait ended without a slot for us: leave the queue, or pass on a slot that came too late."""
        if waiter.granted:
            # The slot arrived together with the cancellation or timeout: pass it on.
            scheduler._release()
        elif scheduler._queue.remove(waiter):
            scheduler._resource._waiters -= 1
        if isinstance(exc, TimeoutError):
            agent.stats.timed_out += 1
        elif not isinstance(exc, ShutdownError):
            agent.stats.cancelled += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        grant = self._grant
        if grant is None:
            return
        self._grant = None
        if grant._scheduler is None:  # given back already, with release_handle()
            return
        # What _finish() does, inline: this runs once per grant, and a call costs.
        grant._scheduler = None
        agent = grant.agent
        agent.stats.granted += 1
        scheduler = self._scheduler
        scheduler._release()
        # What _count() does, inline.
        task = grant.task
        reported = cost = grant._cost
        if cost is None:
            cost = task.cost
            if cost is None:
                cost = task.weight
        costs = scheduler._costs
        agent_id = agent.agent_id
        costs[agent_id] = costs.get(agent_id, 0.0) + cost
        if task.session_id is not None:
            scheduler._metrics._count_session(agent_id, task.session_id, cost)
        if agent._serving:
            agent._finish(task)
        # What _settle() does, inline.
        admission = grant.admission
        enforcer = scheduler._enforcer
        if admission is not None and enforcer is not None:
            outcome = SUCCEEDED
            if exc is not None or reported is not None:
                outcome = Outcome(status_of(exc), reported, exc)
            if enforcer._blocking:
                await asyncio.shield(scheduler._off_loop(enforcer.settle, admission, outcome))
            else:
                enforcer.settle(admission, outcome)
