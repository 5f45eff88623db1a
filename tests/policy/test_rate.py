from __future__ import annotations

import pytest

from proctor import ConfigurationError, PolicyViolationError, RatePolicy, Task


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_bursts_to_the_limit_then_refills_over_the_period() -> None:
    clock = Clock()
    policy = RatePolicy(limits={"batch": 10.0}, period=60.0, clock=clock)
    for _ in range(10):
        policy.admit("batch", Task())
    assert policy.remaining("batch") == pytest.approx(0.0)
    detail = (
        r"Rate limit exceeded \(10.0/60.0s\): the rate limit of 10 per 60s is reached; next token in 6.00s"
    )
    with pytest.raises(PolicyViolationError, match=detail):
        policy.admit("batch", Task())
    clock.now += 6.0  # 10 per 60 s: one token every 6 s
    assert policy.remaining("batch") == pytest.approx(1.0)
    policy.admit("batch", Task())
    clock.now += 3600.0
    assert policy.remaining("batch") == pytest.approx(10.0)  # never above the burst


def test_rejected_attempts_do_not_consume() -> None:
    clock = Clock()
    policy = RatePolicy(limits={"a": 1.0}, period=10.0, clock=clock)
    policy.admit("a", Task())
    for _ in range(5):
        with pytest.raises(PolicyViolationError):
            policy.admit("a", Task())
    clock.now += 10.0
    policy.admit("a", Task())


def test_rollback_gives_the_token_back() -> None:
    policy = RatePolicy(limits={"a": 2.0}, clock=Clock())
    decision = policy.admit("a", Task())
    assert policy.remaining("a") == pytest.approx(1.0)
    policy.rollback("a", Task(), decision)
    assert policy.remaining("a") == pytest.approx(2.0)


def test_default_limit_applies_to_unlisted_agents() -> None:
    policy = RatePolicy(limits={"vip": 100.0}, default_limit=1.0, clock=Clock())
    assert policy.remaining("anyone") == 1.0
    policy.admit("anyone", Task())
    with pytest.raises(PolicyViolationError):
        policy.admit("anyone", Task())
    assert policy.limit("vip") == 100.0
    assert RatePolicy().remaining("anyone") is None


@pytest.mark.parametrize(
    "kwargs",
    [{"limits": {"a": 0}}, {"limits": {"a": -1.0}}, {"period": 0}, {"default_limit": float("inf")}],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="must be a finite number > 0"):
        RatePolicy(**kwargs)  # type: ignore[arg-type]


def test_remaining_counts_the_whole_tokens_a_caller_may_take_now() -> None:
    clock = Clock()
    policy = RatePolicy(limits={"a": 2.0}, period=3600.0, clock=clock)
    assert policy.remaining("a") == 2.0
    policy.admit("a", Task())
    clock.now += 0.06  # refills 1/30,000 of a token: not one more request
    assert policy.remaining("a") == 1.0
    policy.admit("a", Task())
    clock.now += 1799.0
    assert policy.remaining("a") == 0.0  # 0.9994 of a token: the next request is refused
    with pytest.raises(PolicyViolationError):
        policy.admit("a", Task())
    clock.now += 1.0
    assert policy.remaining("a") == 1.0
    policy.admit("a", Task())


def test_the_rejection_reads_as_loco_agents() -> None:
    policy = RatePolicy(limits={"batch": 10.0}, period=60.0, clock=Clock())
    for _ in range(10):
        policy.admit("batch", Task())
    with pytest.raises(PolicyViolationError) as info:
        policy.admit("batch", Task())
    assert info.value.detail.startswith("Rate limit exceeded (10.0/60.0s)")
    assert "Rate limit exceeded" in str(info.value)
