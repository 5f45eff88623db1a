"""Which thread a process's signals reach: proctor's background threads leave them to the main thread."""

from __future__ import annotations

import signal

__all__ = ["leave_signals_to_main_thread"]


def leave_signals_to_main_thread() -> None:
    """Block SIGTERM and SIGINT in the calling thread (one of proctor's own background threads).

    The kernel gives a process's signal to any thread that does not block it. Python runs
    handlers only in the main thread, and a main thread asleep in a C call (a lock, a pipe)
    wakes only when the signal lands on it: one that landed on a background thread would leave
    a process with a handler installed running on after SIGTERM. Called first thing by every
    thread proctor starts.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
