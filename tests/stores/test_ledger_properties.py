"""Random interleavings of reserve, settle, release and lease expiry, on every store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.stores import LedgerSupport
from tests.utils import ALL_STORES

LIMIT = 100
LEASE = 10.0

steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 40)),
        st.tuples(st.just("settle"), st.integers(0, 40)),  # the actual cost, at most the estimate
        st.just(("release", 0)),
        st.tuples(st.just("wait"), st.integers(1, 15)),  # seconds: leases may expire
        st.tuples(st.just("again"), st.integers(0, 40)),  # settle a lease settled before
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(script=steps, kind=st.sampled_from(list(ALL_STORES)))
def test_spent_plus_reserved_never_exceeds_the_limit(script: list[tuple[str, int]], kind: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = ALL_STORES[kind](Path(folder))
        assert isinstance(store, LedgerSupport)
        now = 0.0
        held: list[tuple[int, int, float]] = []  # (lease, amount, expires) not yet settled
        done: list[int] = []  # leases settled or released
        expected_spent = 0
        late = False  # whether a lease was settled after it expired (its spend then counts anyway)
        for op, value in script:
            if op == "reserve":
                lease, _, _ = store.reserve("k", value, LIMIT, 0, now, LEASE)
                if lease is not None:
                    held.append((lease, value, now + LEASE))
            elif op == "settle" and held:
                lease, amount, expires = held.pop(0)
                late = late or expires <= now
                actual = min(value, amount)
                assert store.settle("k", lease, actual, 0) is True
                expected_spent += actual
                done.append(lease)
            elif op == "release" and held:
                lease, _, _ = held.pop()
                store.release("k", lease)
                done.append(lease)
            elif op == "again" and done:
                assert store.settle("k", done[value % len(done)], 5, 0) is False  # changes nothing
            elif op == "wait":
                now += value
            spent, reserved = store.get("k", 0, now)
            assert spent == expected_spent
            assert reserved == sum(amount for _, amount, expires in held if expires > now)
            if not late:  # only a settle after its lease expired may push spend past the limit
                assert spent + reserved <= LIMIT
        store.close()
