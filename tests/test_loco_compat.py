"""A program written for loco-agent 0.4.0's documented API runs on proctor with only its imports changed.

Each ``guide_*`` function below is one part of a migration guide: a program a
LOCO user could have written from loco-agent's README and policy-engine page
(seed 000), using the scheduler, the agents and their task queues, the
resource, the policies and the budget. Its imports name proctor; the names
are LOCO's. ``LOCO_IMPORTS`` gives the original import of each line; when
loco-agent is installed (``make bench`` installs it into ``.venv``), the same
programs run on it too, and must give the same results.

The programs stay on paths where LOCO works as documented. The tests after
them show, on proctor, each deliberate difference that
``docs/migrating-from-loco.md`` lists.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

# Each proctor import line of the guides, and the loco-agent line it replaces.
LOCO_IMPORTS = {
    "from proctor import (": "from loco import (",
    "from proctor.policy import BudgetExceededError, BudgetManager": (
        "from loco.budget import BudgetExceededError, BudgetManager"
    ),
    "from proctor.policy import Policy, PolicyViolationError": (
        "from loco.policy import Policy, PolicyViolationError"
    ),
    "from proctor.task import Task": "from loco.task import Task",
}


def guide_queue() -> dict[str, Any]:
    """README, "Full API example": queue tasks, then serve them through the scheduler."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        SharedResource,
        Task,
    )

    async def main() -> dict[str, Any]:
        resource = SharedResource("llm_api", capacity=1)
        agents = [Agent(agent_id="urgent"), Agent(agent_id="batch")]
        scheduler = AsyncLOCOScheduler(agents, resource, optimize_for="balanced")

        for _ in range(5):
            await scheduler.submit_task("batch", Task(weight=1.0))
        await scheduler.submit_task("urgent", Task(weight=3.0))
        await scheduler.submit_task("newcomer", Task(weight=2.0, task_type="webhook"))  # registers it
        batch = scheduler.get_agent("batch")
        queued = {
            "batch tasks": len(batch.tasks),
            "batch Qi": batch.queue_depth_weighted,
            "urgent Qi": scheduler.get_agent("urgent").queue_depth_weighted,
            "dmax >= 0": all(agent.dmax >= 0 for agent in scheduler.agents.values()),
            "agents": sorted(scheduler.agents),
        }

        served: list[tuple[str, float, str]] = []

        async def worker(agent_id: str, n: int) -> None:
            for _ in range(n):
                async with scheduler.acquire(agent_id):
                    task = scheduler.get_agent(agent_id).serve_oldest_task()
                    assert task is not None
                    served.append((agent_id, task.weight, task.task_type))
                    await asyncio.sleep(0)

        await asyncio.gather(worker("urgent", 1), worker("batch", 5), worker("newcomer", 1))
        agents_by_id = scheduler.agents
        return {
            **queued,
            "served": sorted(served),
            "left": {agent_id: len(agent.tasks) for agent_id, agent in agents_by_id.items()},
            "completed": {agent_id: len(agent.completed_tasks) for agent_id, agent in agents_by_id.items()},
            "waits >= 0": all(task.age >= 0 for agent in agents for task in agent.completed_tasks),
            "dmax when empty": batch.dmax,
            "alpha": scheduler.alpha,
            "holders, waiters": (resource.holder_count, resource.waiter_count),
        }

    return asyncio.run(asyncio.wait_for(main(), 10))


