"""Task queues: ``submit_task``, ``acquire()`` without a task, ``serve_oldest_task``; the split API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from unittest import mock

import pytest

from proctor import (
    Agent,
    AsyncLOCOScheduler,
    BudgetExceededError,
    BudgetPolicy,
    ConfigurationError,
    Decision,
    LOCOScheduler,
    Outcome,
    Policy,
    PolicyEnforcer,
    SharedResource,
    ShutdownError,
    Status,
    Task,
)
from proctor.agent import COMPLETED_KEPT
from proctor.scheduling import _asyncio as async_scheduler


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 10))  # type: ignore[arg-type]


def make(capacity: int = 1, **kwargs: object) -> AsyncLOCOScheduler:
    return AsyncLOCOScheduler([], SharedResource("api", capacity=capacity), **kwargs)  # type: ignore[arg-type]


async def hold(scheduler: AsyncLOCOScheduler, gate: asyncio.Event) -> None:
    async with scheduler.acquire("holder"):
        await gate.wait()


class Clock:
    """The scheduler's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Outcomes(Policy):
    name = "outcomes"

    def __init__(self) -> None:
        self.seen: list[tuple[str, Status, float | None]] = []

    def check(self, agent_id: str, task: Task) -> bool:
        return True

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        self.seen.append((task.task_id, outcome.status, outcome.cost))


def test_submit_task_queues_the_task_and_counts_it_in_qi() -> None:
    scheduler = make()
    tasks = [Task(weight=1.0), Task(weight=2.0, arrival_tick=99, age=7), Task(weight=3.5)]

    async def main() -> None:
        before = time.monotonic()
        for task in tasks:
            await scheduler.submit_task("a", task)  # registers "a"
        agent = scheduler.get_agent("a")
        assert agent.tasks == tasks
        assert agent.queue_depth_weighted == 6.5
        assert scheduler._queue.depth("a") == 6.5
        assert not scheduler._queue  # nobody is waiting for a slot yet
        assert all(before <= task.arrival_tick <= time.monotonic() for task in tasks)
        assert [task.age for task in tasks] == [0.0, 0.0, 0.0]
        assert 0.0 <= agent.dmax <= time.monotonic() - tasks[0].arrival_tick
        with pytest.raises(TypeError, match="task must be a proctor Task"):
            await scheduler.submit_task("a", "work")  # type: ignore[arg-type]

    run(main)


def test_acquire_without_a_task_serves_the_queue_oldest_first() -> None:
    scheduler = make()
    tasks = [Task(weight=2.0), Task(weight=1.0)]

    async def main() -> None:
        for task in tasks:
            await scheduler.submit_task("a", task)
        agent = scheduler.get_agent("a")
        for expected, left in zip(tasks, (1.0, 0.0), strict=True):
            async with scheduler.acquire("a") as grant:
                assert grant.task is expected
                assert grant.task.age >= 0.0
                assert agent.tasks[0] is expected  # pending while the grant runs it
                assert agent.queue_depth_weighted == left  # but no longer waiting
            assert agent.completed_tasks[-1] is expected
        assert agent.tasks == []
        async with scheduler.acquire("a") as grant:  # nothing queued: a default task
            assert grant.task.weight == 1.0
            assert grant.task not in tasks
        assert agent.completed_tasks == tasks

    run(main)


def test_serve_oldest_task_takes_the_grants_task_then_the_oldest_waiting() -> None:
    scheduler = make()
    first, second, third = Task(), Task(weight=2.0), Task(weight=3.0)

    async def main() -> None:
        for task in (first, second, third):
            await scheduler.submit_task("a", task)
        agent = scheduler.get_agent("a")
        async with scheduler.acquire("a") as grant:
            assert agent.serve_oldest_task() is grant.task is first
            assert agent.serve_oldest_task() is second  # waiting: it leaves the queue, and Qi
            assert scheduler._queue.depth("a") == agent.queue_depth_weighted == 3.0
            assert second.age >= 0.0
        assert agent.completed_tasks == [first, second]  # the grant found its task served already
        assert agent.serve_oldest_task() is third
        assert agent.serve_oldest_task() is None
        assert scheduler._queue.depth("a") == 0.0
        assert agent.dmax == 0.0

    run(main)


