"""CallThread: one thread that makes blocking calls for an event loop, one at a time, in the order given."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CallThread"]

T = TypeVar("T")

# A call: the loop and future to report to, the caller's context, the function and its arguments.
_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[..., Any], tuple[Any, ...]
]


class CallThread:
    """Makes the calls given to ``submit`` in a thread of its own, in order, and reports to their loops.

    A queue and one thread rather than a ``ThreadPoolExecutor``: a call's trip
    there and back costs about half as much. The thread starts at the first
    call (again in a forked child) and ends once the object is closed or
    garbage-collected and the calls already given are made.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] | None = None
        self._pid = 0

    def submit(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """A future of ``call(*args)``, made in the thread in the running loop's context."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        calls = self._calls
        if calls is None or self._pid != os.getpid():
            calls = self._start()
        calls.put((loop, future, contextvars.copy_context(), call, args))
        return future

    def close(self) -> None:
        """End the thread once the calls already given are made; a later call starts a new one."""
        if self._calls is not None:
            self._calls.put(None)
            self._calls = None

    def _start(self) -> queue.SimpleQueue[_Call | None]:
        calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Daemon: a thread waiting for calls must not keep the interpreter from exiting.
        threading.Thread(target=_serve, args=(calls,), name=self._name, daemon=True).start()
        weakref.finalize(self, calls.put, None)
        self._calls, self._pid = calls, os.getpid()
        return calls


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (item := calls.get()) is not None:
        loop, future, context, call, args = item
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(call, *args)
        except BaseException as exc:  # the caller's to handle, whatever it is
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one awaits the result
            loop.call_soon_threadsafe(_report, future, result, error)


def _report(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
