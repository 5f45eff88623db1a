"""AsyncLOCOScheduler's API and semantics, one behaviour per test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from proctor import (
    Agent,
    AsyncLOCOScheduler,
    BackpressureError,
    BudgetPolicy,
    ConfigurationError,
    Decision,
    Outcome,
    Policy,
    PolicyEnforcer,
    PolicyViolationError,
    SharedResource,
    ShutdownError,
    Status,
    Task,
)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())  # type: ignore[arg-type]


def make(capacity: int = 1, **kwargs: object) -> AsyncLOCOScheduler:
    return AsyncLOCOScheduler([], SharedResource("api", capacity=capacity), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, r"alpha must be a number in \[0, 1\]"),
        ({"alpha": -0.1}, "alpha must be"),
        ({"alpha": 0.5, "optimize_for": "latency"}, "pass alpha or optimize_for, not both"),
        ({"optimize_for": "speed"}, "optimize_for must be one of 'latency', 'balanced', 'throughput'"),
        ({"max_waiters": -1}, "max_waiters must be an int >= 0"),
        ({"budget": "lots"}, "budget must be a BudgetPolicy"),
        ({"enforcer": [BudgetPolicy()]}, "enforcer must be a PolicyEnforcer"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(**kwargs)


def test_construction_validates_agents_and_resource() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        AsyncLOCOScheduler([Agent("a"), Agent("a")], SharedResource("api", 1))
    with pytest.raises(ConfigurationError, match="expected an Agent"):
        AsyncLOCOScheduler(["a"], SharedResource("api", 1))  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="resource must be a SharedResource"):
        AsyncLOCOScheduler([], "api")  # type: ignore[arg-type]


def test_optimize_for_picks_alpha() -> None:
    assert make().alpha == 0.25
    assert make(optimize_for="latency").alpha == 0.0
    assert make(optimize_for="throughput").alpha == 0.5
    assert make(alpha=1).alpha == 1.0


def test_unknown_agents_register_on_first_use_and_get_a_grant() -> None:
    scheduler = make()

    async def main() -> None:
        async with scheduler.acquire("newcomer") as grant:
            assert grant.agent_id == "newcomer"
            assert grant.task.weight == 1.0
            assert grant.waited == 0.0
            assert not grant.downgraded
            assert scheduler.resource.holder_count == 1

    run(main)
    assert scheduler.get_agent("newcomer").stats.granted == 1
    assert scheduler.resource.holder_count == 0
    with pytest.raises(KeyError, match="unknown agent 'ghost'"):
        scheduler.get_agent("ghost")


async def _hold(scheduler: AsyncLOCOScheduler, agent: str, gate: asyncio.Event) -> None:
    async with scheduler.acquire(agent):
        await gate.wait()


def test_grant_order_follows_queue_depth_with_alpha_one() -> None:
    # alpha = 1: only Qi counts. "heavy" waits with weight 3 + 3, "light" with 1.
    scheduler = make(alpha=1.0)
    order: list[str] = []

    async def want(agent: str, weight: float) -> None:
        async with scheduler.acquire(agent, Task(weight=weight)):
            order.append(agent)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(want("light", 1.0))]
        await asyncio.sleep(0.001)
        tasks += [asyncio.create_task(want("heavy", 3.0)), asyncio.create_task(want("heavy", 3.0))]
        await asyncio.sleep(0)
        assert scheduler.scores() == {"light": pytest.approx(1 / 6), "heavy": pytest.approx(1.0)}
        gate.set()
        await asyncio.gather(holder, *tasks)

    run(main)
    # heavy (Q=6) first; then heavy (Q=3) still beats light (Q=1).
    assert order == ["heavy", "heavy", "light"]


def test_grant_order_follows_waiting_time_with_alpha_zero() -> None:
    scheduler = make(optimize_for="latency")
    order: list[str] = []

    async def want(agent: str, weight: float) -> None:
        async with scheduler.acquire(agent, Task(weight=weight)):
            order.append(agent)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(want("early", 1.0))]
        await asyncio.sleep(0.002)
        tasks += [asyncio.create_task(want("late", 5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(holder, *tasks)

    run(main)
    assert order == ["early", "late", "late", "late"]


def test_timeout_raises_and_leaves_no_waiter() -> None:
    scheduler = make()

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            async with scheduler.acquire("impatient", timeout=0.01):
                pytest.fail("no slot was free")
        assert scheduler.resource.waiter_count == 0
        gate.set()
        await holder

    run(main)
    assert scheduler.get_agent("impatient").stats.timed_out == 1


def test_backpressure_beyond_max_waiters() -> None:
    scheduler = make(max_waiters=1)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(_hold(scheduler, "w", gate))
        await asyncio.sleep(0)
        with pytest.raises(BackpressureError, match=r"max_waiters=1"):
            async with scheduler.acquire("third"):
                pass
        gate.set()
        await asyncio.gather(holder, waiter)

    run(main)


def test_shutdown_turns_waiters_away_and_refuses_new_work() -> None:
    scheduler = make()

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(_hold(scheduler, "w", gate))
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.01, gate.set)
        report = await scheduler.shutdown(timeout=5.0)
        assert report == {"cancelled_waiters": 1, "active_holders": 0}
        with pytest.raises(ShutdownError):
            await waiter
        await holder
        with pytest.raises(ShutdownError):
            async with scheduler.acquire("late"):
                pass

    run(main)


def test_shutdown_reports_holders_that_outlast_the_timeout() -> None:
    scheduler = make()

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(scheduler, "holder", gate))
        await asyncio.sleep(0)
        assert await scheduler.shutdown(timeout=0.01) == {"cancelled_waiters": 0, "active_holders": 1}
        gate.set()
        await holder
        assert scheduler.resource.holder_count == 0

    run(main)


class OutcomeLog(Policy):
    name = "outcomes"

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def check(self, agent_id: str, task: Task) -> bool:
        return True

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_settle_sees_success_error_and_cancellation_after_release() -> None:
    log = OutcomeLog()
    scheduler = make(enforcer=PolicyEnforcer([log]))

    async def main() -> None:
        async with scheduler.acquire("a") as grant:
            grant.cost = 0.5
        with pytest.raises(ValueError, match="boom"):
            async with scheduler.acquire("a"):
                raise ValueError("boom")

        started = asyncio.Event()

        async def body() -> None:
            async with scheduler.acquire("a"):
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(body())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)
    assert [o.status for o in log.outcomes] == [Status.SUCCESS, Status.ERROR, Status.CANCELLED]
    assert log.outcomes[0].cost == 0.5
    assert isinstance(log.outcomes[1].error, ValueError)
    assert scheduler.resource.holder_count == 0


def test_grant_cost_settles_the_budget() -> None:
    budget = BudgetPolicy(default_limit=10.0)
    scheduler = make(budget=budget)

    async def main() -> None:
        async with scheduler.acquire("a", Task(weight=5.0)) as grant:
            assert budget.reserved("a") == 5.0
            grant.cost = 1.25
        async with scheduler.acquire("a", Task(weight=5.0)):
            pass

    run(main)
    assert (budget.spent("a"), budget.reserved("a")) == (6.25, 0.0)


def test_downgrade_mode_sets_grant_downgraded() -> None:
    budget = BudgetPolicy(default_limit=1.0, on_exceeded="downgrade")
    scheduler = make(budget=budget)

    async def main() -> None:
        async with scheduler.acquire("a") as grant:
            assert not grant.downgraded
        async with scheduler.acquire("a") as grant:
            assert grant.downgraded
            assert grant.decisions[0].downgrade

    run(main)


def test_rejected_tasks_count_and_release() -> None:
    scheduler = make(budget=BudgetPolicy(default_limit=0.0))

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(PolicyViolationError):
                async with scheduler.acquire("a"):
                    pass

    run(main)
    stats = scheduler.get_agent("a").stats
    assert (stats.granted, stats.rejected) == (0, 3)
    assert scheduler.resource.holder_count == 0


def test_acquire_rejects_a_non_task() -> None:
    scheduler = make()

    async def main() -> None:
        with pytest.raises(TypeError, match="task must be a proctor Task"):
            async with scheduler.acquire("a", {"weight": 2}):  # type: ignore[arg-type]
                pass

    run(main)
    assert scheduler.resource.holder_count == 0


def test_register_and_unregister() -> None:
    scheduler = make()
    scheduler.register_agent(Agent("x", name="X"))
    assert scheduler.agents["x"].name == "X"
    assert scheduler.unregister_agent("x").agent_id == "x"
    assert "x" not in scheduler.agents


def test_memory_does_not_grow_with_completed_tasks() -> None:
    import tracemalloc

    scheduler = make(capacity=3, budget=BudgetPolicy(default_limit=1e12, on_exceeded="alert"))

    async def cycles(count: int) -> None:
        async def worker(agent: str) -> None:
            for _ in range(count):
                async with scheduler.acquire(agent, Task(weight=1 + len(agent) % 3)):
                    await asyncio.sleep(0)

        await asyncio.gather(*(worker(f"agent-{i}") for i in range(20)))

    asyncio.run(cycles(50))  # warm up: agents, lanes and ledgers exist now
    tracemalloc.start()
    try:
        asyncio.run(cycles(50))
        before = tracemalloc.take_snapshot()
        asyncio.run(cycles(500))  # ten times the work
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename") if stat.size_diff > 0)
    assert grown < 64 * 1024, f"{grown} bytes kept after 10,000 more tasks"
    queue = scheduler._queue
    assert len(queue) == 0
    assert queue._groups == {}
    assert scheduler.get_agent("agent-0").stats.granted == 600


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "3", True])
def test_grant_cost_must_be_a_finite_number(bad: object) -> None:
    budget = BudgetPolicy(default_limit=10.0)
    scheduler = make(budget=budget)

    async def main() -> None:
        with pytest.raises(ValueError, match=r"grant\.cost must be a finite number >= 0"):
            async with scheduler.acquire("a", Task(weight=2.0)) as grant:
                grant.cost = bad  # type: ignore[assignment]

    run(main)
    # The body failed: the estimate is charged and nothing stays reserved.
    assert (budget.spent("a"), budget.reserved("a")) == (2.0, 0.0)


def test_one_acquire_object_cannot_be_entered_twice() -> None:
    scheduler = make(capacity=1)
    shared = scheduler.acquire("a")

    async def main() -> None:
        async with shared:
            with pytest.raises(RuntimeError, match="already in use"):
                async with shared:
                    pass
        async with shared:  # reusable once released
            pass

    run(main)
    assert scheduler.resource.holder_count == 0


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), "5"])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0 or None"):
        make().acquire("a", timeout=timeout)  # type: ignore[arg-type]


def test_an_infinite_timeout_waits_for_ever() -> None:
    scheduler = make()

    async def main() -> None:
        async with scheduler.acquire("a", timeout=float("inf")):
            pass

    run(main)


def test_agents_are_optional() -> None:
    resource = SharedResource("api", 1)
    scheduler = AsyncLOCOScheduler(resource=resource, alpha=0.5)
    assert (scheduler.agents, scheduler.resource, scheduler.alpha) == ({}, resource, 0.5)

    async def main() -> None:
        async with scheduler.acquire("a") as grant:
            assert grant.agent_id == "a"

    run(main)
    assert list(scheduler.agents) == ["a"]
    with pytest.raises(TypeError, match="resource"):
        AsyncLOCOScheduler()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="resource"):
        AsyncLOCOScheduler([Agent("a")])  # type: ignore[call-arg]