def test_queued_tasks_weigh_in_the_load_function() -> None:
    """With alpha 1, the agent with the deeper queue goes first, though its caller came last."""
    scheduler = make(alpha=1.0)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        for _ in range(4):
            await scheduler.submit_task("deep", Task())
        order: list[str] = []

        async def call(agent_id: str, task: Task | None) -> None:
            async with scheduler.acquire(agent_id, task):
                order.append(agent_id)

        shallow = asyncio.create_task(call("shallow", Task(weight=3.0)))
        await asyncio.sleep(0)
        deep = asyncio.create_task(call("deep", None))
        await asyncio.sleep(0)
        # The caller serving the queue weighs nothing itself: Qi is the queue's 4.
        assert scheduler._queue.depth("deep") == 4.0
        assert scheduler.scores() == {"shallow": 0.75, "deep": 1.0}
        gate.set()
        await asyncio.gather(holder, shallow, deep)
        assert order == ["deep", "shallow"]

    run(main)


def test_a_queued_task_waits_from_its_submission() -> None:
    """With alpha 0, Dmax of an agent starts at its oldest queued task, not at its caller."""

    async def main() -> None:
        scheduler = make(alpha=0.0)
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        await scheduler.submit_task("old", Task())  # t = 0
        order: list[str] = []

        async def call(agent_id: str, task: Task | None) -> None:
            async with scheduler.acquire(agent_id, task):
                order.append(agent_id)

        clock.now = 1.0
        new = asyncio.create_task(call("new", Task()))
        await asyncio.sleep(0)
        clock.now = 2.0
        old = asyncio.create_task(call("old", None))
        await asyncio.sleep(0)
        assert scheduler._queue.oldest("old") == 0.0
        clock.now = 3.0
        gate.set()
        await asyncio.gather(holder, new, old)
        assert order == ["old", "new"]
        assert scheduler.get_agent("old").completed_tasks[0].age == 3.0  # from its submission to its grant

    clock = Clock()
    with mock.patch.object(async_scheduler, "_monotonic", clock):
        asyncio.run(main())


def test_callers_beyond_the_queued_tasks_serve_default_tasks() -> None:
    scheduler = make()
    queued = Task(weight=5.0)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        await scheduler.submit_task("a", queued)
        served: list[Task] = []

        async def call() -> None:
            async with scheduler.acquire("a") as grant:
                served.append(grant.task)

        callers = [asyncio.create_task(call()) for _ in range(2)]
        await asyncio.sleep(0)
        agent = scheduler.get_agent("a")
        assert agent._claims == 1  # one caller has the queued task promised
        assert scheduler._queue.depth("a") == 6.0  # the queued 5, and the second caller's default 1
        gate.set()
        await asyncio.gather(holder, *callers)
        assert served[0] is queued
        assert served[1].weight == 1.0
        assert agent._claims == 0

    run(main)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_caller_that_gives_up_leaves_its_task_queued(how: str) -> None:
    scheduler = make()
    task = Task(weight=2.0)

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        await scheduler.submit_task("a", task)

        async def call(timeout: float | None) -> None:
            async with scheduler.acquire("a", timeout=timeout):
                pytest.fail("gave up")

        caller = asyncio.create_task(call(0.01 if how == "timeout" else None))
        await asyncio.sleep(0)
        if how == "cancel":
            caller.cancel()
        with pytest.raises(TimeoutError if how == "timeout" else asyncio.CancelledError):
            await caller
        agent = scheduler.get_agent("a")
        assert (agent.tasks, agent._claims, scheduler._queue.depth("a")) == ([task], 0, 2.0)
        gate.set()
        await holder
        async with scheduler.acquire("a") as grant:
            assert grant.task is task

    run(main)


def test_a_task_taken_while_its_caller_waits_leaves_a_default_task() -> None:
    scheduler = make()

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        task = Task(weight=2.0)
        await scheduler.submit_task("a", task)
        served: list[Task] = []

        async def call() -> None:
            async with scheduler.acquire("a") as grant:
                served.append(grant.task)

        caller = asyncio.create_task(call())
        await asyncio.sleep(0)
        assert scheduler.get_agent("a").serve_oldest_task() is task
        gate.set()
        await asyncio.gather(holder, caller)
        assert served[0] is not task
        assert served[0].weight == 1.0

    run(main)


