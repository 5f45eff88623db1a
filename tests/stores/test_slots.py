"""Slot leases (SlotLeaseSupport) behave the same on every store of ALL_STORES that serves them."""

from __future__ import annotations

import math

import pytest

from proctor import ConfigurationError
from proctor.stores import MemoryStore, SlotLeaseSupport, Store
from tests.utils import store, stores_with

__all__ = ["store"]

slot_stores = stores_with(SlotLeaseSupport)


def slots(store: Store) -> SlotLeaseSupport:
    assert isinstance(store, SlotLeaseSupport)
    return store


@slot_stores
def test_capacity_holds_per_name(store: Store) -> None:
    s = slots(store)
    first = s.acquire_slot("api", 2, "a", 0.0, math.inf)
    second = s.acquire_slot("api", 2, "b", 0.0, math.inf)
    assert first is not None
    assert second is not None
    assert s.acquire_slot("api", 2, "c", 0.0, math.inf) is None
    assert s.acquire_slot("other", 1, "c", 0.0, math.inf) is not None  # another name, its own slots
    assert s.slots_held("api", 0.0) == 2
    assert s.release_slot("api", first) is True
    assert s.acquire_slot("api", 2, "c", 0.0, math.inf) is not None


@slot_stores
def test_fencing_tokens_increase(store: Store) -> None:
    s = slots(store)
    tokens = []
    token = s.acquire_slot("api", 1, "a", 0.0, 10.0)
    for holder in "bcde":
        assert token is not None
        tokens.append(token)
        token = s.hand_over_slot("api", token, holder, 1.0, 10.0)
    assert token is not None
    assert s.release_slot("api", token)
    again = s.acquire_slot("api", 1, "f", 2.0, 10.0)
    assert again is not None
    tokens += [token, again]
    assert tokens == sorted(set(tokens))


@slot_stores
def test_release_twice_changes_nothing(store: Store) -> None:
    s = slots(store)
    token = s.acquire_slot("api", 1, "a", 0.0, math.inf)
    assert token is not None
    assert s.release_slot("api", token) is True
    other = s.acquire_slot("api", 1, "b", 0.0, math.inf)
    assert other is not None
    assert s.release_slot("api", token) is False  # a's second release does not free b's slot
    assert s.slots_held("api", 0.0) == 1
    assert s.acquire_slot("api", 1, "c", 0.0, math.inf) is None
    assert s.hand_over_slot("api", token, "c", 0.0, math.inf) is None  # nor hand it on
    assert s.renew_slot("api", token, 0.0, 10.0) is False
    assert s.release_slot("nowhere", token) is False


@slot_stores
def test_an_expired_lease_gives_its_slot_back(store: Store) -> None:
    s = slots(store)
    token = s.acquire_slot("api", 1, "a", 0.0, 5.0)
    assert token is not None
    assert s.acquire_slot("api", 1, "b", 4.9, 5.0) is None
    assert s.renew_slot("api", token, 4.0, 5.0) is True  # now held until 9.0
    assert s.acquire_slot("api", 1, "b", 8.9, 5.0) is None
    assert s.slots_held("api", 8.9) == 1
    assert s.slots_held("api", 9.0) == 0  # a died without releasing: the slot comes back
    taken = s.acquire_slot("api", 1, "b", 9.0, 5.0)
    assert taken is not None
    # The late holder's lease is over: it can neither renew, release nor pass on b's slot.
    assert s.renew_slot("api", token, 9.5, 5.0) is False
    assert s.release_slot("api", token) is False
    assert s.hand_over_slot("api", token, "c", 9.5, 5.0) is None
    assert s.slots_held("api", 9.5) == 1


@slot_stores
def test_a_hand_over_keeps_the_slot_from_everyone_else(store: Store) -> None:
    s = slots(store)
    token = s.acquire_slot("api", 1, "a", 0.0, 5.0)
    assert token is not None
    passed = s.hand_over_slot("api", token, "b", 4.0, math.inf)  # an infinite lease from here on
    assert passed is not None
    assert passed > token
    assert s.acquire_slot("api", 1, "c", 100.0, 5.0) is None  # a's expiry no longer applies
    assert s.slots_held("api", 100.0) == 1
    assert s.release_slot("api", passed) is True
    assert s.slots_held("api", 100.0) == 0


def test_memory_store_keeps_one_capacity_per_name() -> None:
    s = MemoryStore()
    assert s.acquire_slot("api", 2, "a", 0.0, math.inf) is not None
    with pytest.raises(ConfigurationError, match="has 2 slots in this store; another user asks for 3"):
        s.acquire_slot("api", 3, "b", 0.0, math.inf)