def guide_agents_and_resource() -> dict[str, Any]:
    """README, API reference: agents at runtime, the resource's counters, the split acquire API."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        SharedResource,
        Task,
    )

    async def main() -> dict[str, Any]:
        resource = SharedResource(name="llm_api", capacity=2)
        scheduler = AsyncLOCOScheduler(
            agents=[Agent(agent_id="a"), Agent(agent_id="b")], resource=resource, max_waiters=100
        )
        scheduler.register_agent(Agent(agent_id="fraud-detector", agent_type="batch"))
        added = scheduler.get_agent("fraud-detector").agent_type
        removed = scheduler.unregister_agent("fraud-detector").agent_id
        seen: dict[str, Any] = {"added": added, "removed": removed, "agents": sorted(scheduler.agents)}
        seen["same resource"] = scheduler.resource is resource

        # The split API, for frameworks whose work starts and ends in two callbacks.
        for agent_id in ("a", "a", "b"):
            await scheduler.submit_task(agent_id, Task(weight=2.0))
        first = await scheduler.acquire_start("a")
        second = await scheduler.acquire_start("a", timeout=1.0)
        seen["full"] = (resource.holder_count, resource.available_slots, resource.utilization)
        waiting = asyncio.create_task(scheduler.acquire_start("b"))
        await asyncio.sleep(0)
        seen["waiting"] = resource.waiter_count
        seen["handle agent"] = first.agent_id
        scheduler.get_agent("a").serve_oldest_task()
        await scheduler.release_handle(first)
        await scheduler.release_handle(first)  # safe to call twice
        third = await waiting
        seen["handed over"] = (resource.holder_count, resource.waiter_count, third.agent_id)
        scheduler.get_agent("a").serve_oldest_task()
        scheduler.get_agent("b").serve_oldest_task()
        await scheduler.release_handle(second)
        await scheduler.release_handle(third)
        seen["empty"] = (resource.holder_count, resource.available_slots, resource.utilization)
        seen["left"] = {agent_id: len(agent.tasks) for agent_id, agent in scheduler.agents.items()}
        return seen

    return asyncio.run(asyncio.wait_for(main(), 10))


def guide_policies() -> dict[str, Any]:
    """Seed 000, "Quick Setup" to "Summary": an enforcer of three policies on the scheduler."""
    import asyncio

    from proctor import (
        AccessPolicy,
        Agent,
        AsyncLOCOScheduler,
        BudgetPolicy,
        PolicyEnforcer,
        PolicyViolationError,
        RatePolicy,
        SecurityLabel,
        SharedResource,
        Task,
    )

    async def main() -> dict[str, Any]:
        enforcer = PolicyEnforcer(
            [
                BudgetPolicy(default_limit=50.0),
                AccessPolicy(rules={"analyst": {"labels": ["public", "internal"]}}),
                RatePolicy(limits={"batch": 2.0}, period=60.0),
            ]
        )
        scheduler = AsyncLOCOScheduler(
            agents=[Agent(agent_id="analyst"), Agent(agent_id="batch")],
            resource=SharedResource("llm_api", capacity=3),
            enforcer=enforcer,
        )
        seen: dict[str, Any] = {"policies": [policy.name for policy in enforcer.policies]}

        async def run(agent_id: str, task: Task) -> str:
            await scheduler.submit_task(agent_id, task)
            try:
                async with scheduler.acquire(agent_id):
                    scheduler.get_agent(agent_id).serve_oldest_task()
            except PolicyViolationError as e:
                return f"rejected by {e.policy_name}"
            return "ran"

        internal = {"input": SecurityLabel.INTERNAL, "output": SecurityLabel.PUBLIC}
        confidential = {"input": SecurityLabel.CONFIDENTIAL}
        seen["analyst internal"] = await run("analyst", Task(weight=2.0, labels=internal))
        seen["analyst confidential"] = await run("analyst", Task(weight=2.0, labels=confidential))
        seen["batch"] = [await run("batch", Task(weight=3.0)) for _ in range(3)]
        rate = enforcer.get_policy("rate")
        assert isinstance(rate, RatePolicy)
        seen["rate remaining"] = round(rate.remaining("batch") or 0.0, 2)
        seen["rate unlimited"] = rate.remaining("analyst")
        seen["summary"] = enforcer.summary()

        # Adding and removing at runtime.
        enforcer.add_policy(RatePolicy(limits={"new-agent": 5.0}))
        seen["removed"] = type(enforcer.remove_policy("rate")).__name__
        seen["removed unknown"] = enforcer.remove_policy("no-such-policy")
        seen["after"] = ([policy.name for policy in enforcer.policies], len(enforcer), bool(enforcer))
        enforcer.policies.clear()  # a copy
        seen["still"] = len(enforcer)

        # By hand: check every policy, then record the completion.
        budget = enforcer.get_policy("budget")
        assert isinstance(budget, BudgetPolicy)
        task = Task(weight=4.0, labels={"input": SecurityLabel.PUBLIC})
        seen["check_all"] = enforcer.check_all("analyst", task)
        enforcer.record_all("analyst", task)
        seen["spent by hand"] = budget.spent("analyst")
        seen["empty enforcer"] = (len(PolicyEnforcer()), bool(PolicyEnforcer()))
        return seen

    return asyncio.run(asyncio.wait_for(main(), 10))


def guide_budget() -> dict[str, Any]:
    """README, "BudgetManager", and seed 000, "Backward Compatibility" and "Exceptions"."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        PolicyEnforcer,
        PolicyViolationError,
        RatePolicy,
        SharedResource,
        Task,
    )
    from proctor.policy import BudgetExceededError, BudgetManager

    seen: dict[str, Any] = {}
    budget = BudgetManager(default_limit=100.0, on_exceeded="reject")
    budget.set_limit("expensive-agent", max_cost=50.0)
    seen["check"] = budget.check("expensive-agent", task_cost=10.0)
    budget.record_spend("expensive-agent", cost=10.0)
    seen["remaining, spent"] = (budget.remaining("expensive-agent"), budget.spent("expensive-agent"))
    try:
        budget.check("expensive-agent", task_cost=45.0)
    except BudgetExceededError as e:
        seen["exceeded"] = (e.agent_id, e.current, e.limit, e.task_cost, e.policy_name)
    seen["alerts"] = budget.alerts
    seen["summary"] = budget.summary()
    budget.remove_limit("expensive-agent")
    seen["default limit"] = (budget.get_limit("expensive-agent"), budget.get_limit("anyone"))
    budget.reset("expensive-agent")
    seen["after reset"] = budget.spent("expensive-agent")
    for mode in ("alert", "downgrade"):
        lenient = BudgetManager(default_limit=1.0, on_exceeded=mode)
        seen[mode] = (lenient.check("a", task_cost=2.0), lenient.alerts[-1]["action"])

    async def main() -> None:
        agents = [Agent(agent_id="agent"), Agent(agent_id="other")]
        capped = BudgetManager(default_limit=5.0)
        # v0.2 style: budget= alone.
        scheduler = AsyncLOCOScheduler(agents, SharedResource("llm_api", capacity=2), budget=capped)
        outcomes = []
        for _ in range(3):
            await scheduler.submit_task("agent", Task(weight=2.0))
            try:
                async with scheduler.acquire("agent"):
                    scheduler.get_agent("agent").serve_oldest_task()
                    outcomes.append("ran")
            except BudgetExceededError as e:
                outcomes.append(f"over budget: {e.current:g} + {e.task_cost:g} > {e.limit:g}")
            except PolicyViolationError as e:
                outcomes.append(f"Policy {e.policy_name} rejected: {e.detail}")
        seen["budget="] = outcomes
        seen["spent"] = capped.spent("agent")
        capped.reset_all()
        seen["after reset_all"] = capped.summary()

        # Both together: the budget is checked with the enforcer's policies.
        both = AsyncLOCOScheduler(
            [Agent(agent_id="agent")],
            SharedResource("llm_api", capacity=1),
            budget=BudgetManager(default_limit=1.0),
            enforcer=PolicyEnforcer([RatePolicy(limits={"agent": 10.0})]),
        )
        await both.submit_task("agent", Task(weight=3.0))
        try:
            async with both.acquire("agent"):
                pass
        except BudgetExceededError as e:
            seen["both"] = e.policy_name

    asyncio.run(asyncio.wait_for(main(), 10))
    return seen


