"""MemoryStore: state in this process's memory, safe across its threads."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence

from proctor.errors import ConfigurationError
from proctor.stores.base import EXPIRED_KEPT, LedgerSupport, SlotLeaseSupport, Store, TokenBucketSupport

__all__ = ["MemoryStore"]

_INFINITY = math.inf
_EPSILON = 1e-9  # token levels are floats; a refill of exactly one token may land just under 1.0


class _Ledger:
    __slots__ = ("expired", "leases", "next_expiry", "reserved", "spent", "window")

    def __init__(self, window: int) -> None:
        self.spent = 0
        self.reserved = 0  # the sum of the live leases' amounts
        self.window = window
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (amount, expires)
        self.expired: dict[int, float] = {}  # id -> expires: given back, but a late settle still counts
        self.next_expiry = math.inf


class _Slots:
    """One resource name's slots: a free list, the live leases and the expiries of the finite ones."""

    __slots__ = ("capacity", "expires", "free", "held", "next_expiry")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # One item per free slot: list.pop() and list.append() are atomic, so taking and giving back
        # a slot needs no lock.
        self.free: list[None] = [None] * capacity
        self.held: dict[int, str] = {}  # token -> holder: the live leases
        self.expires: dict[int, float] = {}  # token -> expiry, for finite leases; changed under the lock
        self.next_expiry = math.inf


