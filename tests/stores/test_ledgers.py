"""Ledgers and token buckets behave the same on every store of ALL_STORES."""

from __future__ import annotations

import pytest

from proctor.stores import LedgerSupport, Store, TokenBucketSupport
from tests.utils import all_stores, store

__all__ = ["store"]


def ledger(store: Store) -> LedgerSupport:
    assert isinstance(store, LedgerSupport)
    return store


@all_stores
def test_reserve_settle_release(store: Store) -> None:
    s = ledger(store)
    first, spent, reserved = s.reserve("k", 5, 10, 0, 0.0, 60.0)
    assert first is not None
    assert (spent, reserved) == (0, 0)
    assert s.reserve("k", 6, 10, 0, 0.0, 60.0) == (None, 0, 5)
    second, _, _ = s.reserve("k", 5, 10, 0, 0.0, 60.0)
    assert second is not None
    assert second != first
    assert s.settle("k", first, 3, 0) is True
    assert s.settle("k", first, 3, 0) is False  # twice changes nothing
    s.release("k", second)
    s.release("k", second)
    assert s.get("k", 0, 0.0) == (3, 0)
    third, _, _ = s.reserve("k", 2, None, 0, 0.0, 60.0)
    assert third is not None
    assert s.get("k", 1, 0.0) == (0, 2)  # a later window starts spend over; reservations carry over
    s.settle("k", third, 2, 1)
    assert s.get("k", 1, 0.0) == (2, 0)
    s.spend("k", 4, 1)
    assert s.get("k", 1, 0.0) == (6, 0)
    s.clear("k")
    assert s.get("k", 1, 0.0) == (0, 0)
    s.spend("k2", 1, 0)
    assert list(s.keys("k")) == ["k", "k2"]
    assert list(s.keys("x")) == []


@all_stores
def test_an_expired_lease_comes_back_and_a_late_settle_counts_once(store: Store) -> None:
    s = ledger(store)
    dead, _, _ = s.reserve("k", 8, 10, 0, 0.0, 30.0)
    assert dead is not None
    assert s.reserve("k", 8, 10, 0, 29.9, 30.0)[0] is None
    assert s.get("k", 0, 30.0) == (0, 0)  # past its expiry it no longer counts
    alive, spent, reserved = s.reserve("k", 8, 10, 0, 30.0, 30.0)
    assert alive is not None
    assert (spent, reserved) == (0, 0)
    assert s.settle("k", dead, 1, 0) is True  # its holder was slow, not dead: the spend is recorded
    assert s.settle("k", dead, 1, 0) is False
    s.release("k", alive)
    assert s.get("k", 0, 30.0) == (1, 0)


@all_stores
def test_token_bucket(store: Store) -> None:
    assert isinstance(store, TokenBucketSupport)
    assert store.peek("b", 2.0, 1.0, 0.0) == 2.0
    assert store.take("b", 1.0, 2.0, 1.0, 0.0) == (True, 1.0)
    assert store.take("b", 1.0, 2.0, 1.0, 0.0) == (True, 0.0)
    assert store.take("b", 1.0, 2.0, 1.0, 0.5) == (False, 0.5)
    assert store.take("b", 1.0, 2.0, 1.0, 1.0) == (True, pytest.approx(0.0))
    store.refund("b", 1.0, 2.0)
    assert store.peek("b", 2.0, 1.0, 1.0) == pytest.approx(1.0)
    assert store.peek("b", 2.0, 1.0, 100.0) == 2.0