def guide_custom_policy() -> dict[str, Any]:
    """Seed 000, "Writing Custom Policies", on a scheduler."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        PolicyEnforcer,
        SharedResource,
    )
    from proctor.policy import Policy, PolicyViolationError
    from proctor.task import Task

    class RegionPolicy(Policy):
        """Only allow agents in specific regions."""

        name = "region"

        def __init__(self, allowed_regions: dict[str, list[str]]):
            self._regions = allowed_regions
            self.recorded: list[str] = []

        def check(self, agent_id: str, task: Task) -> bool:
            if agent_id in self._regions and task.task_type not in self._regions[agent_id]:
                raise PolicyViolationError(
                    self.name, agent_id, f"Task type {task.task_type!r} not allowed in region"
                )
            return True

        def record(self, agent_id: str, task: Task) -> None:
            self.recorded.append(task.task_type)

    async def main() -> dict[str, Any]:
        region = RegionPolicy({"eu-agent": ["analysis"]})
        scheduler = AsyncLOCOScheduler(
            [Agent("eu-agent")], SharedResource("llm_api", capacity=1), enforcer=PolicyEnforcer([region])
        )
        outcomes = []
        for task_type in ("analysis", "email"):
            await scheduler.submit_task("eu-agent", Task(task_type=task_type))
            try:
                async with scheduler.acquire("eu-agent"):
                    scheduler.get_agent("eu-agent").serve_oldest_task()
                    outcomes.append(f"{task_type} ran")
            except PolicyViolationError as e:
                outcomes.append(f"{task_type}: {e.policy_name} {e.detail}")
        return {"outcomes": outcomes, "recorded": region.recorded}

    return asyncio.run(asyncio.wait_for(main(), 10))


def guide_shutdown() -> dict[str, Any]:
    """README: ``shutdown(timeout)`` drains the holders, then refuses new work."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        SharedResource,
        ShutdownError,
        Task,
    )

    async def main() -> dict[str, Any]:
        resource = SharedResource("llm_api", capacity=1)
        scheduler = AsyncLOCOScheduler([Agent(agent_id="a")], resource)
        await scheduler.submit_task("a", Task())
        handle = await scheduler.acquire_start("a")

        async def finish_later() -> None:
            await asyncio.sleep(0.01)
            scheduler.get_agent("a").serve_oldest_task()
            await scheduler.release_handle(handle)

        finishing = asyncio.create_task(finish_later())
        report = await scheduler.shutdown(timeout=5.0)
        await finishing
        refused = []
        try:
            await scheduler.submit_task("a", Task())
        except ShutdownError:
            refused.append("submit_task")
        try:
            async with scheduler.acquire("a"):
                pass
        except ShutdownError:
            refused.append("acquire")
        return {"report": report, "refused": refused, "holders": resource.holder_count}

    return asyncio.run(asyncio.wait_for(main(), 10))


