from __future__ import annotations

import pytest

from proctor import (
    BudgetPolicy,
    ConfigurationError,
    MemoryStore,
    RatePolicy,
    Store,
    StoreError,
    store_from_url,
)
from proctor.stores import TokenBucketSupport


def test_store_from_url() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)
    with pytest.raises(ConfigurationError, match=r"no store serves .nosuch://x.; known schemes: .*memory://"):
        store_from_url("nosuch://x")
    with pytest.raises(ConfigurationError):
        store_from_url("memory")


def test_ledger_reserve_settle_release() -> None:
    store = MemoryStore()
    first, spent, reserved = store.reserve("k", 5, 10, 0, 0.0, 60.0)
    assert first is not None
    assert (spent, reserved) == (0, 0)
    assert store.reserve("k", 6, 10, 0, 0.0, 60.0) == (None, 0, 5)
    second, _, _ = store.reserve("k", 5, 10, 0, 0.0, 60.0)
    assert second is not None
    assert second != first
    assert store.settle("k", first, 3, 0) is True
    store.release("k", second)
    assert store.get("k", 0, 0.0) == (3, 0)
    # A later window starts spend over; reservations carry over.
    third, _, _ = store.reserve("k", 2, None, 0, 0.0, 60.0)
    assert third is not None
    assert store.get("k", 1, 0.0) == (0, 2)
    store.settle("k", third, 2, 1)
    assert store.get("k", 1, 0.0) == (2, 0)
    store.spend("k", 4, 1)
    store.clear("k")
    assert store.get("k", 1, 0.0) == (0, 0)
    assert list(store.keys("k")) == ["k"]
    assert list(store.keys("x")) == []


def test_token_bucket() -> None:
    store = MemoryStore()
    assert store.peek("b", 2.0, 1.0, 0.0) == 2.0
    assert store.take("b", 1.0, 2.0, 1.0, 0.0) == (True, 1.0)
    assert store.take("b", 1.0, 2.0, 1.0, 0.0) == (True, 0.0)
    assert store.take("b", 1.0, 2.0, 1.0, 0.5) == (False, 0.5)
    assert store.take("b", 1.0, 2.0, 1.0, 1.0) == (True, 0.0)
    store.refund("b", 1.0, 2.0)
    assert store.peek("b", 2.0, 1.0, 1.0) == 1.0
    assert store.peek("b", 2.0, 1.0, 100.0) == 2.0


def test_driver_errors_become_store_errors() -> None:
    class FlakyStore(MemoryStore):
        SCHEME = "flaky"
        base_exceptions = (ConnectionError,)

        def get(self, key: str, window: int) -> tuple[int, int]:
            raise ConnectionError("connection reset")

    with pytest.raises(StoreError, match="connection reset") as info:
        store_from_url("flaky://").get("k", 0)
    assert isinstance(info.value.store_error, ConnectionError)
    assert issubclass(FlakyStore, Store)


def test_a_subclass_does_not_take_over_its_parents_scheme() -> None:
    class CountingStore(MemoryStore):
        pass

    assert type(store_from_url("memory://")) is MemoryStore
    assert issubclass(CountingStore, MemoryStore)


class BucketsOnly(Store, TokenBucketSupport):
    """A store that serves token buckets and no ledgers."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    @classmethod
    def from_url(cls, url: str) -> BucketsOnly:
        return cls()

    def take(self, key: str, tokens: float, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        return self._inner.take(key, tokens, capacity, rate, now)

    def refund(self, key: str, tokens: float, capacity: float) -> None:
        self._inner.refund(key, tokens, capacity)

    def peek(self, key: str, capacity: float, rate: float, now: float) -> float:
        return self._inner.peek(key, capacity, rate, now)


def test_policies_refuse_a_store_without_their_capability() -> None:
    with pytest.raises(ConfigurationError, match="BudgetPolicy needs a store with LedgerSupport"):
        BudgetPolicy(store=BucketsOnly())
    RatePolicy(default_limit=1.0, store=BucketsOnly())