class MemoryStore(Store, LedgerSupport, TokenBucketSupport, SlotLeaseSupport):
    """The embedded default: dictionaries behind one lock; lost when the process ends.

    Slots take no lock: each operation is a few atomic list and dict steps,
    so a scheduler's grant costs little more than a counter. Their leases
    are infinite by default (``slot_lease``): the store ends with its holders.
    """

    SCHEME = "memory"
    blocking = False  # a dictionary update under a lock held only by other such updates

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}
        self._ids = itertools.count(1)
        # key -> [level, updated_at]
        self._buckets: dict[str, list[float]] = {}
        self._slots: dict[str, _Slots] = {}
        self._tokens = itertools.count(1)  # fencing tokens, increasing across every name

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    def _ledger(self, key: str, window: int) -> _Ledger:
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = _Ledger(window)
        elif ledger.window < window:
            ledger.spent = 0
            ledger.window = window
        return ledger

    @staticmethod
    def _reap(ledger: _Ledger, now: float) -> None:
        if now < ledger.next_expiry:
            return
        live: dict[int, tuple[int, float]] = {}
        next_expiry = math.inf
        for lease_id, (amount, expires) in ledger.leases.items():
            if expires <= now:
                ledger.reserved -= amount
                ledger.expired[lease_id] = expires
            else:
                live[lease_id] = (amount, expires)
                next_expiry = min(next_expiry, expires)
        ledger.leases = live
        ledger.next_expiry = next_expiry
        horizon = now - EXPIRED_KEPT
        for lease_id in [i for i, expires in ledger.expired.items() if expires < horizon]:
            del ledger.expired[lease_id]

    def reserve(
        self, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
    ) -> tuple[int | None, int, int]:
        with self._lock:
            ledger = self._ledger(key, window)
            if now >= ledger.next_expiry:
                self._reap(ledger, now)
            spent, reserved = ledger.spent, ledger.reserved
            if limit is not None and spent + reserved + amount > limit:
                return None, spent, reserved
            return self._lease(ledger, amount, now + lease), spent, reserved

    def reserve_if(
        self,
        ledgers: Sequence[tuple[str, int]],
        amount: int,
        now: float,
        lease: float,
        admit: Callable[[int, int], bool],
    ) -> list[int] | None:
        with self._lock:
            found = [self._ledger(key, window) for key, window in ledgers]
            for ledger in found:
                if now >= ledger.next_expiry:
                    self._reap(ledger, now)
            if not admit(found[0].spent, found[0].reserved):
                return None
            if not amount:
                return []
            return [self._lease(ledger, amount, now + lease) for ledger in found]

    def _lease(self, ledger: _Ledger, amount: int, expires: float) -> int:
        lease_id = next(self._ids)
        ledger.leases[lease_id] = (amount, expires)
        ledger.reserved += amount
        if expires < ledger.next_expiry:
            ledger.next_expiry = expires
        return lease_id

    def settle(self, key: str, lease_id: int, actual: int, window: int) -> bool:
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                return False
            held = ledger.leases.pop(lease_id, None)
            if held is not None:
                ledger.reserved -= held[0]
            elif ledger.expired.pop(lease_id, None) is None:
                return False  # settled or released already
            if ledger.window < window:
                ledger.spent = 0
                ledger.window = window
            ledger.spent += actual
            return True

    def release(self, key: str, lease_id: int) -> None:
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is not None:
                held = ledger.leases.pop(lease_id, None)
                if held is not None:
                    ledger.reserved -= held[0]
                else:
                    ledger.expired.pop(lease_id, None)

    def spend(self, key: str, amount: int, window: int) -> None:
        with self._lock:
            self._ledger(key, window).spent += amount

    def get(self, key: str, window: int, now: float) -> tuple[int, int]:
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                return 0, 0
            self._reap(ledger, now)
            return (ledger.spent if ledger.window >= window else 0), ledger.reserved

    def clear(self, key: str) -> None:
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is not None:
                ledger.spent = 0

    def keys(self, prefix: str) -> Iterator[str]:
        with self._lock:
            found = [key for key in self._ledgers if key.startswith(prefix)]
        return iter(found)

    def take(self, key: str, tokens: float, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [capacity, now]
            level = bucket[0]
            if now > bucket[1]:
                level = min(capacity, level + (now - bucket[1]) * rate)
                bucket[1] = now
            if level + _EPSILON >= tokens:
                level = max(level - tokens, 0.0)
                bucket[0] = level
                return True, level
            bucket[0] = level
            return False, level

    def refund(self, key: str, tokens: float, capacity: float) -> None:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket[0] = min(capacity, bucket[0] + tokens)

    def peek(self, key: str, capacity: float, rate: float, now: float) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return capacity
            if now > bucket[1]:
                return min(capacity, bucket[0] + (now - bucket[1]) * rate)
            return bucket[0]

    def acquire_slot(self, resource: str, capacity: int, holder: str, now: float, lease: float) -> int | None:
        slots = self._slots.get(resource)
        if slots is None or slots.capacity != capacity:
            slots = self._open(resource, capacity)
        if now >= slots.next_expiry:
            self._expire(slots, now)
        try:
            slots.free.pop()
        except IndexError:
            return None
        token = next(self._tokens)
        slots.held[token] = holder
        if lease < _INFINITY:
            self._expire_at(slots, None, token, now + lease)
        return token

    def hand_over_slot(self, resource: str, token: int, holder: str, now: float, lease: float) -> int | None:
        try:
            slots = self._slots[resource]
            if not (lease < _INFINITY or slots.expires):  # infinite leases only: what follows, in short
                held = slots.held
                del held[token]
                passed = next(self._tokens)
                held[passed] = holder
                return passed
        except KeyError:  # no such name, or no such lease
            return None
        if now >= slots.next_expiry:
            self._expire(slots, now)
        held = slots.held
        if held.pop(token, None) is None:
            return None
        passed = next(self._tokens)
        held[passed] = holder
        self._expire_at(slots, token, passed, now + lease)
        return passed

    def renew_slot(self, resource: str, token: int, now: float, lease: float) -> bool:
        slots = self._slots.get(resource)
        if slots is None:
            return False
        if now >= slots.next_expiry:
            self._expire(slots, now)
        if token not in slots.held:
            return False
        self._expire_at(slots, token, token, now + lease)
        return True

    def release_slot(self, resource: str, token: int) -> bool:
        slots = self._slots.get(resource)
        if slots is None or slots.held.pop(token, None) is None:
            return False
        slots.free.append(None)  # an expiry left behind is dropped when it comes
        return True

    def slots_held(self, resource: str, now: float) -> int:
        slots = self._slots.get(resource)
        if slots is None:
            return 0
        if now >= slots.next_expiry:
            self._expire(slots, now)
        return len(slots.held)

    def _open(self, resource: str, capacity: int) -> _Slots:
        with self._lock:
            slots = self._slots.get(resource)
            if slots is None:
                slots = self._slots[resource] = _Slots(capacity)
            elif slots.capacity != capacity:
                raise ConfigurationError(
                    f"resource {resource!r} has {slots.capacity} slots in this store; "
                    f"another user asks for {capacity}: give each capacity its own name"
                )
            return slots

    def _expire_at(self, slots: _Slots, old: int | None, token: int, expires: float) -> None:
        """Lease ``token`` (which replaces lease ``old``, if any) expires at ``expires``."""
        with self._lock:
            if old is not None:
                slots.expires.pop(old, None)
            if expires < _INFINITY and token in slots.held:  # not released meanwhile
                slots.expires[token] = expires
                if expires < slots.next_expiry:
                    slots.next_expiry = expires

    def _expire(self, slots: _Slots, now: float) -> None:
        """Give back the slots of leases that expired by ``now``."""
        with self._lock:
            next_expiry = math.inf
            for token, expires in list(slots.expires.items()):
                if expires <= now:
                    del slots.expires[token]
                    if slots.held.pop(token, None) is not None:  # not released meanwhile
                        slots.free.append(None)
                elif expires < next_expiry:
                    next_expiry = expires
            slots.next_expiry = next_expiry