def guide_drop_in() -> dict[str, Any]:
    """README, API reference: agents made with tasks, ``scheduler.metrics``, abstract policies, errors."""
    import asyncio

    from proctor import (
        Agent,
        AsyncLOCOScheduler,
        Policy,
        PolicyEnforcer,
        PolicyViolationError,
        RatePolicy,
        SharedResource,
        Task,
    )

    seen: dict[str, Any] = {"abstract": []}

    class Unfinished(Policy):
        name = "unfinished"

    for policy_class in (Policy, Unfinished):
        try:
            policy_class()
        except TypeError:
            seen["abstract"].append(policy_class.__name__)
    try:
        Task(weight=0.5)
    except ValueError as e:
        seen["weight error"] = "weight must be >= 1.0" in str(e)
    ids = [Task().task_id for _ in range(100)]
    seen["task ids"] = ({len(task_id) for task_id in ids}, len(set(ids)), all(int(i, 16) >= 0 for i in ids))

    async def main() -> None:
        resource = SharedResource("llm_api", capacity=1)
        ops = Agent(agent_id="ops", tasks=[Task(weight=2.0), Task(weight=1.0, session_id="s1")])
        batch = Agent("batch", "Batch jobs", "batch", [Task(weight=3.0, task_type="report")])
        scheduler = AsyncLOCOScheduler(
            [ops, batch],
            resource,
            enforcer=PolicyEnforcer([RatePolicy(limits={"batch": 1.0}, period=3600.0)]),
        )
        seen["queued"] = {
            agent_id: agent.queue_depth_weighted for agent_id, agent in scheduler.agents.items()
        }
        ops.tasks = [task for task in ops.tasks if task.weight < 2.0]  # drop the heavy one
        seen["assigned"] = ([task.weight for task in ops.tasks], ops.queue_depth_weighted)
        seen["queue depths"] = scheduler.metrics.queue_depth_by_agent()

        outcomes = []
        for agent_id in ("ops", "batch", "batch"):
            if not scheduler.get_agent(agent_id).tasks:
                await scheduler.submit_task(agent_id, Task(weight=2.0, task_type="report"))
            try:
                async with scheduler.acquire(agent_id):
                    scheduler.get_agent(agent_id).serve_oldest_task()
                    outcomes.append(f"{agent_id} ran")
            except PolicyViolationError as e:
                outcomes.append(f"{agent_id}: {e.detail.startswith('Rate limit exceeded (1.0/3600.0s)')}")
        seen["outcomes"] = outcomes

        metrics = scheduler.metrics
        seen["costs"] = (metrics.cost_by_agent(), metrics.total_cost(), metrics.agent_cost("batch"))
        seen["completed"] = metrics.completed_by_agent()
        seen["waits"] = sorted(metrics.wait_time_by_agent())
        seen["utilization"] = metrics.resource_utilization()
        seen["sessions"] = (
            metrics.sessions(),
            metrics.cost_by_session(),
            metrics.session_cost("s1"),
            metrics.cost_by_session_and_agent("s1"),
        )
        served = scheduler.get_agent("batch").completed_tasks[0]
        metrics.record_actual_tokens("batch", served, 1200)
        metrics.record_actual_tokens("batch", served, 800)
        seen["tokens"] = (
            metrics.empirical_weight("report"),
            metrics.empirical_weight("chat"),
            metrics.actual_tokens_by_agent(),
            metrics.total_actual_tokens(),
        )

    asyncio.run(asyncio.wait_for(main(), 10))
    return seen