def test_a_rejected_queued_task_is_dropped_and_the_slot_passed_on() -> None:
    budget = BudgetPolicy(default_limit=3.0)
    scheduler = make(budget=budget)
    big, small = Task(weight=5.0), Task(weight=1.0)

    async def main() -> None:
        await scheduler.submit_task("a", big)
        await scheduler.submit_task("a", small)
        with pytest.raises(BudgetExceededError):
            async with scheduler.acquire("a"):
                pytest.fail("over budget")
        agent = scheduler.get_agent("a")
        assert (agent.tasks, agent.completed_tasks, scheduler.resource.holder_count) == ([small], [], 0)
        assert scheduler._queue.depth("a") == 1.0

    run(main)


def test_acquire_start_and_release_handle() -> None:
    outcomes = Outcomes()
    scheduler = make(enforcer=PolicyEnforcer([outcomes]))
    other = make()

    async def main() -> None:
        task = Task(weight=2.0)
        await scheduler.submit_task("a", task)
        first = await scheduler.acquire_start("a")
        assert first.task is task
        assert not first.released
        waiter = asyncio.create_task(scheduler.acquire_start("b", Task(), timeout=5.0))
        await asyncio.sleep(0)
        assert scheduler.resource.waiter_count == 1
        first.cost = 0.5
        await scheduler.release_handle(first)
        assert first.released
        await scheduler.release_handle(first)  # a second release does nothing
        second = await waiter
        assert scheduler.resource.holder_count == 1
        with pytest.raises(TypeError, match="expected the Grant that acquire_start"):
            await scheduler.release_handle("handle")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="another scheduler"):
            await other.release_handle(second)
        await scheduler.release_handle(second)
        assert scheduler.resource.holder_count == 0
        assert scheduler.get_agent("a").completed_tasks == [task]
        assert outcomes.seen == [
            (task.task_id, Status.SUCCESS, 0.5),
            (second.task.task_id, Status.SUCCESS, None),
        ]
        assert scheduler.get_agent("a").stats.granted == 1

    run(main)


def test_leaving_the_block_after_release_handle_releases_nothing_more() -> None:
    scheduler = make(capacity=2)

    async def main() -> None:
        async with scheduler.acquire("a") as grant:
            await scheduler.release_handle(grant)
            assert scheduler.resource.holder_count == 0
            held = await scheduler.acquire_start("b")
        assert scheduler.resource.holder_count == 1
        await scheduler.release_handle(held)
        assert scheduler.get_agent("a").stats.granted == 1

    run(main)


def test_shutdown_refuses_new_tasks_and_keeps_the_queued_ones() -> None:
    scheduler = make()

    async def main() -> None:
        task = Task()
        await scheduler.submit_task("a", task)
        assert await scheduler.shutdown(timeout=1.0) == {"cancelled_waiters": 0, "active_holders": 0}
        with pytest.raises(ShutdownError):
            await scheduler.submit_task("a", Task())
        with pytest.raises(ShutdownError):
            await scheduler.acquire_start("a")
        assert scheduler.get_agent("a").tasks == [task]

    run(main)


def test_an_agent_shared_by_schedulers_has_its_queue_in_the_last_one() -> None:
    agents = [Agent("a")]
    first = AsyncLOCOScheduler(agents, SharedResource("api", 1))
    second = AsyncLOCOScheduler(agents, SharedResource("api", 1))
    task = Task(weight=2.0)

    async def main() -> None:
        with pytest.raises(ValueError, match="registered with another scheduler after this one"):
            await first.submit_task("a", task)
        await second.submit_task("a", task)
        async with first.acquire("a") as grant:  # the first scheduler does not serve that queue
            assert grant.task is not task
        assert agents[0].tasks == [task]
        with pytest.raises(ConfigurationError, match="has tasks queued in another scheduler"):
            AsyncLOCOScheduler(agents, SharedResource("api", 1))
        # Unregistered, the agent keeps its tasks; a scheduler that registers it takes them over.
        agent = second.unregister_agent("a")
        assert agent.tasks == [task]
        assert second._queue.depth("a") == 0.0
        third = AsyncLOCOScheduler([agent], SharedResource("api", 1))
        assert third._queue.depth("a") == 2.0
        async with third.acquire("a") as grant:
            assert grant.task is task

    run(main)


