"""AsyncLOCOScheduler: fair slots on a shared resource for asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

from proctor.agent import Agent
from proctor.errors import BackpressureError, ShutdownError
from proctor.scheduling.base import SchedulerBase, Waiter, check_timeout
from proctor.scheduling.grant import Grant
from proctor.task import Task

__all__ = ["AsyncLOCOScheduler"]

_monotonic = time.monotonic


class _AsyncWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, agent_id: str, weight: float, arrived: float, future: asyncio.Future[None]) -> None:
        super().__init__(agent_id, weight, arrived)
        self.future = future


class AsyncLOCOScheduler(SchedulerBase):
    """Grants the slots of a ``SharedResource`` to asyncio tasks in L(i) order, then checks policies.

    ``async with scheduler.acquire(agent_id, task) as grant:`` waits for a
    slot, runs the policies, and yields a ``Grant``; leaving the block
    releases the slot to the next waiter and settles the policies with the
    outcome. An exception, a cancellation or a timeout anywhere in or around
    ``acquire()`` never leaks a slot or leaves a waiter behind. Use the
    scheduler from one event loop.

    Parameters:
        agents: the agents known from the start; others register on first use.
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
        """Wait for a slot for ``agent_id``'s ``task`` (a default ``Task`` when None).

        Raises ``PolicyViolationError`` when a policy rejects the task,
        ``TimeoutError`` after ``timeout`` seconds without a slot,
        ``BackpressureError`` when too many callers wait and
        ``ShutdownError`` once ``shutdown()`` has begun.
        """
        return _Acquire(self, agent_id, task, check_timeout(timeout))

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

        Returns how many waiters were turned away and how many slots were
        still held when ``timeout`` seconds ran out.
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
        return {"waiters_turned_away": turned_away, "holders_remaining": self._resource._holders}

    _idle: asyncio.Future[None] | None = None


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
            if task is None:
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
                waiter = self._enqueue(scheduler, agent, task, arrived)
                try:
                    if self._timeout is None:
                        await waiter.future
                    else:
                        async with asyncio.timeout(self._timeout):
                            await waiter.future
                except BaseException as exc:
                    self._abandon(scheduler, agent, waiter, exc)
                    raise
                waited = _monotonic() - arrived
            admission = None
            enforcer = scheduler._enforcer
            if enforcer is not None:
                try:
                    admission = enforcer.admit(agent_id, task)
                except BaseException:
                    agent.stats.rejected += 1
                    scheduler._release()
                    raise
            grant = self._grant = Grant(agent, task, waited, admission)
            return grant
        except BaseException:
            self._entered = False
            raise

    @staticmethod
    def _enqueue(scheduler: AsyncLOCOScheduler, agent: Agent, task: Task, arrived: float) -> _AsyncWaiter:
        resource = scheduler._resource
        if resource._waiters >= scheduler._max_waiters:
            raise BackpressureError(
                f"{resource._waiters} callers already wait for {resource.name!r} "
                f"(max_waiters={scheduler._max_waiters}); retry later or raise max_waiters"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _AsyncWaiter(agent.agent_id, task.weight, arrived, future)
        scheduler._queue.push(waiter)
        resource._waiters += 1
        return waiter

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
        grant.agent.stats.granted += 1
        scheduler = self._scheduler
        scheduler._release()
        if grant.admission is not None:
            scheduler._settle(grant, exc)