EXPECTED: dict[Callable[[], dict[str, Any]], dict[str, Any]] = {
    guide_queue: {
        "batch tasks": 5,
        "batch Qi": 5.0,
        "urgent Qi": 3.0,
        "dmax >= 0": True,
        "agents": ["batch", "newcomer", "urgent"],
        "served": [
            *[("batch", 1.0, "default")] * 5,
            ("newcomer", 2.0, "webhook"),
            ("urgent", 3.0, "default"),
        ],
        "left": {"urgent": 0, "batch": 0, "newcomer": 0},
        "completed": {"urgent": 1, "batch": 5, "newcomer": 1},
        "waits >= 0": True,
        "dmax when empty": 0.0,
        "alpha": 0.25,
        "holders, waiters": (0, 0),
    },
    guide_agents_and_resource: {
        "added": "batch",
        "removed": "fraud-detector",
        "agents": ["a", "b"],
        "same resource": True,
        "full": (2, 0, 1.0),
        "waiting": 1,
        "handle agent": "a",
        "handed over": (2, 0, "b"),
        "empty": (0, 2, 0.0),
        "left": {"a": 0, "b": 0},
    },
    guide_policies: {
        "policies": ["budget", "access", "rate"],
        "analyst internal": "ran",
        "analyst confidential": "rejected by access",
        "batch": ["ran", "ran", "rejected by rate"],
        "rate remaining": 0.0,
        "rate unlimited": None,
        "summary": {
            "budget": {
                "analyst": {"limit": 50.0, "spent": 2.0, "remaining": 48.0},
                "batch": {"limit": 50.0, "spent": 6.0, "remaining": 44.0},
            },
            "access": {"type": "AccessPolicy"},
            "rate": {"type": "RatePolicy"},
        },
        "removed": "RatePolicy",
        "removed unknown": None,
        "after": (["budget", "access", "rate"], 3, True),
        "still": 3,
        "check_all": ["budget", "access", "rate"],
        "spent by hand": 6.0,
        "empty enforcer": (0, False),
    },
    guide_budget: {
        "check": True,
        "remaining, spent": (40.0, 10.0),
        "exceeded": ("expensive-agent", 10.0, 50.0, 45.0, "budget"),
        "alerts": [
            {
                "agent_id": "expensive-agent",
                "current": 10.0,
                "task_cost": 45.0,
                "limit": 50.0,
                "action": "reject",
            }
        ],
        "summary": {"expensive-agent": {"limit": 50.0, "spent": 10.0, "remaining": 40.0}},
        "default limit": (100.0, 100.0),
        "after reset": 0.0,
        "alert": (False, "alert"),
        "downgrade": (False, "downgrade"),
        "budget=": ["ran", "ran", "over budget: 4 + 2 > 5"],
        "spent": 4.0,
        "after reset_all": {},
        "both": "budget",
    },
    guide_custom_policy: {
        "outcomes": ["analysis ran", "email: region Task type 'email' not allowed in region"],
        "recorded": ["analysis"],
    },
    guide_shutdown: {
        "report": {"cancelled_waiters": 0, "active_holders": 0},
        "refused": ["submit_task", "acquire"],
        "holders": 0,
    },
    guide_drop_in: {
        "abstract": ["Policy", "Unfinished"],
        "weight error": True,
        "task ids": ({12}, 100, True),
        "queued": {"ops": 3.0, "batch": 3.0},
        "assigned": ([1.0], 1.0),
        "queue depths": {"ops": 1.0, "batch": 3.0},
        "outcomes": ["ops ran", "batch ran", "batch: True"],
        "costs": ({"ops": 1.0, "batch": 3.0}, 4.0, 3.0),
        "completed": {"ops": 1, "batch": 1},
        "waits": ["batch", "ops"],
        "utilization": 0.0,
        "sessions": (["s1"], {"s1": 1.0}, 1.0, {"ops": 1.0}),
        "tokens": (1080.0, None, {"batch": [1200, 800]}, 2000),
    },
}
GUIDES = list(EXPECTED)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda guide: guide.__name__)
def test_the_guide_runs_on_proctor(guide: Callable[[], dict[str, Any]]) -> None:
    assert guide() == EXPECTED[guide]


