"""PollingChannel: a channel that asks at once and is asked for answers now and then, holding no thread."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Callable, Collection, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from proctor._signals import leave_signals_to_main_thread
from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest

__all__ = ["PollingChannel"]

Answer = ApprovalDecision | None
"""A finished request's outcome: a decision, or None for "closed with no answer"."""


class PollingChannel(ApprovalChannel):
    """A channel written as three short calls: deliver a request, look for answers, close one.

    ``submit``, ``poll``, ``expire`` and ``cancel`` must each return quickly (a database
    write or read, an HTTP call). The waiting is done here: a sync caller sleeps between
    polls; async callers await a future, and one watcher task per event loop polls for all
    of them at once, every ``poll_interval`` seconds. The channel's calls made for async
    callers run on one worker thread of the channel's own, so they never block the event
    loop and never take a thread of its default executor; no thread is held while people
    think, however many calls wait.
    """

    poll_interval: float = 0.2
    """Seconds between two looks for answers."""

    @abstractmethod
    def submit(self, request: ApprovalRequest) -> Hashable:
        """Deliver ``request`` to people; returns a ticket that names it in ``poll``."""

    @abstractmethod
    def poll(self, tickets: Collection[Any]) -> Mapping[Any, Answer]:
        """The requests among ``tickets`` that are finished, with their outcomes; the rest still wait."""

    def expire(self, ticket: Any) -> Answer:
        """Nobody decided in time: close the request; returns an answer that came meanwhile, else None."""
        return None

    def cancel(self, ticket: Any) -> None:
        """The caller stopped waiting (interrupted or cancelled): close the request so nobody decides it."""

    def wakeups(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Have ``wake`` called, from any thread, when answers may have come: waiters then poll at once.

        Returns what stops that. None (the default): the channel cannot tell, waiters poll every
        ``poll_interval`` only. Polling stays the backstop either way.
        """
        return None

    # -- waiting, sync

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        end = time.monotonic() + request.timeout
        ticket = self.submit(request)
        woken = threading.Event()
        stop = None
        try:
            stop = self.wakeups(woken.set)
            while True:
                woken.clear()  # before the poll: a wake-up during it ends the next pause at once
                finished = self.poll((ticket,))
                if ticket in finished:
                    return finished[ticket]
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return self.expire(ticket)
                woken.wait(min(self.poll_interval, remaining))
        except BaseException:
            self.cancel(ticket)
            raise
        finally:
            if stop is not None:
                stop()

    # -- waiting, async

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        loop = asyncio.get_running_loop()
        end = loop.time() + request.timeout  # the timeout counts from the call, not from the write
        ticket = await self._call(loop, self.submit, request)
        watcher = self._watcher(loop)
        answer = watcher.watch(ticket)
        try:
            await asyncio.wait((answer,), timeout=max(0.0, end - loop.time()))
        except asyncio.CancelledError:
            watcher.forget(ticket)
            await self._call(loop, self.cancel, ticket)
            raise
        watcher.forget(ticket)
        if answer.done():
            return answer.result()
        expired: Answer = await self._call(loop, self.expire, ticket)
        return expired

    def _watcher(self, loop: asyncio.AbstractEventLoop) -> _Watcher:
        watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = self.__dict__.setdefault(
            "_watchers", weakref.WeakKeyDictionary()
        )
        watcher = watchers.get(loop)
        if watcher is None:
            watcher = watchers[loop] = _Watcher(self, loop)
        return watcher

    async def _call(self, loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> Any:
        """Run one of the channel's short calls on its worker thread, in the caller's context."""
        return await loop.run_in_executor(self._worker(), contextvars.copy_context().run, function, *args)

    def _worker(self) -> ThreadPoolExecutor:
        """The channel's one worker thread (a new one in a forked child, where threads do not survive)."""
        state = self.__dict__
        with _setup:
            worker = state.get("_worker_pool")
            if worker is None or state.get("_worker_pid") != os.getpid():
                worker = state["_worker_pool"] = ThreadPoolExecutor(
                    1, thread_name_prefix="proctor-approvals", initializer=leave_signals_to_main_thread
                )
                state["_worker_pid"] = os.getpid()
        return worker


_setup = threading.Lock()  # guards the lazy creation of each channel's worker


class _Watcher:
    """Polls, for one event loop, every ticket its coroutines wait on, in one ``poll`` call a round."""

    def __init__(self, channel: PollingChannel, loop: asyncio.AbstractEventLoop) -> None:
        self._channel = channel
        self._loop = loop
        self._waiting: dict[Any, asyncio.Future[Answer]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, ticket: Any) -> asyncio.Future[Answer]:
        """A future that gets ``ticket``'s answer once ``poll`` reports it finished."""
        answer: asyncio.Future[Answer] = self._loop.create_future()
        self._waiting[ticket] = answer
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run(), name="proctor-approval-watcher")
        return answer

    def forget(self, ticket: Any) -> None:
        self._waiting.pop(ticket, None)

    async def _run(self) -> None:
        channel = self._channel
        woken = asyncio.Event()
        loop = self._loop

        def wake() -> None:  # from another thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(woken.set)

        try:
            stop = await channel._call(loop, channel.wakeups, wake)
        except Exception:  # no wake-ups: the polls below still answer, or report the channel's failure
            stop = None
        try:
            await self._watch(woken)
        finally:
            if stop is not None:
                stop()

    async def _watch(self, woken: asyncio.Event) -> None:
        channel = self._channel
        while self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), channel.poll_interval)
            woken.clear()  # before the poll: a wake-up during it ends the next pause at once
            tickets = list(self._waiting)
            if not tickets:
                return
            try:
                finished = await channel._call(self._loop, channel.poll, tickets)
            except Exception as exc:  # every waiter learns that the channel failed, as a sync caller would
                for ticket in tickets:
                    answer = self._waiting.pop(ticket, None)
                    if answer is not None and not answer.done():
                        answer.set_exception(exc)
                continue
            for ticket, outcome in finished.items():
                answer = self._waiting.pop(ticket, None)
                if answer is not None and not answer.done():
                    answer.set_result(outcome)
