"""SharedSlots: one process's side of a resource whose waiters live in the store (``SlotQueueSupport``).

With such a store, the store decides who gets a slot among the waiting callers
of every process, and this object keeps what this process needs to take part:
its waiting callers by id (to wake the one a grant names), the tokens of the
leases it holds (to renew them), and a keeper thread. The keeper blocks until
the store grants a slot to one of this process's callers and hands the grant
to the driver; every third of a lease, and when the earliest lease of any
process may have expired while callers here wait, it polls the store: the
poll renews this process's leases, tells the store the process is alive (its
callers would be forgotten otherwise) and gives back expired leases, so a
slot whose holder was killed reaches the best waiter then.

While the store does not answer (``StoreError``), a resource built with
``on_store_error="local_share"`` grants at most its ``local_share`` (``capacity //
processes``) slots in this process without it (fencing token 0); each such decision is counted in
``proctor.stores.fallback.fallbacks()`` as ``("slot", mode)``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from proctor.errors import StoreError
from proctor.stores.fallback import StoreHealth, health_of
from proctor.stores.slot_queue import Grants, SlotQueueSupport

__all__ = ["SharedSlots"]

logger = logging.getLogger("proctor.scheduling")

_AFTER_EXPIRY = 0.002  # poll this long after a lease's expiry, so that the store finds it expired
_RETRY = 0.5  # seconds between polls while the store does not answer


class SharedSlots:
    """This process's waiting callers, held leases and keeper thread for one resource in a shared queue.

    ``deliver`` takes grants the keeper collected; it is called on the
    keeper's thread (a driver moves them where it needs them).
    """

    def __init__(
        self,
        store: SlotQueueSupport,
        name: str,
        capacity: int,
        alpha: float,
        deliver: Callable[[Grants], None],
    ) -> None:
        self.store = store
        self.name = name
        self.capacity = capacity
        self.alpha = alpha
        self.lease = store.slot_lease
        self.clock: Callable[[], float] = time.monotonic
        """The ``now`` given to the store (which ignores it on its own clock, as Redis does by default)."""
        self.health: StoreHealth = health_of(store)
        self.waiting: dict[int, Any] = {}  # caller id -> the driver's waiter
        self.queued: set[int] = set()  # the waiting callers the store has queued (a poll may queue again)
        self.held: set[int] = set()  # tokens of the leases this process holds
        self.lost = 0
        """Leases found ended when renewed: their holders outlived them (their process stalled)."""
        self._ids = itertools.count(1)
        self._member = ""
        self._pid = 0
        self._lock = threading.Lock()  # waiting and held, against the keeper's snapshot
        self._deliver = deliver
        self._kick = threading.Event()
        self._keeper: threading.Thread | None = None
        self._closed = False

    @property
    def member(self) -> str:
        """This scheduler's id in the store's queue: new in each process (after a fork too)."""
        pid = os.getpid()
        if self._pid != pid:
            self._member, self._pid = uuid.uuid4().hex[:16], pid
        return self._member

    # Bookkeeping, called by the drivers (the threaded one under its lock, the asyncio one on its loop).

    def add(self, waiter: Any) -> int:
        """Register a waiting caller: its id."""
        caller = next(self._ids)
        with self._lock:
            self.waiting[caller] = waiter
        return caller

    def take(self, caller: int) -> Any:
        """Take caller ``caller`` out of the waiting ones: its waiter, or None if it had left."""
        with self._lock:
            self.queued.discard(caller)
            return self.waiting.pop(caller, None)

    def hold(self, token: int) -> None:
        """This process holds lease ``token``: the keeper renews it until ``unhold``."""
        with self._lock:
            self.held.add(token)
        if self._keeper is None:
            self._start()

    def unhold(self, token: int) -> None:
        """This process no longer holds lease ``token``."""
        with self._lock:
            self.held.discard(token)

    def started_waiting(self, caller: int) -> None:
        """Caller ``caller`` is queued in the store: the keeper listens (it may have been idle)."""
        with self._lock:
            if caller in self.waiting:
                self.queued.add(caller)
        if self._keeper is None:
            self._start()
        self._kick.set()

    def close(self) -> None:
        """Stop the keeper (at its next wake-up)."""
        self._closed = True
        self._kick.set()

    # Store calls, with the health of the store kept.

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """``method(*args)``, a store call; a ``StoreError`` marks the store down, success up."""
        try:
            result = method(*args)
        except StoreError as exc:
            self.health.failed(exc)
            raise
        if self.health.down:
            self.health.answered()
        return result

    def request(self, waiter: Any) -> tuple[int | None, Grants]:
        """Ask the store for a slot for ``waiter``: its token now (None: queued), and grants to others here.

        Raises ``StoreError`` at once while the store is known to be down, but
        for one probe now and then.
        """
        if not self.health.should_try():
            raise StoreError(f"the store of {self.name!r} is down; it is tried again shortly")
        result: tuple[int | None, Grants] = self.call(
            self.store.wait_for_slot,
            self.name,
            self.capacity,
            self.member,
            waiter.caller,
            waiter.agent_id,
            waiter.shared_weight,
            self.alpha,
            self.clock(),
            self.lease,
        )
        return result

    def pass_on(self, token: int) -> Grants:
        """Give back lease ``token``; grants to this process's callers. A store that fails lets it expire."""
        if not self.health.should_try():  # down: its lease ends there by itself
            return []
        try:
            grants: Grants = self.call(
                self.store.pass_slot, self.name, self.member, token, self.clock(), self.lease
            )
        except StoreError as exc:
            logger.warning(
                "slot %s of %r not given back (%s); it returns at its lease's end", token, self.name, exc
            )
            return []
        return grants

    def withdraw(self, caller: int) -> Grants:
        """Caller ``caller`` gives up in the store; grants to this process's callers."""
        try:
            grants: Grants = self.call(
                self.store.withdraw_slot_waiter, self.name, self.member, caller, self.clock(), self.lease
            )
        except StoreError as exc:
            # Its process polls on: a grant to it later finds it gone and is passed on.
            logger.warning("a waiter for %r could not leave the queue (%s)", self.name, exc)
            return []
        return grants

    # The keeper.

    def _start(self) -> None:
        with self._lock:
            if self._keeper is not None:
                return
            self._keeper = threading.Thread(
                target=_keep, args=(weakref.ref(self),), name=f"proctor-slots-{self.name}", daemon=True
            )
        self._keeper.start()

    def _snapshot(self) -> tuple[list[int], list[tuple[int, str, float]]]:
        with self._lock:
            held = list(self.held)
            waiting = [
                (caller, w.agent_id, w.shared_weight)
                for caller, w in self.waiting.items()
                if caller in self.queued
            ]
        return held, waiting

    def _poll(self) -> float | None:
        """Renew, say alive, collect grants: the seconds to the earliest expiry (None: none)."""
        held, waiting = self._snapshot()
        polled: tuple[list[bool], Grants, float | None] = self.call(
            self.store.poll_slots, self.name, self.member, held, waiting, self.clock(), self.lease
        )
        renewed, grants, expiry = polled
        ended = [token for token, alive in zip(held, renewed, strict=True) if not alive]
        if ended:
            with self._lock:
                gone = [token for token in ended if token in self.held]
                self.held.difference_update(gone)
            if gone:
                self.lost += len(gone)
                logger.warning(
                    "%d lease(s) of %r ended before their holders finished (the process stalled past the "
                    "%gs lease); other processes may hold those slots now",
                    len(gone),
                    self.name,
                    self.lease,
                )
        if grants:
            self._deliver(grants)
        return expiry