def on_loco(guide: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The same guide with each import line swapped for loco-agent's, and nothing else changed."""
    source = textwrap.dedent(inspect.getsource(guide))
    lines = source.splitlines()
    swapped = [
        line.replace(stripped, LOCO_IMPORTS[stripped]) if (stripped := line.strip()) in LOCO_IMPORTS else line
        for line in lines
    ]
    changed = [(a, b) for a, b in zip(lines, swapped, strict=True) if a != b]
    assert changed
    assert all(a.lstrip().startswith("from proctor") for a, _ in changed)
    assert "proctor" not in "\n".join(swapped)
    namespace: dict[str, Any] = {"Any": Any}
    exec(compile("\n".join(swapped), f"<{guide.__name__} on loco>", "exec"), namespace)
    function: Callable[[], dict[str, Any]] = namespace[guide.__name__]
    return function


@pytest.mark.parametrize("guide", GUIDES, ids=lambda guide: guide.__name__)
def test_the_same_guide_gives_the_same_results_on_loco_agent(guide: Callable[[], dict[str, Any]]) -> None:
    pytest.importorskip("loco", reason="loco-agent is not installed; `make bench` installs it")
    assert on_loco(guide)() == EXPECTED[guide]


# Where proctor deliberately differs from loco-agent 0.4.0 (docs/migrating-from-loco.md).


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 10))


