"""AsyncLOCOScheduler: the core's fair slots for asyncio tasks; the only scheduler code that awaits."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from proctor.agent import Agent
from proctor.errors import ShutdownError, StoreError
from proctor.outcome import SUCCEEDED, Outcome, status_of
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.scheduling._core import SchedulerCore, Waiter, check_timeout
from proctor.scheduling._shared import SharedSlots
from proctor.scheduling._worker import CallThread
from proctor.scheduling.grant import Grant
from proctor.stores.fallback import count_fallback
from proctor.stores.slot_queue import Grants
from proctor.task import Task

__all__ = ["AsyncLOCOScheduler"]

T = TypeVar("T")

_monotonic = time.monotonic


class _AsyncWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, agent_id: str, weight: float, arrived: float) -> None:
        # Entry's and Waiter's fields set here rather than through two super() calls: one per wait.
        # (seq, queued and units are set by the FairQueue, which gets every waiter made.)
        self.agent_id = agent_id
        self.weight = weight
        self.arrived = arrived
        self.token: int | None = None
        self.error: BaseException | None = None
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class AsyncLOCOScheduler(SchedulerCore[_AsyncWaiter]):
    """Grants the slots of a ``SharedResource`` to asyncio tasks in L(i) order, then checks policies.

    ``async with scheduler.acquire(agent_id, task) as grant:`` waits for a
    slot, runs the policies, and yields a ``Grant``; leaving the block
    releases the slot to the next waiter and settles the policies with the
    outcome. An exception, a cancellation or a timeout anywhere in or around
    ``acquire()`` never leaks a slot or leaves a waiter behind. Use the
    scheduler from one event loop.

    With a store that keeps the waiting callers of every process (Redis), the
    store calls for slots run in a thread of the scheduler, in order, and the
    store's grants reach the waiting tasks through the event loop: the loop
    never waits on the store.

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

    _waiter_class = _AsyncWaiter

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
            now = _monotonic()
            if self._shared is not None:
                self._ended(handle)
                passed = self._give_back(handle.fencing_token, now)
                if passed is not None:  # back in the store when this returns
                    await asyncio.shield(passed)
            else:
                self._wake(self._release(handle.fencing_token, now, handle), now)
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
            made.add_done_callback(functools.partial(self._withdraw_admission, enforcer))
            raise

    def _withdraw_admission(self, enforcer: PolicyEnforcer, made: asyncio.Future[Admission]) -> None:
        """``made`` has ended after its caller went away: give back what the admission reserved."""
        if not made.cancelled() and made.exception() is None:  # else a rejection, rolled back already
            self._off_loop(enforcer.withdraw, made.result())

    # The shared queue (a store with SlotQueueSupport): store calls in the slot thread, grants on the loop.

    def _slot_call(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``call(*args)`` in the scheduler's slot thread (store calls for slots, in the order given)."""
        thread = self._slot_thread
        if thread is None:
            thread = self._slot_thread = CallThread("proctor-slots")
            self._loop = asyncio.get_running_loop()
        return thread.submit(call, *args)

    def _grants_made(self, made: asyncio.Future[Grants]) -> None:
        """A store call for slots has ended: hand over the grants it made (a failure was logged by it)."""
        if not made.cancelled() and made.exception() is None:
            self._deliver(made.result())

    def _pass_on(self, token: int) -> asyncio.Future[Grants]:
        """Give back lease ``token`` in the store, in the slot thread; the grants that makes are delivered."""
        shared = self._shared
        assert shared is not None
        passed = self._slot_call(shared.pass_on, token)
        passed.add_done_callback(self._grants_made)
        return passed

    def _give_back(self, token: int, now: float) -> asyncio.Future[Grants] | None:
        """This process no longer holds the slot of lease ``token``: pass it on.

        Returns the store call's future (None without one), which the caller may await shielded.
        """
        if self._shared is None:
            self._wake(self._release(token, now), now)
        elif token:
            self._shared_unhold(token)
            self._wake(None, now)
            return self._pass_on(token)
        else:  # a slot of the local share, taken while the store failed
            self._resource._holders -= 1
            assert self._local_share is not None
            self._local_share.release()
            self._wake(None, now)
        return None

    def _delivered(self, grants: Grants) -> None:
        """Grants collected by the keeper thread: to the event loop."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, grants)
        except RuntimeError:  # the loop has closed: no one waits any more
            shared = self._shared
            assert shared is not None
            for _, token in grants:
                shared.pass_on(token)

    def _deliver(self, grants: Grants) -> None:
        """Hand slots granted by the store to this process's waiting tasks; pass on those of tasks gone."""
        now = _monotonic()
        for caller, token in grants:
            waiter = self._shared_grant(caller, token, now)
            if waiter is None:
                self._pass_on(token)
            elif not waiter.future.done():
                waiter.future.set_result(None)
            # else cancelled, and its task has not run yet: it finds the token and gives it back

    def _abandon_shared(self, waiter: _AsyncWaiter) -> None:
        """``waiter`` gives up: it leaves the store's queue, or gives back the slot that came meanwhile."""
        shared = self._shared
        assert shared is not None
        if self._shared_leave(waiter):
            self._slot_call(shared.withdraw, waiter.caller).add_done_callback(self._grants_made)
        else:
            token = waiter.token
            assert token is not None
            waiter.token = None
            self._give_back(token, _monotonic())

    def _requested(self, made: asyncio.Future[tuple[int | None, Grants]]) -> None:
        """A request whose caller left before its answer: hand over the grants it made to others."""
        if not made.cancelled() and made.exception() is None:
            self._deliver(made.result()[1])

    async def _wait_shared(self, shared: SharedSlots, agent: Agent, waiter: _AsyncWaiter) -> int:
        """Ask the store for a slot off the loop, and wait until it grants one: its token (0: local share)."""
        made = self._slot_call(shared.request, waiter)
        try:
            token, grants = await asyncio.shield(made)
        except StoreError as exc:
            self._shared_leave(waiter)
            return await self._local(agent, waiter, exc)
        except BaseException:  # the call runs on; the withdrawal, queued after it, undoes it
            made.add_done_callback(self._requested)
            self._abandon_shared(waiter)
            raise
        if grants:
            self._deliver(grants)
        if token is not None:
            if self._shared_grant(waiter.caller, token, _monotonic()) is None:  # shutdown() turned it away
                self._pass_on(token)
                raise ShutdownError("the scheduler is shutting down")
            return token
        shared.started_waiting(waiter.caller)
        try:
            await waiter.future
        except BaseException:
            self._abandon_shared(waiter)
            raise
        token = waiter.token
        assert token is not None
        return token

    async def _local(self, agent: Agent, waiter: _AsyncWaiter, error: StoreError) -> int:
        """The store failed: raise (``on_store_error="closed"``), or take a slot of the local share."""
        mode = self._resource.on_store_error
        count_fallback("slot", mode)
        if mode == "closed":
            raise error
        share = self._local_share
        if share is None:
            share = self._local_share = asyncio.Semaphore(self._resource.local_share)
        await share.acquire()
        self._resource._holders += 1
        waiter.token = 0
        return 0

    _slot_thread: CallThread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _local_share: asyncio.Semaphore | None = None

    def _wake(self, waiter: _AsyncWaiter | None, now: float) -> None:
        """Wake the waiter the core passed a slot to, passing it on past waiters already gone.

        With none, tell ``shutdown()`` once no slot is held.
        """
        while waiter is not None:
            if not waiter.future.done():
                waiter.future.set_result(None)
                return
            # Cancelled, and its task has not run yet to withdraw: it finds its token taken back.
            waiter = self._release(self._unserve(waiter, now), now)
        if not self._resource._holders and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def shutdown(self, timeout: float = 30.0) -> dict[str, int]:
        """Refuse new work, fail every waiter with ``ShutdownError``, and wait for holders to finish.

        Returns ``{"cancelled_waiters": n, "active_holders": m}``: how many
        waiters were turned away, and how many slots were still held when
        ``timeout`` seconds ran out. Queued tasks stay on their agents.
        """
        turned_away = 0
        shared = self._shared
        for waiter in self._close(_monotonic()):
            if shared is not None:
                self._slot_call(shared.withdraw, waiter.caller).add_done_callback(self._grants_made)
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
        if shared is not None and not self._resource._holders:
            shared.close()
            if self._slot_thread is not None:
                self._slot_thread.close()
                self._slot_thread = None
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
            agent_id = self._agent_id
            shared = scheduler._shared
            if shared is None:
                agent, task, token, waiter = scheduler._request(agent_id, self._task, _monotonic())
            else:
                agent, task, waiter = scheduler._shared_request(agent_id, self._task, _monotonic())
            if waiter is None:
                waited = 0.0
            else:
                # Waiting is inline rather than in a helper coroutine: one coroutine less per wait.
                try:
                    if shared is not None:
                        if self._timeout is None:
                            token = await scheduler._wait_shared(shared, agent, waiter)
                        else:
                            async with asyncio.timeout(self._timeout):
                                token = await scheduler._wait_shared(shared, agent, waiter)
                    elif self._timeout is None:
                        await waiter.future
                    else:
                        async with asyncio.timeout(self._timeout):
                            await waiter.future
                except BaseException as exc:
                    if task is None:
                        agent._claims -= 1
                    if shared is None:
                        self._abandon(scheduler, agent, waiter, exc)
                    else:
                        self._count(agent, exc)
                    raise
                if task is None:
                    agent._claims -= 1
                assert waiter.token is not None
                token = waiter.token
                waited = _monotonic() - waiter.arrived
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
                    scheduler._give_back(token, _monotonic())
                    raise
            if claimed is not None:
                agent._serving.append(claimed)
            grant = self._grant = Grant(agent, task, waited, admission, scheduler, token)
            return grant
        except BaseException:
            self._entered = False
            raise

    @staticmethod
    def _abandon(
        scheduler: AsyncLOCOScheduler, agent: Agent, waiter: _AsyncWaiter, exc: BaseException
    ) -> None:
        """The wait ended without a slot for us: leave the queue, or pass on a slot that came too late."""
        now = _monotonic()
        scheduler._wake(scheduler._withdraw(waiter, now), now)
        _Acquire._count(agent, exc)

    @staticmethod
    def _count(agent: Agent, exc: BaseException) -> None:
        """Count a wait that ended without a slot in its agent's stats."""
        if isinstance(exc, TimeoutError):
            agent.stats.timed_out += 1
        elif not isinstance(exc, (ShutdownError, StoreError)):
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
        scheduler = self._scheduler
        now = _monotonic()
        if scheduler._shared is not None:
            scheduler._ended(grant)
            passed = scheduler._give_back(grant.fencing_token, now)
            if passed is not None:  # back in the store when the block has ended
                await asyncio.shield(passed)
        else:
            waiter = scheduler._release(grant.fencing_token, now, grant)
            if waiter is not None and not waiter.future.done():
                waiter.future.set_result(None)  # what _wake() does first, inline: once per grant
            else:
                scheduler._wake(waiter, now)
        reported = grant._cost
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
