"""LOCOScheduler (threads): same scoring and policies as the asyncio scheduler."""

from __future__ import annotations

import threading
import time

import pytest

from proctor import (
    BudgetPolicy,
    ConfigurationError,
    LOCOScheduler,
    PolicyViolationError,
    RatePolicy,
    SharedResource,
    ShutdownError,
    Task,
)


def make(capacity: int = 1, **kwargs: object) -> LOCOScheduler:
    return LOCOScheduler([], SharedResource("api", capacity=capacity), **kwargs)  # type: ignore[arg-type]


def start(target: object, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="alpha"):
        make(alpha=2)


def test_serves_by_queue_depth_with_alpha_one() -> None:
    scheduler = make(alpha=1.0)
    order: list[str] = []
    gate = threading.Event()

    def hold() -> None:
        with scheduler.acquire("holder"):
            gate.wait()

    def want(agent: str, weight: float) -> None:
        with scheduler.acquire(agent, Task(weight=weight)):
            order.append(agent)

    threads = [start(hold)]
    wait_until(lambda: scheduler.resource.holder_count == 1)
    threads.append(start(want, "light", 1.0))
    wait_until(lambda: scheduler.resource.waiter_count == 1)
    threads.append(start(want, "heavy", 4.0))
    wait_until(lambda: scheduler.resource.waiter_count == 2)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert order == ["heavy", "light"]


def test_policies_reject_and_hand_the_slot_on() -> None:
    rate = RatePolicy(limits={"a": 2.0})
    scheduler = make(enforcer=None, budget=BudgetPolicy(default_limit=100.0))
    scheduler.enforcer.add_policy(rate)  # type: ignore[union-attr]
    with scheduler.acquire("a"), pytest.raises(RuntimeError):
        raise RuntimeError("body failed")
    with scheduler.acquire("a"):
        pass
    with pytest.raises(PolicyViolationError, match="Rate limit exceeded"), scheduler.acquire("a"):
        pytest.fail("rejected tasks do not run")
    assert scheduler.resource.holder_count == 0
    assert scheduler.budget.spent("a") == 2.0  # type: ignore[union-attr]


def test_timeout_and_shutdown() -> None:
    scheduler = make()
    gate = threading.Event()
    outcomes: list[str] = []

    def hold() -> None:
        with scheduler.acquire("holder"):
            gate.wait()

    def wait_forever() -> None:
        try:
            with scheduler.acquire("w"):
                outcomes.append("ran")
        except ShutdownError:
            outcomes.append("shutdown")

    holder = start(hold)
    wait_until(lambda: scheduler.resource.holder_count == 1)
    with pytest.raises(TimeoutError), scheduler.acquire("impatient", timeout=0.01):
        pass
    assert scheduler.get_agent("impatient").stats.timed_out == 1
    waiter = start(wait_forever)
    wait_until(lambda: scheduler.resource.waiter_count == 1)
    threading.Timer(0.05, gate.set).start()
    assert scheduler.shutdown(timeout=5.0) == {"cancelled_waiters": 1, "active_holders": 0}
    holder.join(5)
    waiter.join(5)
    assert outcomes == ["shutdown"]
    with pytest.raises(ShutdownError), scheduler.acquire("late"):
        pass


def test_many_threads_never_exceed_capacity() -> None:
    scheduler = make(capacity=3)
    lock = threading.Lock()
    inside = 0
    peak = 0

    def worker(agent: str) -> None:
        nonlocal inside, peak
        for _ in range(200):
            with scheduler.acquire(agent):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0)
                with lock:
                    inside -= 1

    threads = [start(worker, f"agent-{i % 5}") for i in range(16)]
    for thread in threads:
        thread.join(30)
    assert 1 <= peak <= 3
    assert scheduler.resource.holder_count == 0
    assert sum(agent.stats.granted for agent in scheduler.agents.values()) == 16 * 200


def test_agents_are_optional() -> None:
    scheduler = LOCOScheduler(resource=SharedResource("api", 1))
    with scheduler.acquire("a") as grant:
        assert grant.agent_id == "a"
    assert list(scheduler.agents) == ["a"]
    with pytest.raises(TypeError, match="resource"):
        LOCOScheduler()
