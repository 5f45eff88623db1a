"""LOCOScheduler: the core's fair slots for threads; the only scheduler code that blocks a thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from proctor.agent import Agent
from proctor.errors import ShutdownError, StoreError
from proctor.scheduling._core import SchedulerCore, Waiter, check_timeout
from proctor.scheduling._shared import SharedSlots
from proctor.scheduling.grant import Grant
from proctor.stores.fallback import count_fallback
from proctor.stores.slot_queue import Grants
from proctor.task import Task

__all__ = ["LOCOScheduler"]

_monotonic = time.monotonic


class _ThreadWaiter(Waiter):
    __slots__ = ("wakeup",)

    def __init__(self, agent_id: str, weight: float, arrived: float) -> None:
        super().__init__(agent_id, weight, arrived)
        self.wakeup = threading.Lock()
        self.wakeup.acquire()


class LOCOScheduler(SchedulerCore[_ThreadWaiter]):
    """The same fair scheduler, task queues and policies as ``AsyncLOCOScheduler``, for threads.

    ``with scheduler.acquire(agent_id, task) as grant:`` blocks the calling
    thread until it gets a slot; any number of threads may call it at once.
    With a resource on a store that keeps the waiters of every process
    (Redis), the store picks the next holder among all of them and a keeper
    thread wakes the caller it picked. Takes the same parameters as
    ``AsyncLOCOScheduler``.
    """

    _waiter_class = _ThreadWaiter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        super().__init__(*args, **kwargs)
        # This process's slots while a shared queue's store fails (on_store_error="local_share").
        self._local_share = threading.BoundedSemaphore(self._resource.local_share)

    def acquire(self, agent_id: str, task: Task | None = None, *, timeout: float | None = None) -> _Acquire:
        """Block until ``agent_id``'s ``task`` gets a slot.

        Without a task, the grant serves the agent's oldest queued task (see
        ``submit_task``); when every queued task is already promised to an
        earlier caller, or none is queued, it serves a default ``Task``.

        Raises ``PolicyViolationError`` when a policy rejects the task (a
        rejected queued task leaves the queue), ``TimeoutError`` after
        ``timeout`` seconds without a slot, ``BackpressureError`` when too
        many callers wait and ``ShutdownError`` once ``shutdown()`` has begun.
        """
        return _Acquire(self, agent_id, task, check_timeout(timeout))

    def acquire_start(
        self, agent_id: str, task: Task | None = None, *, timeout: float | None = None
    ) -> Grant:
        """Block for a slot as ``acquire()`` does, and return its ``Grant`` for ``release_handle()``.

        For callers whose work starts and ends in different callbacks. The
        slot stays held until the grant is passed to ``release_handle()``.
        """
        return _Acquire(self, agent_id, task, check_timeout(timeout)).__enter__()

    def release_handle(self, handle: Grant) -> None:
        """Give back the slot of a grant from ``acquire_start()``; a second call does nothing.

        The policies settle as after work that succeeded, on ``handle.cost``
        when it was set.
        """
        self._check_handle(handle)
        self._finish(handle, None)

    def submit_task(self, agent_id: str, task: Task) -> None:
        """Queue ``task`` for ``agent_id`` (registered if unknown); ``acquire(agent_id)`` serves it.

        Sets ``task.arrival_tick`` to now, in ``time.monotonic()`` seconds.
        Raises ``ShutdownError`` once ``shutdown()`` has begun.
        """
        with self._lock:
            self._submit(agent_id, task, _monotonic())

    def register_agent(self, agent: Agent) -> None:
        with self._lock:
            super().register_agent(agent)

    def unregister_agent(self, agent_id: str) -> Agent:
        with self._lock:
            return super().unregister_agent(agent_id)

    def scores(self) -> dict[str, float]:
        with self._lock:
            return super().scores()

    def _serve_oldest(self, agent: Agent) -> Task | None:
        with self._lock:
            return super()._serve_oldest(agent)

    def _assign(self, agent: Agent, tasks: list[Task] | None, completed: list[Task] | None) -> None:
        with self._lock:
            super()._assign(agent, tasks, completed)

    def _finish(self, grant: Grant, exc: BaseException | None) -> None:
        """The work under ``grant`` has ended: pass the slot on, complete its task, settle the policies."""
        with self._lock:
            if grant._scheduler is None:  # given back already
                return
            if self._shared is None:
                self._wake(self._release(grant.fencing_token, _monotonic(), grant))
            else:
                self._ended(grant)
        if self._shared is not None:
            self._give_back(grant.fencing_token)
        self._settle(grant, exc)

    def _give_back(self, token: int) -> None:
        """Pass on the slot of lease ``token`` held in this process. Call without ``_lock``."""
        shared = self._shared
        if shared is None:
            with self._lock:
                self._wake(self._release(token, _monotonic()))
            return
        with self._lock:
            if token:
                self._shared_unhold(token)
            else:  # a slot of the local share, taken while the store failed
                self._resource._holders -= 1
            self._wake(None)
        if token:
            self._deliver(shared.pass_on(token))
        else:
            self._local_share.release()

    def _delivered(self, grants: Grants) -> None:
        self._deliver(grants)

    def _deliver(self, grants: Grants) -> None:
        """Wake the callers of this process that the store granted slots to; pass on those that left."""
        shared = self._shared
        assert shared is not None
        while grants:
            orphans = []
            with self._lock:
                now = _monotonic()
                for caller, token in grants:
                    waiter = self._shared_grant(caller, token, now)
                    if waiter is None:
                        orphans.append(token)
                    else:
                        waiter.wakeup.release()
            grants = [grant for token in orphans for grant in shared.pass_on(token)]

    def _wake(self, waiter: _ThreadWaiter | None) -> None:
        """Wake the waiter the core passed a slot to; with none, tell ``shutdown()`` once no slot is held.

        Call with ``_lock`` held.
        """
        if waiter is not None:
            waiter.wakeup.release()
        elif not self._resource._holders:
            self._idle.notify_all()

    def shutdown(self, timeout: float = 30.0) -> dict[str, int]:
        """Refuse new work, fail every waiter with ``ShutdownError``, and wait for holders to finish.

        Returns ``{"cancelled_waiters": n, "active_holders": m}``: how many
        waiters were turned away, and how many slots were still held when
        ``timeout`` seconds ran out. Queued tasks stay on their agents.
        """
        with self._lock:
            turned_away = self._close(_monotonic())
            for waiter in turned_away:
                waiter.error = ShutdownError("the scheduler is shutting down")
                waiter.wakeup.release()
        shared = self._shared
        if shared is not None:
            for waiter in turned_away:
                self._deliver(shared.withdraw(waiter.caller))
        with self._lock:
            self._idle.wait_for(lambda: not self._resource._holders, timeout)
            held = self._resource._holders
        if shared is not None and not held:
            shared.close()
        return {"cancelled_waiters": len(turned_away), "active_holders": held}


class _Acquire:
    """The context manager returned by ``LOCOScheduler.acquire``."""

    __slots__ = ("_agent_id", "_entered", "_grant", "_scheduler", "_task", "_timeout")

    def __init__(
        self, scheduler: LOCOScheduler, agent_id: str, task: Task | None, timeout: float | None
    ) -> None:
        self._scheduler = scheduler
        self._agent_id = agent_id
        self._task = task
        self._timeout = timeout
        self._grant: Grant | None = None
        self._entered = False

    def __enter__(self) -> Grant:
        if self._entered:
            raise RuntimeError("this acquire() is already in use; call acquire() again for another slot")
        self._entered = True
        try:
            scheduler = self._scheduler
            agent_id = self._agent_id
            claimed = None
            shared = scheduler._shared
            with scheduler._lock:
                now = _monotonic()
                if shared is None:
                    agent, task, token, waiter = scheduler._request(agent_id, self._task, now)
                    if waiter is None and task is None:
                        claimed = scheduler._claim(agent, now)
                else:
                    agent, task, waiter = scheduler._shared_request(agent_id, self._task, now)
            if waiter is not None:
                try:
                    if shared is None:
                        token = self._wait(scheduler, agent, waiter)
                    else:
                        token = self._wait_shared(scheduler, shared, agent, waiter)
                finally:
                    if task is None:
                        with scheduler._lock:
                            agent._claims -= 1
                            if waiter.token is not None:
                                claimed = scheduler._claim(agent, _monotonic())
                waited = _monotonic() - waiter.arrived
            else:
                waited = 0.0
            if task is None:
                task = Task() if claimed is None else claimed
            admission = None
            enforcer = scheduler._enforcer
            if enforcer is not None:
                try:
                    admission = enforcer.admit(agent_id, task)
                except BaseException:
                    with scheduler._lock:
                        agent.stats.rejected += 1
                    scheduler._give_back(token)
                    raise
            if claimed is not None:
                with scheduler._lock:
                    agent._serving.append(claimed)
            grant = self._grant = Grant(agent, task, waited, admission, scheduler, token)
            return grant
        except BaseException:
            self._entered = False
            raise

    def _wait(self, scheduler: LOCOScheduler, agent: Agent, waiter: _ThreadWaiter) -> int:
        """Block until ``waiter`` has a slot: its fencing token."""
        timeout = self._timeout
        try:
            woken = waiter.wakeup.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        except BaseException:  # KeyboardInterrupt and the like, while blocked
            with scheduler._lock:
                scheduler._wake(scheduler._withdraw(waiter, _monotonic()))
                agent.stats.cancelled += 1
            raise
        if not woken:
            with scheduler._lock:
                # The slot may have come just as the wait timed out: then keep it.
                if waiter.token is None:
                    scheduler._withdraw(waiter, _monotonic())
                    agent.stats.timed_out += 1
                    raise TimeoutError(f"agent {agent.agent_id!r} got no slot within {timeout}s")
        if waiter.error is not None:
            raise waiter.error
        assert waiter.token is not None
        return waiter.token

    def _wait_shared(
        self, scheduler: LOCOScheduler, shared: SharedSlots, agent: Agent, waiter: _ThreadWaiter
    ) -> int:
        """Ask the store for a slot and block until it grants one: its fencing token (0: the local share)."""
        timeout = self._timeout
        deadline = None if timeout is None else waiter.arrived + timeout
        try:
            token, grants = shared.request(waiter)
        except StoreError as exc:
            with scheduler._lock:
                scheduler._shared_leave(waiter)
            return self._local(scheduler, agent, waiter, exc, deadline)
        except BaseException:  # interrupted in the call: the store may have queued it, or granted
            with scheduler._lock:
                scheduler._shared_leave(waiter)
                agent.stats.cancelled += 1
            scheduler._deliver(shared.withdraw(waiter.caller))
            raise
        if grants:
            scheduler._deliver(grants)
        if token is not None:
            with scheduler._lock:
                taken = scheduler._shared_grant(waiter.caller, token, _monotonic())
            if taken is None:  # shutdown() turned it away meanwhile
                scheduler._deliver(shared.pass_on(token))
                raise ShutdownError("the scheduler is shutting down")
            return token
        shared.started_waiting(waiter.caller)
        try:
            wait = -1.0 if deadline is None else max(deadline - _monotonic(), 0.0)
            woken = waiter.wakeup.acquire(timeout=wait)
        except BaseException:  # KeyboardInterrupt and the like, while blocked
            self._leave_shared(scheduler, shared, waiter)
            with scheduler._lock:
                agent.stats.cancelled += 1
            raise
        if not woken and self._leave_shared(scheduler, shared, waiter):
            with scheduler._lock:
                agent.stats.timed_out += 1
            raise TimeoutError(f"agent {agent.agent_id!r} got no slot within {timeout}s")
        if waiter.error is not None:
            raise waiter.error
        token = waiter.token
        assert token is not None
        return token

    @staticmethod
    def _leave_shared(scheduler: LOCOScheduler, shared: SharedSlots, waiter: _ThreadWaiter) -> bool:
        """A waiter gives up: True once it left the queue; False when its slot came first (it keeps it)."""
        with scheduler._lock:
            left = scheduler._shared_leave(waiter)
        if left:
            scheduler._deliver(shared.withdraw(waiter.caller))
        return left

    @staticmethod
    def _local(
        scheduler: LOCOScheduler,
        agent: Agent,
        waiter: _ThreadWaiter,
        error: StoreError,
        deadline: float | None,
    ) -> int:
        """The store failed: raise (``on_store_error="closed"``), or take a slot of the local share."""
        mode = scheduler._resource.on_store_error
        count_fallback("slot", mode)
        if mode == "closed":
            raise error
        wait = None if deadline is None else max(deadline - _monotonic(), 0.0)
        if not scheduler._local_share.acquire(timeout=wait):
            with scheduler._lock:
                agent.stats.timed_out += 1
            raise TimeoutError(f"agent {agent.agent_id!r} got no slot of the local share within the timeout")
        with scheduler._lock:
            scheduler._resource._holders += 1
            waiter.token = 0
        return 0

    def __exit__(
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
        self._scheduler._finish(grant, exc)