def _keep(ref: weakref.ref[SharedSlots]) -> None:
    """The keeper's loop; it ends once its ``SharedSlots`` is closed or collected."""
    next_poll = 0.0
    failing = False  # an outage's polls are logged once
    while True:
        shared = ref()
        if shared is None or shared._closed:
            return
        period = shared.lease / 3
        shared._kick.clear()
        now = time.monotonic()
        with shared._lock:
            waiting, busy = bool(shared.waiting), bool(shared.waiting or shared.held)
        if busy and now >= next_poll:
            next_poll = now + period
            try:
                expiry = shared._poll()
            except Exception as exc:  # the keeper outlives any failure: a store down, or closed under it
                if not failing:
                    logger.warning(
                        "polling the slots of %r failed: %s; retried every %gs", shared.name, exc, _RETRY
                    )
                failing = True
                next_poll = now + min(period, _RETRY)
            else:
                failing = False
                if waiting and expiry is not None:
                    next_poll = min(next_poll, now + max(expiry, 0.0) + _AFTER_EXPIRY)
        wait = max(next_poll - time.monotonic(), 0.001) if busy else period
        if waiting:
            if shared._closed:  # closed during the poll: its store may be closed too
                return
            store, name, member, deliver = shared.store, shared.name, shared.member, shared._deliver
            del shared
            try:
                grants = store.wait_for_grants(name, member, min(wait, period))
                if grants:
                    deliver(grants)
            except Exception:  # as above; a poll finds out what went on meanwhile
                time.sleep(min(wait, _RETRY))
        else:
            kick = shared._kick
            del shared
            if kick.wait(wait):
                next_poll = 0.0  # a caller started waiting: poll now, then listen
