"""ApprovalListener: a thread LISTENing for changed approval requests and wakes the calls waiting on them."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable

from proctor.db.postgres.connection import connect, shown
from proctor.db.postgres.schema import NOTIFY_CHANNEL

__all__ = ["ApprovalListener"]

logger = logging.getLogger("proctor.approvals")

_TICK = 0.25  # seconds between two looks at whether the listener is still wanted
_RETRY = 1.0  # seconds before connecting again after the server dropped the connection


class ApprovalListener:
    """Calls every subscriber each time the database announces that a request's status changed.

    Its thread runs while someone is subscribed: it holds one connection that ``LISTEN``\\s on
    ``NOTIFY_CHANNEL``, and wakes everyone once more each time it (re)connects, since a notice sent
    while it was not listening is lost. Waking is a hint: waiters still poll as a backstop.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Have ``wake`` called (from the listener's thread) at each change; returns the unsubscribe."""
        with self._lock:
            key = next(self._keys)
            self._subscribers[key] = wake
            thread = self._thread
            if thread is None or not thread.is_alive() or self._pid != os.getpid():
                self._stop.clear()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="proctor-approvals-listen", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def close(self) -> None:
        """Stop the thread (within a fraction of a second) and close its connection."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join()

    def _wanted(self) -> bool:
        """Whether to keep listening; when not, the thread is forgotten under the lock."""
        with self._lock:
            if self._stop.is_set() or not self._subscribers:
                if self._thread is threading.current_thread():
                    self._thread = None
                return False
            return True

    def _wake(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for wake in subscribers:
            try:
                wake()
            except Exception:  # one waiter's failure must not stop the others' wake-ups
                logger.exception("waking a call that waits for approval failed")

    def _run(self) -> None:
        import psycopg

        while self._wanted():
            try:
                with connect(self._url) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake()
                    while self._wanted():
                        for _ in connection.notifies(timeout=_TICK):
                            self._wake()
            except psycopg.Error as exc:
                logger.warning(
                    "cannot listen for approval decisions in %s (waiting calls poll): %s",
                    shown(self._url),
                    exc,
                )
                self._stop.wait(_RETRY)
