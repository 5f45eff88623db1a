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
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["FLUSH_TIMEOUT", "watch", "watching"]

FLUSH_TIMEOUT = 5.0
"""Seconds a SIGTERM waits for the run logs' writers (container runtimes wait 10 s before SIGKILL)."""

_MAIN = threading.main_thread().ident
_watched = False
_previous: Any = signal.SIG_DFL
_flushes: list[Callable[[float], object]] = []
_finalized_in: int | None = None  # the process whose multiprocessing finalizers flush


def watch(flush: Callable[[float], object]) -> None:
    """Call ``flush(timeout)`` on SIGTERM and at a multiprocessing child's exit, then stop as before.

    Only the main thread can install a signal handler; from another thread this does
    nothing yet, and a later call from the main thread installs it.
    """
    global _watched, _previous
    if flush not in _flushes:
        _flushes.append(flush)
    _finalize_with_multiprocessing()
    if _watched or threading.get_ident() != _MAIN:
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is None:  # a handler installed from C: leave it alone
            _watched = True
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _previous, _watched = previous, True


def watching() -> bool:
    """Whether the SIGTERM handler is in place (cheap: for a check on every run)."""
    return _watched


def _flush_all() -> None:
    for flush in list(_flushes):
        flush(FLUSH_TIMEOUT)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _flush_all()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # end by the signal, as the process would have without proctor
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _finalize_with_multiprocessing() -> None:
    """A multiprocessing child leaves through ``os._exit``: flush at its finalizers, once per process."""
    global _finalized_in
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalized_in == os.getpid():
        return
    _finalized_in = os.getpid()
    util.Finalize(None, _flush_all, exitpriority=100)


def _after_fork_in_child() -> None:
    global _MAIN
    _MAIN = threading.get_ident()  # the forking thread is the child's main thread


os.register_at_fork(after_in_child=_after_fork_in_child)
