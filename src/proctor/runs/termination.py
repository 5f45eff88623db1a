"""Keep what was recorded when the process is told to stop: SIGTERM, and multiprocessing's exit.

A process ended by SIGTERM's default action runs no ``atexit`` handler, and a
``multiprocessing`` child leaves through ``os._exit``; either would lose the
records still queued for the run log's writer. ``watch`` puts a SIGTERM handler
in front of whatever the application had: it flushes every run log of the
process (for at most ``FLUSH_TIMEOUT`` seconds), then does what the signal did
before (calls the application's handler, ignores it, or ends the process by the
signal, so the exit status still says SIGTERM). The application's handler
installed after proctor's replaces it; if that handler exits through
``sys.exit``, the ``atexit`` flush keeps the records all the same.

Python runs a signal handler in the main thread, between bytecodes. A signal
that arrives just before the main thread blocks in C (a ``multiprocessing``
worker waiting for its next task) would wait there for ever: the process,
which without a handler would have died, would run on. So the handler comes
with a watchdog: where no other code uses ``signal.set_wakeup_fd``, proctor
takes it, and a thread of its own that reads it pokes the main thread
(``pthread_kill``) until the handler has started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from proctor._signals import leave_signals_to_main_thread

__all__ = ["FLUSH_TIMEOUT", "watch", "watching"]

FLUSH_TIMEOUT = 5.0
"""Seconds a SIGTERM waits for the run logs' writers (container runtimes wait 10 s before SIGKILL)."""

_POKE = 0.2
"""Seconds the watchdog gives the main thread to start the handler before it pokes it again."""

_MAIN = threading.main_thread().ident
_armed_in: int | None = None  # the process whose SIGTERM handler (and watchdog) is in place
_previous: Any = signal.SIG_DFL
_handling = False  # the handler has started in this process
_flushes: list[Callable[[float], object]] = []
_finalized_in: int | None = None  # the process whose multiprocessing finalizers flush
_wakeup: int | None = None  # the write end of the watchdog's pipe, when proctor holds the wakeup fd


def watch(flush: Callable[[float], object]) -> None:
    """Call ``flush(timeout)`` on SIGTERM and at a multiprocessing child's exit, then stop as before.

    Only the main thread can install a signal handler; from another thread this does
    nothing yet, and a later call from the main thread installs it.
    """
    global _armed_in, _previous
    if flush not in _flushes:
        _flushes.append(flush)
    _finalize_with_multiprocessing()
    if _armed_in == os.getpid() or threading.get_ident() != _MAIN:
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is None:  # a handler installed from C: leave it alone
            _armed_in = os.getpid()
            return
        if previous is not _on_sigterm:  # a forked child keeps its parent's handler and what it chains to
            signal.signal(signal.SIGTERM, _on_sigterm)
            _previous = previous
        _start_watchdog()
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _armed_in = os.getpid()


def watching() -> bool:
    """Whether the SIGTERM handler is in place in this process (cheap: for a check on every run)."""
    return _armed_in == os.getpid()


def _flush_all() -> None:
    for flush in list(_flushes):
        flush(FLUSH_TIMEOUT)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _handling
    _handling = True
    _flush_all()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # end by the signal, as the process would have without proctor
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _start_watchdog() -> None:
    """Take the wakeup fd, unless someone else has it, and read it from a thread of proctor's own."""
    global _wakeup
    if not hasattr(signal, "pthread_kill"):
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        earlier = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:
        os.close(read)
        os.close(write)
        return
    if earlier != -1:  # asyncio or another library listens there: give it back, do without
        signal.set_wakeup_fd(earlier)
        os.close(read)
        os.close(write)
        return
    _wakeup = write
    threading.Thread(target=_watchdog, args=(read, _MAIN), name="proctor-sigterm", daemon=True).start()


def _watchdog(read: int, main: int | None) -> None:
    leave_signals_to_main_thread()
    while True:
        try:
            data = os.read(read, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGTERM not in data:
            continue
        time.sleep(_POKE)
        while not _handling and main is not None:  # the main thread slept through it: wake it
            signal.pthread_kill(main, signal.SIGTERM)
            time.sleep(_POKE)


def _finalize_with_multiprocessing() -> None:
    """A multiprocessing child leaves through ``os._exit``: flush at its finalizers, once per process."""
    global _finalized_in
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalized_in == os.getpid():
        return
    _finalized_in = os.getpid()
    util.Finalize(None, _flush_all, exitpriority=100)


def _after_fork_in_child() -> None:
    """The child has no watchdog thread, and must not write to its parent's pipe: it arms its own when
    it records. Until then SIGTERM does what it did before proctor: the handler it inherited, without a
    watchdog, could leave it blocked for ever in C (a pool worker waiting for a task) instead of ending."""
    global _MAIN, _handling, _wakeup
    _MAIN = threading.get_ident()  # the forking thread is the child's main thread
    _handling = False
    if _armed_in is not None:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, _previous)
    if _wakeup is not None:
        with contextlib.suppress(ValueError):  # forked from a thread that is not the main one
            current = signal.set_wakeup_fd(-1)
            if current != _wakeup:  # someone took it after proctor: theirs stays
                signal.set_wakeup_fd(current)
        _wakeup = None


os.register_at_fork(after_in_child=_after_fork_in_child)