def test_a_rejected_task_leaves_the_queue() -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetExceededError, BudgetPolicy, SharedResource, Task

    async def main() -> None:
        budget = BudgetPolicy(default_limit=3.0)
        scheduler = AsyncLOCOScheduler([Agent("a")], SharedResource("llm_api", capacity=1), budget=budget)
        big, small = Task(weight=5.0), Task(weight=1.0)
        await scheduler.submit_task("a", big)
        await scheduler.submit_task("a", small)
        with pytest.raises(BudgetExceededError):
            async with scheduler.acquire("a"):
                pytest.fail("over budget")
        agent = scheduler.get_agent("a")
        assert agent.tasks == [small]  # LOCO would serve `big` again, and reject it, for ever
        async with scheduler.acquire("a") as grant:
            assert grant.task is small
        assert agent.completed_tasks == [small]
        assert agent.stats.rejected == 1

    run(main)


def test_a_grant_completes_its_task_when_the_body_does_not() -> None:
    from proctor import Agent, AsyncLOCOScheduler, SharedResource, Task

    async def main() -> None:
        scheduler = AsyncLOCOScheduler([Agent("a")], SharedResource("llm_api", capacity=1))
        task = Task()
        await scheduler.submit_task("a", task)
        running: list[list[Task]] = []

        async def work() -> None:
            async with scheduler.acquire("a") as grant:
                assert grant.task is task
                running.append(scheduler.get_agent("a").tasks)
                raise RuntimeError("the work failed")

        with pytest.raises(RuntimeError):
            await work()
        assert running == [[task]]  # pending while it runs
        assert scheduler.get_agent("a").tasks == []
        assert scheduler.get_agent("a").completed_tasks == [task]

    run(main)


def test_acquire_without_a_queued_task_is_served_under_contention() -> None:
    from proctor import AsyncLOCOScheduler, BudgetPolicy, SharedResource

    async def main() -> None:
        budget = BudgetPolicy()
        scheduler = AsyncLOCOScheduler(None, SharedResource("llm_api", capacity=1), budget=budget)
        order: list[str] = []

        async def call(agent_id: str) -> None:
            async with scheduler.acquire(agent_id):  # nothing queued: a default Task(weight=1)
                order.append(agent_id)
                await asyncio.sleep(0)

        await asyncio.gather(*(call(agent_id) for agent_id in ("a", "b", "c", "a")))
        assert sorted(order) == ["a", "a", "b", "c"]
        assert budget.spent("a") == 2.0  # the default task is checked and charged, weight 1

    run(main)


def test_an_exception_or_a_cancellation_in_the_body_strands_no_waiter() -> None:
    from proctor import AsyncLOCOScheduler, SharedResource

    async def main() -> None:
        resource = SharedResource("llm_api", capacity=1)
        scheduler = AsyncLOCOScheduler(None, resource)
        entered = asyncio.Event()

        async def failing() -> None:
            async with scheduler.acquire("a"):
                raise RuntimeError("boom")

        async def hanging() -> None:
            async with scheduler.acquire("b"):
                entered.set()
                await asyncio.sleep(3600)

        async def waiting() -> str:
            async with scheduler.acquire("c"):
                return "served"

        first = asyncio.create_task(failing())
        second = asyncio.create_task(waiting())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await first
        assert await second == "served"
        third = asyncio.create_task(hanging())
        await entered.wait()
        fourth = asyncio.create_task(waiting())
        await asyncio.sleep(0)
        third.cancel()
        assert await fourth == "served"
        assert (resource.holder_count, resource.waiter_count) == (0, 0)

    run(main)


def test_concurrent_grants_cannot_overspend_a_budget() -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetExceededError, BudgetPolicy, SharedResource, Task

    async def main() -> None:
        budget = BudgetPolicy(default_limit=5.0)
        scheduler = AsyncLOCOScheduler([Agent("a")], SharedResource("llm_api", capacity=4), budget=budget)
        for _ in range(4):
            await scheduler.submit_task("a", Task(weight=2.0))
        gate = asyncio.Event()

        async def work() -> str:
            try:
                async with scheduler.acquire("a"):
                    await gate.wait()
            except BudgetExceededError:
                return "rejected"
            return "ran"

        workers = [asyncio.create_task(work()) for _ in range(4)]
        await asyncio.sleep(0)
        gate.set()
        # LOCO checks the spend recorded after the work, so all four would run: 8 of a limit of 5.
        assert sorted(await asyncio.gather(*workers)) == ["ran", "ran", "rejected", "rejected"]
        assert budget.spent("a") == 4.0

    run(main)