def test_an_agent_outside_any_scheduler_serves_its_own_queue() -> None:
    scheduler = make()
    task = Task()

    async def main() -> None:
        await scheduler.submit_task("a", task)

    run(main)
    agent = scheduler.unregister_agent("a")
    assert agent.serve_oldest_task() is task
    assert task.age >= 0.0
    assert agent.completed_tasks == [task]
    assert agent.serve_oldest_task() is None


def test_completed_tasks_keep_the_latest_thousand() -> None:
    scheduler = make()
    tasks = [Task() for _ in range(COMPLETED_KEPT + 5)]

    async def main() -> None:
        for task in tasks:
            await scheduler.submit_task("a", task)

    run(main)
    agent = scheduler.get_agent("a")
    while agent.serve_oldest_task() is not None:
        pass
    assert agent.completed_tasks == tasks[5:]
    assert scheduler._queue.depth("a") == 0.0


# The same queue on the threaded scheduler.


def test_threads_serve_queued_tasks_under_contention() -> None:
    scheduler = LOCOScheduler([], SharedResource("api", capacity=2), alpha=1.0)
    tasks = {agent_id: [Task(task_type=agent_id) for _ in range(50)] for agent_id in ("a", "b", "c")}
    for agent_id, queued in tasks.items():
        for task in queued:
            scheduler.submit_task(agent_id, task)
    served: dict[str, list[Task]] = {agent_id: [] for agent_id in tasks}
    lock = threading.Lock()

    def worker(agent_id: str) -> None:
        for _ in range(25):
            with scheduler.acquire(agent_id) as grant:
                task = scheduler.get_agent(agent_id).serve_oldest_task()
                assert task is not None
                with lock:
                    served[agent_id].append(task)
                assert grant.task.task_type == agent_id
                time.sleep(0)

    threads = [threading.Thread(target=worker, args=(agent_id,)) for agent_id in tasks for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    for agent_id, queued in tasks.items():
        agent = scheduler.get_agent(agent_id)
        assert sorted(map(id, served[agent_id])) == sorted(map(id, queued))
        assert (agent.tasks, agent._claims, scheduler._queue.depth(agent_id)) == ([], 0, 0.0)
        assert len(agent.completed_tasks) == 50
    assert (scheduler.resource.holder_count, scheduler.resource.waiter_count) == (0, 0)


def test_threads_split_api_and_rejection() -> None:
    budget = BudgetPolicy(default_limit=3.0)
    scheduler = LOCOScheduler([], SharedResource("api", capacity=1), budget=budget)
    big, small = Task(weight=5.0), Task(weight=2.0)
    scheduler.submit_task("a", big)
    scheduler.submit_task("a", small)
    with pytest.raises(BudgetExceededError), scheduler.acquire("a"):
        pytest.fail("over budget")
    assert scheduler.get_agent("a").tasks == [small]
    grant = scheduler.acquire_start("a")
    assert grant.task is small
    results: list[str] = []
    waiter = threading.Thread(target=lambda: results.append(scheduler.acquire_start("b").agent_id))
    waiter.start()
    deadline = time.monotonic() + 5
    while scheduler.resource.waiter_count == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    scheduler.release_handle(grant)
    scheduler.release_handle(grant)
    waiter.join(5)
    assert results == ["b"]
    assert budget.spent("a") == 2.0
    assert scheduler.get_agent("a").completed_tasks == [small]
    assert scheduler.shutdown(timeout=0.01) == {"cancelled_waiters": 0, "active_holders": 1}
    with pytest.raises(ShutdownError):
        scheduler.submit_task("a", Task())


# Agents made with their tasks, and queues replaced by assigning ``Agent.tasks`` (as in loco-agent).


def test_an_agent_made_with_tasks_brings_them_to_its_scheduler() -> None:
    first, second = Task(weight=2.0), Task(weight=1.5)
    done = Task()
    before = time.monotonic()
    agent = Agent("a", tasks=[first, second], completed_tasks=[done])
    assert agent.tasks == [first, second]
    assert agent.completed_tasks == [done]
    assert agent.queue_depth_weighted == 3.5
    assert all(before <= task.arrival_tick <= time.monotonic() for task in (first, second))
    scheduler = AsyncLOCOScheduler([agent], SharedResource("api", 1))
    assert scheduler._queue.depth("a") == 3.5

    async def main() -> None:
        async with scheduler.acquire("a") as grant:
            assert grant.task is first
        assert agent.tasks == [second]
        assert agent.completed_tasks == [done, first]

    run(main)
    with pytest.raises(TypeError, match="tasks must hold proctor Tasks"):
        Agent("b", tasks=["work"])  # type: ignore[list-item]


def test_assigning_tasks_replaces_the_queue_and_its_weight_in_qi() -> None:
    scheduler = make(alpha=1.0)
    old, kept, new = Task(weight=3.0), Task(weight=2.0), Task(weight=5.0)

    async def main() -> None:
        await scheduler.submit_task("a", old)
        await scheduler.submit_task("a", kept)
        agent = scheduler.get_agent("a")
        arrived = kept.arrival_tick
        agent.tasks = [new, kept]  # drops `old`; keeps `kept` as it was; queues `new`
        assert agent.tasks == [kept, new]  # oldest first
        assert kept.arrival_tick == arrived
        assert new.arrival_tick >= arrived
        assert agent.queue_depth_weighted == 7.0
        assert scheduler._queue.depth("a") == 7.0
        async with scheduler.acquire("a") as grant:
            assert grant.task is kept
            agent.tasks = agent.tasks  # the running task stays running
            assert agent.tasks == [kept, new]
            assert scheduler._queue.depth("a") == 5.0
        assert agent.completed_tasks == [kept]
        agent.tasks = []
        assert scheduler._queue.depth("a") == 0.0
        async with scheduler.acquire("a") as grant:  # nothing queued: a default task
            assert grant.task not in (old, kept, new)
        with pytest.raises(TypeError, match="tasks must hold proctor Tasks"):
            agent.tasks = [Task(), "work"]  # type: ignore[list-item]
        assert agent.tasks == []

    run(main)


def test_assigning_fewer_tasks_than_callers_wait_for_leaves_them_default_tasks() -> None:
    scheduler = make()
    queued = [Task(weight=2.0), Task(weight=2.0)]

    async def main() -> None:
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(scheduler, gate))
        await asyncio.sleep(0)
        for task in queued:
            await scheduler.submit_task("a", task)
        grants: list[Task] = []

        async def call() -> None:
            async with scheduler.acquire("a") as grant:
                grants.append(grant.task)

        callers = [asyncio.create_task(call()) for _ in range(2)]
        await asyncio.sleep(0)
        scheduler.get_agent("a").tasks = queued[1:]
        gate.set()
        await asyncio.gather(holder, *callers)
        assert grants[0] is queued[1]
        assert grants[1] not in queued
        assert (scheduler.get_agent("a")._claims, scheduler._queue.depth("a")) == (0, 0.0)

    run(main)


def test_threads_assign_tasks_under_the_schedulers_lock() -> None:
    scheduler = LOCOScheduler([Agent("a", tasks=[Task(weight=4.0)])], SharedResource("api", capacity=1))
    assert scheduler._queue.depth("a") == 4.0
    agent = scheduler.get_agent("a")
    replacement = Task(weight=2.0)
    agent.tasks = [replacement]
    assert scheduler._queue.depth("a") == 2.0
    with scheduler.acquire("a") as grant:
        assert grant.task is replacement
    assert agent.completed_tasks == [replacement]
    assert scheduler._queue.depth("a") == 0.0
    agent.completed_tasks = []
    assert (agent.completed_tasks, scheduler.metrics.completed_by_agent()) == ([], {"a": 0})
