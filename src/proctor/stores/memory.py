"""MemoryStore: state in this process's memory, safe across its threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from proctor.stores.base import LedgerSupport, Store, TokenBucketSupport

__all__ = ["MemoryStore"]

_EPSILON = 1e-9  # token levels are floats; a refill of exactly one token may land just under 1.0


class MemoryStore(Store, LedgerSupport, TokenBucketSupport):
    """The embedded default: dictionaries behind one lock; lost when the process ends."""

    SCHEME = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> [spent, reserved, window]
        self._ledgers: dict[str, list[int]] = {}
        # key -> [level, updated_at]
        self._buckets: dict[str, list[float]] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    def _ledger(self, key: str, window: int) -> list[int]:
        entry = self._ledgers.get(key)
        if entry is None:
            entry = self._ledgers[key] = [0, 0, window]
        elif entry[2] < window:
            entry[0] = 0
            entry[2] = window
        return entry

    def reserve(self, key: str, amount: int, limit: int | None, window: int) -> tuple[bool, int, int]:
        with self._lock:
            entry = self._ledgers.get(key)
            if entry is None or entry[2] < window:
                entry = self._ledger(key, window)
            spent, reserved = entry[0], entry[1]
            if limit is not None and spent + reserved + amount > limit:
                return False, spent, reserved
            entry[1] = reserved + amount
            return True, spent, reserved

    def settle(self, key: str, reserved: int, actual: int, window: int) -> None:
        with self._lock:
            entry = self._ledgers.get(key)
            if entry is None or entry[2] < window:
                entry = self._ledger(key, window)
            entry[1] -= reserved
            entry[0] += actual

    def release(self, key: str, reserved: int) -> None:
        with self._lock:
            entry = self._ledgers.get(key)
            if entry is not None:
                entry[1] -= reserved

    def get(self, key: str, window: int) -> tuple[int, int]:
        with self._lock:
            entry = self._ledgers.get(key)
            if entry is None:
                return 0, 0
            spent = entry[0] if entry[2] >= window else 0
            return spent, entry[1]

    def clear(self, key: str) -> None:
        with self._lock:
            entry = self._ledgers.get(key)
            if entry is not None:
                entry[0] = 0

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
