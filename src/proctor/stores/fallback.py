"""What policies do while their shared store does not answer: the counter, the probe and the local share.

A store call that fails (a timeout, a refused connection: ``StoreError``)
marks the store down in its ``StoreHealth``. The next call tries the store at
once (a lone slow answer costs one call); while it still fails, callers skip it
and follow their policy's ``on_store_error`` at once, and one caller every
``PROBE_INTERVAL`` seconds makes its call on the store anyway: the probe.
The first call that the store answers marks it up again, and then runs the
settles that were put off while it was down (each safe to run twice: a settle
is idempotent on its lease id).

Every decision made without the store is counted by ``(kind, mode)``
(``fallbacks()``): kinds are ``"budget"``, ``"rate"`` and ``"slot"``, modes
``"closed"`` (refused), ``"open"`` (allowed, spend written when the store is
back) and ``"local_share"`` (decided on this process's share of the limit).
The first failure of an outage logs one warning on ``proctor.stores.fallback``
(none per call); the store's return is logged at INFO, with what was decided
meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Final

from proctor.errors import StoreError

__all__ = [
    "KINDS",
    "MODES",
    "PROBE_INTERVAL",
    "LocalShare",
    "StoreHealth",
    "count_fallback",
    "fallbacks",
    "health_of",
]

logger = logging.getLogger("proctor.stores.fallback")

KINDS: Final = ("budget", "rate", "slot")
"""What decided without the store: a budget, a rate limit, a resource's slots."""

MODES: Final = ("closed", "open", "local_share")
"""How it decided: refused, allowed, or on this process's share of the limit."""

PROBE_INTERVAL = 0.5
"""Seconds between two attempts on a store that is down; callers in between skip it."""

MAX_PENDING = 100_000
"""The most settles a store keeps waiting for its return; older ones are dropped beyond (and logged)."""

_counts: dict[tuple[str, str], int] = {}
_counts_lock = threading.Lock()


def count_fallback(kind: str, mode: str) -> None:
    """Count one decision made without the store, by a policy of one of ``KINDS`` in one of ``MODES``."""
    if kind not in KINDS or mode not in MODES:
        raise ValueError(f"a fallback is one of {KINDS} in one of {MODES}, not ({kind!r}, {mode!r})")
    with _counts_lock:
        _counts[kind, mode] = _counts.get((kind, mode), 0) + 1


def fallbacks() -> dict[tuple[str, str], int]:
    """How many decisions this process made without its store since it started, by ``(kind, mode)``.

    Only pairs that happened are present; the values only grow (a Prometheus
    counter can read them as they are).
    """
    with _counts_lock:
        return dict(_counts)