def test_a_rate_token_comes_back_when_a_later_policy_rejects() -> None:
    from proctor import AccessPolicy, PolicyEnforcer, PolicyViolationError, RatePolicy, SecurityLabel, Task

    rate = RatePolicy(limits={"a": 2.0}, period=3600.0)
    enforcer = PolicyEnforcer([rate, AccessPolicy(rules={"a": {"labels": ["public"]}})])
    with pytest.raises(PolicyViolationError):
        enforcer.check_all("a", Task(labels={"input": SecurityLabel.CONFIDENTIAL}))
    assert rate.remaining("a") == pytest.approx(2.0)  # LOCO: 1.0, the rejected task's token spent


def test_alert_and_downgrade_modes_differ() -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetPolicy, SharedResource, Task

    async def main(mode: str) -> tuple[bool, str]:
        budget = BudgetPolicy(default_limit=1.0, on_exceeded=mode)  # type: ignore[arg-type]
        scheduler = AsyncLOCOScheduler([Agent("a")], SharedResource("llm_api", capacity=1), budget=budget)
        await scheduler.submit_task("a", Task(weight=2.0))
        async with scheduler.acquire("a") as grant:
            return grant.downgraded, budget.alerts[-1]["action"]

    assert asyncio.run(main("alert")) == (False, "alert")
    assert asyncio.run(main("downgrade")) == (True, "downgrade")


def test_shutdown_fails_waiters_instead_of_letting_them_in(caplog: pytest.LogCaptureFixture) -> None:
    from proctor import AsyncLOCOScheduler, SharedResource, ShutdownError

    async def main() -> None:
        resource = SharedResource("llm_api", capacity=1)
        scheduler = AsyncLOCOScheduler(None, resource)
        holder = await scheduler.acquire_start("a")
        waiter = asyncio.create_task(scheduler.acquire_start("b"))
        await asyncio.sleep(0)
        report = await scheduler.shutdown(timeout=0.01)
        assert report == {"cancelled_waiters": 1, "active_holders": 1}
        with pytest.raises(ShutdownError):
            await waiter  # LOCO lets it in, past the capacity, without a slot
        assert resource.holder_count == 1
        await scheduler.release_handle(holder)
        assert resource.holder_count == 0

    with caplog.at_level(logging.WARNING):
        run(main)


def test_acquire_without_a_task_is_checked_against_the_budget() -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetExceededError, BudgetPolicy, SharedResource, Task

    async def main() -> None:
        budget = BudgetPolicy(default_limit=2.0)
        scheduler = AsyncLOCOScheduler([Agent("a")], SharedResource("llm_api", capacity=1), budget=budget)
        await scheduler.submit_task("a", Task(weight=2.0))
        async with scheduler.acquire("a"):
            pass
        assert budget.spent("a") == 2.0
        # Nothing queued: LOCO checks no policy and lets the call run; proctor checks a default task.
        with pytest.raises(BudgetExceededError):
            async with scheduler.acquire("a"):
                pytest.fail("over budget")
        async with scheduler.acquire("a", Task(cost=0.0)) as grant:  # a call declared free runs
            assert grant.task.estimated_cost == 0.0
        assert budget.spent("a") == 2.0

    run(main)


def test_task_ids_are_unique_in_the_process_and_across_a_fork() -> None:
    import os

    from proctor import Task

    ids = {Task().task_id for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(task_id) == 12 and int(task_id, 16) >= 0 for task_id in ids)
    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids, and leave at once
        try:
            os.write(write, " ".join(Task().task_id for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {Task().task_id for _ in range(100)}
    assert len(child) == 100
    assert not child & parent
