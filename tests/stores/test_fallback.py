"""proctor.stores.fallback alone: the counter, the probe of a store that is down, the local share."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import StoreError
from proctor.stores.fallback import LocalShare, StoreHealth, count_fallback, fallbacks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_counter_is_keyed_by_kind_and_mode_and_refuses_other_labels() -> None:
    before = fallbacks()
    count_fallback("rate", "local_share")
    count_fallback("rate", "local_share")
    count_fallback("budget", "closed")
    after = fallbacks()
    assert after[("rate", "local_share")] - before.get(("rate", "local_share"), 0) == 2
    assert after[("budget", "closed")] - before.get(("budget", "closed"), 0) == 1
    for kind, mode in (("budget", "maybe"), ("queue", "closed")):
        with pytest.raises(ValueError, match="a fallback is one of"):
            count_fallback(kind, mode)


def test_a_down_store_is_tried_by_one_caller_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = StoreHealth("the store", probe_interval=0.5, clock=clock)
    assert health.should_try()
    assert not health.down
    with caplog.at_level(logging.INFO, logger="proctor.stores.fallback"):
        for _ in range(5):
            health.failed(StoreError("timed out"))
        assert health.down
        assert health.outages == 1
        assert [callers for callers in range(3) if health.should_try()] == []  # within the interval
        clock.now += 0.5
        assert [callers for callers in range(3) if health.should_try()] == [0]  # the probe: one caller
        health.failed(StoreError("timed out again"))
        clock.now += 0.5
        assert health.should_try()
        health.answered()
        assert not health.down
        assert health.should_try()
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1  # one per outage, not per call
    assert "the store is unreachable (timed out)" in warnings[0].getMessage()
    assert any("answers again after 1.0s" in record.getMessage() for record in caplog.records)
    health.failed(StoreError("down again"))
    assert health.outages == 2


def test_one_failure_alone_costs_one_call_the_next_tries_the_store_at_once() -> None:
    clock = Clock()
    health = StoreHealth("the store", probe_interval=0.5, clock=clock)
    health.failed(StoreError("one slow answer"))
    assert health.down
    assert [callers for callers in range(3) if health.should_try()] == [0]  # the next call, alone
    health.answered()
    assert not health.down
    health.failed(StoreError("down"))
    assert health.should_try()
    health.failed(StoreError("still down"))  # twice in a row: skipped until the probe
    assert not health.should_try()
    clock.now += 0.5
    assert health.should_try()


def test_settles_wait_for_the_store_and_run_once_in_order_when_it_answers() -> None:
    clock = Clock()
    health = StoreHealth("the store", clock=clock)
    done: list[int] = []
    failing = [True]

    def settle(n: int) -> None:
        if n == 2 and failing[0]:
            raise StoreError("still down")
        done.append(n)

    health.failed(StoreError("down"))
    for n in range(4):
        health.defer(lambda n=n: settle(n))
    assert health.pending == 4
    assert done == []
    health.answered()  # 0 and 1 run, 2 fails: the store is down again, 2 and 3 wait
    assert done == [0, 1]
    assert health.down
    assert health.pending == 2
    failing[0] = False
    health.answered()
    assert done == [0, 1, 2, 3]
    assert health.pending == 0
    health.answered()
    assert done == [0, 1, 2, 3]


@settings(max_examples=200, deadline=None)
@given(
    processes=st.integers(1, 6),
    limit=st.integers(6, 60),
    steps=st.lists(
        st.tuples(st.integers(0, 5), st.floats(0.0, 20.0), st.sampled_from(["take", "take", "refund"])),
        max_size=80,
    ),
)
def test_local_shares_together_stay_within_the_limits_rate_from_an_empty_start(
    processes: int, limit: int, steps: list[tuple[int, float, str]]
) -> None:
    """N processes, each on its own share, admit at most limit/period * t in the first t seconds."""
    period = 60.0
    shares = [LocalShare(processes) for _ in range(processes)]
    now, net = 0.0, 0
    taken = [0] * processes
    for who, wait, op in steps:
        index = who % processes
        now += wait
        if op == "take":
            ok, level = shares[index].take("k", limit, period, now, outage=1)
            assert 0.0 <= level <= limit / processes
            if ok:
                taken[index] += 1
                net += 1
        elif taken[index]:
            shares[index].refund("k", limit)
            taken[index] -= 1
            net -= 1
        assert net <= limit / period * now + 1e-6
    # A new outage starts every share empty again.
    assert all(not share.take("k", limit, period, now, outage=2)[0] for share in shares)