class StoreHealth:
    """Whether one store answers, as its users found out; the settles that wait for its return.

    Parameters:
        name: the store, as the log names it.
        probe_interval: seconds between two attempts while the store is down.
        clock: monotonic seconds; for tests.
    """

    def __init__(
        self, name: str, probe_interval: float = PROBE_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.probe_interval = probe_interval
        self.down = False
        """True from a failed call until the next call the store answers."""
        self.outages = 0
        """How many outages have begun; a local share starts over at each."""
        self._clock = clock
        self._since = 0.0
        self._next_try = 0.0
        self._counted: dict[tuple[str, str], int] = {}
        self._pending: deque[Callable[[], object]] = deque()
        self._dropped = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def should_try(self) -> bool:
        """Whether to call the store now: always while it is up; while down, for one caller per interval."""
        if not self.down:
            return True
        now = self._clock()
        with self._lock:
            if now < self._next_try:
                return False
            self._next_try = now + self.probe_interval
            return True

    def failed(self, error: StoreError) -> None:
        """A call failed: the store is down until a call succeeds; an outage's first failure is logged."""
        now = self._clock()
        with self._lock:
            if self.down:
                self._next_try = now + self.probe_interval
                return
            self._next_try = now  # the next call tries at once: one slow answer is not an outage yet
            self.down = True
            self.outages += 1
            self._since = now
            self._counted = fallbacks()
        logger.warning(
            "%s is unreachable (%s); until it answers, each policy that uses it follows its "
            "on_store_error, and it is tried again every %gs",
            self.name,
            error,
            self.probe_interval,
        )

    def answered(self) -> None:
        """A call succeeded: the store is up; settles put off during the outage are run now."""
        if self.down:
            with self._lock:
                if not self.down:
                    return
                self.down = False
                lasted = self._clock() - self._since
                before = self._counted
            during = {
                f"{kind}/{mode}": count - before.get((kind, mode), 0)
                for (kind, mode), count in fallbacks().items()
                if count > before.get((kind, mode), 0)
            }
            logger.info(
                "%s answers again after %.1fs; decisions made without it: %s; settles to write: %d",
                self.name,
                lasted,
                during or "none",
                len(self._pending),
            )
        if self._pending:
            self.flush()

    def settle(self, action: Callable[[], object]) -> None:
        """Run ``action``, a store call safe to repeat (a settle, a release), now if the store may answer,
        else (or when it fails) once the store answers again."""
        if not self.down or self.should_try():
            try:
                action()
            except StoreError as exc:
                self.failed(exc)
            else:
                if self.down:
                    self.answered()
                return
        self.defer(action)

    def defer(self, action: Callable[[], object]) -> None:
        """Run ``action`` (a store call, safe to run twice) once the store answers again."""
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self._dropped += 1
                if self._dropped == 1:
                    logger.error(
                        "%s: more than %d settles wait for the store; the oldest are dropped, "
                        "their spend is not counted",
                        self.name,
                        MAX_PENDING,
                    )
            self._pending.append(action)
        if not self.down:  # it answered again while this settle failed: no later return would run it
            self.flush()

    @property
    def pending(self) -> int:
        """How many settles wait for the store."""
        return len(self._pending)

    @property
    def dropped(self) -> int:
        """How many settles were dropped because too many waited (``MAX_PENDING``)."""
        return self._dropped

    def flush(self) -> bool:
        """Run the settles that wait, in order, until one fails; True when none is left.

        One thread runs them at a time; another that asks meanwhile returns at once.
        """
        while self._flushing.acquire(blocking=False):
            try:
                emptied = self._run_pending()
            finally:
                self._flushing.release()
            if not emptied or self.down or not self._pending:  # else one came in as the lock was let go
                return emptied
        return False

    def _run_pending(self) -> bool:
        while self._pending:
            action = self._pending[0]
            try:
                action()
            except StoreError as exc:
                self.failed(exc)
                return False
            except Exception:
                logger.exception("%s: a settle put off during an outage failed; it is dropped", self.name)
            with self._lock:
                if self._pending and self._pending[0] is action:
                    self._pending.popleft()
        return True


_healths: weakref.WeakKeyDictionary[object, StoreHealth] = weakref.WeakKeyDictionary()
_healths_lock = threading.Lock()


def health_of(store: object) -> StoreHealth:
    """The ``StoreHealth`` of ``store``, shared by every policy that uses it in this process."""
    health = _healths.get(store)
    if health is None:
        with _healths_lock:
            health = _healths.get(store)
            if health is None:
                health = _healths[store] = StoreHealth(repr(store))
    return health


class LocalShare:
    """This process's share of a rate limit while the store is down: token buckets of ``limit / processes``.

    Each bucket holds at most ``limit / processes`` tokens and refills at
    ``limit / processes`` per period, so ``processes`` processes together admit
    at most the limit's rate. Every bucket starts empty at the start of an
    outage (``StoreHealth.outages``): what the shared bucket admitted just
    before is not admitted a second time.

    Parameters:
        processes: how many processes share the limit (the user says; proctor cannot count them).
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._buckets: dict[str, list[float]] = {}  # key -> [level, last update]
        self._outage = -1
        self._lock = threading.Lock()

    def take(self, key: str, limit: float, period: float, now: float, outage: int) -> tuple[bool, float]:
        """Take one token from ``key``'s local bucket, in outage number ``outage``: whether it was there,
        and the level after, in tokens of the local bucket."""
        capacity = limit / self.processes
        rate = capacity / period
        with self._lock:
            if outage != self._outage:
                self._buckets.clear()
                self._outage = outage
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [0.0, now]
            level = bucket[0]
            if now > bucket[1]:
                level = min(capacity, level + (now - bucket[1]) * rate)
                bucket[1] = now
            if level + 1e-9 >= 1.0:
                bucket[0] = max(level - 1.0, 0.0)
                return True, bucket[0]
            bucket[0] = level
            return False, level

    def refund(self, key: str, limit: float) -> None:
        """Put back a token taken from ``key``'s local bucket for a call that was rolled back."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket[0] = min(limit / self.processes, bucket[0] + 1.0)

    def wait(self, level: float, limit: float, period: float) -> float:
        """Seconds until the local bucket at ``level`` holds a whole token."""
        rate = limit / self.processes / period
        return math.inf if rate <= 0 else max(1.0 - level, 0.0) / rate
