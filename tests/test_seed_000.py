"""Every code example of seed 000 (the policy engine page), as written, with the
import changed to proctor, followed by assertions on what the page says it does.

Two examples are not valid Python as printed and are adapted minimally (each
place says how): the "Exceptions" block uses ``async with`` outside a
coroutine and has an ``except`` clause whose body is only a comment.
"""

from __future__ import annotations

import asyncio
import logging

import pytest


def quick_setup():
    # --- "Quick Setup", as written ---
    from proctor import (
        AccessPolicy,
        Agent,
        AsyncLOCOScheduler,
        BudgetPolicy,
        PolicyEnforcer,
        RatePolicy,
        SharedResource,
    )

    enforcer = PolicyEnforcer(
        [
            BudgetPolicy(default_limit=50.0),
            AccessPolicy(rules={"analyst": {"labels": ["public", "internal"]}}),
            RatePolicy(limits={"batch": 10.0}, period=60.0),
        ]
    )

    scheduler = AsyncLOCOScheduler(
        agents=[Agent(agent_id="analyst"), Agent(agent_id="batch")],
        resource=SharedResource("llm_api", capacity=3),
        enforcer=enforcer,
    )
    # --- end of example ---
    return enforcer, scheduler


def test_quick_setup_checks_policies_in_order_after_the_grant() -> None:
    from proctor import PolicyViolationError, SecurityLabel, Task

    enforcer, scheduler = quick_setup()
    assert [p.name for p in enforcer.policies] == ["budget", "access", "rate"]
    assert scheduler.resource.capacity == 3

    async def main() -> None:
        # Access: the analyst may not handle confidential data.
        with pytest.raises(PolicyViolationError) as info:
            async with scheduler.acquire("analyst", Task(labels={"input": SecurityLabel.CONFIDENTIAL})):
                pytest.fail("the body must not run")
        assert info.value.policy_name == "access"
        # The rejected task released its slot at once.
        assert scheduler.resource.holder_count == 0
        # Rate: batch gets 10 per minute, then is rejected.
        for _ in range(10):
            async with scheduler.acquire("batch"):
                pass
        with pytest.raises(PolicyViolationError) as info:
            async with scheduler.acquire("batch"):
                pytest.fail("the body must not run")
        assert info.value.policy_name == "rate"

    asyncio.run(main())


def test_how_it_works_slot_goes_to_next_waiter_when_policy_rejects() -> None:
    from proctor import PolicyViolationError, Task

    enforcer, scheduler = quick_setup()
    # capacity 3; the analyst's budget of 50 holds 50 weight-1 tasks.
    enforcer.get_policy("budget").set_limit("analyst", max_cost=1.0)

    async def main() -> list[str]:
        order: list[str] = []
        gate = asyncio.Event()

        async def hold(agent: str) -> None:
            async with scheduler.acquire(agent):
                await gate.wait()

        holders = [asyncio.create_task(hold("batch")) for _ in range(3)]
        await asyncio.sleep(0)
        assert scheduler.resource.holder_count == 3

        async def attempt(agent: str, weight: float) -> None:
            try:
                async with scheduler.acquire(agent, Task(weight=weight)):
                    order.append(f"{agent} ran")
            except PolicyViolationError as exc:
                order.append(f"{agent} rejected by {exc.policy_name}")

        waiters = [asyncio.create_task(attempt("analyst", 2.0)), asyncio.create_task(attempt("other", 1.0))]
        await asyncio.sleep(0)
        assert scheduler.resource.waiter_count == 2
        gate.set()
        await asyncio.gather(*holders, *waiters)
        return order

    order = asyncio.run(main())
    assert sorted(order) == ["analyst rejected by budget", "other ran"]
    assert scheduler.resource.holder_count == 0
    assert scheduler.resource.waiter_count == 0


def test_budget_policy_example() -> None:
    # --- "BudgetPolicy", as written ---
    from proctor import BudgetPolicy

    budget = BudgetPolicy(default_limit=100.0, on_exceeded="reject")
    budget.set_limit("expensive-agent", max_cost=50.0)
    # --- end of example ---

    assert budget.get_limit("expensive-agent") == 50.0
    assert budget.get_limit("anyone-else") == 100.0
    assert budget.on_exceeded == "reject"

    from proctor import BudgetManager

    assert BudgetManager is BudgetPolicy


def test_access_policy_example() -> None:
    # --- "AccessPolicy", as written ---
    from proctor import AccessPolicy, SecurityLabel, Task

    policy = AccessPolicy(
        rules={
            "analyst": {"labels": ["public", "internal"]},
            "auditor": {"labels": ["public", "internal", "confidential"]},
        }
    )

    # Analyst can process public/internal tasks but not confidential
    # Auditor can process anything
    # Agents not in rules are allowed (open by default)
    # --- end of example ---

    # --- "Requires tasks to have labels set", as written ---
    task = Task(
        weight=2.0,
        labels={"input": SecurityLabel.CONFIDENTIAL, "output": SecurityLabel.INTERNAL},
    )
    # --- end of example ---

    from proctor import PolicyViolationError

    internal = Task(labels={"input": SecurityLabel.PUBLIC, "output": SecurityLabel.INTERNAL})
    assert policy.check("analyst", internal) is True
    with pytest.raises(PolicyViolationError) as info:
        policy.check("analyst", task)
    assert info.value.policy_name == "access"
    assert "confidential" in info.value.detail
    assert policy.check("auditor", task) is True
    assert policy.check("somebody-new", task) is True


def test_rate_policy_example() -> None:
    # --- "RatePolicy", as written ---
    from proctor import RatePolicy, Task

    policy = RatePolicy(
        limits={"batch": 10.0, "realtime": 100.0},
        period=60.0,  # 10 requests per minute for batch, 100 for realtime
    )

    # Check remaining tokens
    policy.remaining("batch")  # 10.0 initially, decreases with each check
    # --- end of example ---

    assert policy.remaining("batch") == pytest.approx(10.0)
    assert policy.check("batch", Task()) is True
    assert policy.remaining("batch") == pytest.approx(9.0, abs=0.01)
    assert policy.remaining("realtime") == pytest.approx(100.0)
    assert policy.remaining("unlisted") is None  # no limit, no bucket


def test_composing_and_runtime_changes(caplog: pytest.LogCaptureFixture) -> None:
    from proctor import AccessPolicy, BudgetPolicy, PolicyEnforcer, RatePolicy

    # --- "Composing Policies", as written. ``rules={...}`` is the page's
    # placeholder: a set holding Ellipsis, taken as "no rules" with a warning. ---
    with caplog.at_level(logging.WARNING, logger="proctor.policy"):
        enforcer = PolicyEnforcer(
            [
                RatePolicy(limits={"batch": 10.0}),  # fast: token bucket check
                AccessPolicy(rules={...}),  # fast: label lookup
                BudgetPolicy(default_limit=100.0),  # fast: spend comparison
            ]
        )
    # --- end of example ---
    assert "placeholder" in caplog.text
    assert [p.name for p in enforcer.policies] == ["rate", "access", "budget"]

    # --- "Adding and Removing at Runtime", as written ---
    enforcer.add_policy(RatePolicy(limits={"new-agent": 5.0}))
    enforcer.remove_policy("rate")  # remove by policy name
    enforcer.get_policy("budget")  # look up by name
    # --- end of example ---

    # remove_policy took out the first "rate"; the one added at runtime stays, last.
    assert [p.name for p in enforcer.policies] == ["access", "budget", "rate"]
    rate = enforcer.get_policy("rate")
    assert isinstance(rate, RatePolicy)
    assert rate.remaining("new-agent") == pytest.approx(5.0)
    assert isinstance(enforcer.get_policy("budget"), BudgetPolicy)
    assert enforcer.get_policy("nope") is None
    assert enforcer.remove_policy("nope") is None  # as the published loco-agent does


def test_summary_has_the_documented_shape() -> None:
    from proctor import Task

    enforcer, scheduler = quick_setup()

    async def spend_twelve() -> None:
        for _ in range(6):
            async with scheduler.acquire("analyst", Task(weight=2.0)):
                pass

    asyncio.run(spend_twelve())

    # --- "Summary", as written ---
    result = enforcer.summary()
    # --- end of example ---
    assert result == {
        "budget": {"analyst": {"limit": 50.0, "spent": 12.0, "remaining": 38.0}},
        "access": {"type": "AccessPolicy"},
        "rate": {"type": "RatePolicy"},
    }


def test_custom_policy_example() -> None:
    # --- "Writing Custom Policies", as written ---
    from proctor.policy import Policy, PolicyViolationError
    from proctor.task import Task

    class RegionPolicy(Policy):
        """Only allow agents in specific regions."""

        name = "region"

        def __init__(self, allowed_regions: dict[str, list[str]]):
            self._regions = allowed_regions

        def check(self, agent_id: str, task: Task) -> bool:
            if agent_id in self._regions:  # noqa: SIM102 (as the seed writes it)
                if task.task_type not in self._regions[agent_id]:
                    raise PolicyViolationError(
                        self.name, agent_id, f"Task type {task.task_type!r} not allowed in region"
                    )
            return True

        def record(self, agent_id: str, task: Task) -> None:
            # Optional: track per-region usage
            pass

    # --- end of example ---

    from proctor import Agent, AsyncLOCOScheduler, PolicyEnforcer, SharedResource

    recorded: list[str] = []

    class CountingRegionPolicy(RegionPolicy):
        def record(self, agent_id: str, task: Task) -> None:
            recorded.append(task.task_type)

    scheduler = AsyncLOCOScheduler(
        [Agent("eu-agent")],
        SharedResource("llm_api", capacity=1),
        enforcer=PolicyEnforcer([CountingRegionPolicy({"eu-agent": ["eu-west"]})]),
    )

    async def main() -> None:
        async with scheduler.acquire("eu-agent", Task(task_type="eu-west")):
            assert recorded == []  # record() runs after the work, not before
        with pytest.raises(PolicyViolationError, match="not allowed in region") as info:
            async with scheduler.acquire("eu-agent", Task(task_type="us-east")):
                pytest.fail("the body must not run")
        assert info.value.policy_name == "region"
        assert info.value.agent_id == "eu-agent"

    asyncio.run(main())
    assert recorded == ["eu-west"]
    assert RegionPolicy({}).check("anyone", Task()) is True


def test_backward_compatibility_example() -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetPolicy, PolicyEnforcer, RatePolicy, SharedResource

    agents = [Agent("a"), Agent("b")]
    resource = SharedResource("llm_api", capacity=3)
    budget = BudgetPolicy(default_limit=5.0)
    enforcer = PolicyEnforcer([RatePolicy(limits={"a": 100.0})])

    # --- "Backward Compatibility", as written ---
    # v0.2 style -- still works
    scheduler = AsyncLOCOScheduler(agents, resource, budget=budget)

    # v0.3 style -- policy composition
    scheduler = AsyncLOCOScheduler(agents, resource, enforcer=enforcer)

    # Both together -- budget is added to enforcer automatically
    scheduler = AsyncLOCOScheduler(agents, resource, budget=budget, enforcer=enforcer)
    # --- end of example ---

    assert scheduler.enforcer is not None
    assert [p.name for p in scheduler.enforcer.policies] == ["rate", "budget"]
    # The caller's enforcer is not changed ...
    assert [p.name for p in enforcer.policies] == ["rate"]
    # ... but a policy added to it later is seen by the scheduler.
    enforcer.add_policy(RatePolicy(limits={"b": 1.0}))
    assert [p.name for p in scheduler.enforcer.policies] == ["rate", "rate", "budget"]

    async def main() -> None:
        for _ in range(5):
            async with scheduler.acquire("a"):
                pass

    asyncio.run(main())
    assert budget.spent("a") == 5.0
    assert AsyncLOCOScheduler(agents, SharedResource("x", 1), budget=budget).enforcer.policies == [budget]


def test_exceptions_example(capsys: pytest.CaptureFixture[str]) -> None:
    from proctor import Agent, AsyncLOCOScheduler, BudgetPolicy, PolicyEnforcer, RatePolicy, SharedResource

    scheduler = AsyncLOCOScheduler(
        [Agent("agent")],
        SharedResource("llm_api", capacity=1),
        enforcer=PolicyEnforcer([RatePolicy(limits={"agent": 1.0})]),
        budget=BudgetPolicy(default_limit=2.0),
    )
    handled: list[str] = []

    async def do_work() -> None:
        await asyncio.sleep(0)

    async def example() -> None:
        # --- "Exceptions", as written, inside a coroutine; ``pass`` stands
        # after the comment that is the only body of the first except. ---
        from proctor import BudgetExceededError, PolicyViolationError

        try:
            async with scheduler.acquire("agent"):
                await do_work()
        except BudgetExceededError:
            # Handle budget-specific rejection
            handled.append("budget")
        except PolicyViolationError as e:
            # Handle any policy rejection
            print(f"Policy {e.policy_name} rejected: {e.detail}")
        # --- end of example ---

    asyncio.run(example())  # allowed
    asyncio.run(example())  # rate: 1 per minute
    assert "Policy rate rejected: Rate limit exceeded (1.0/60.0s)" in capsys.readouterr().out
    assert handled == []

    from proctor import BudgetExceededError, PolicyViolationError, Task

    assert issubclass(BudgetExceededError, PolicyViolationError)

    async def expensive() -> None:
        async with scheduler.acquire("other", Task(weight=3.0)):
            pytest.fail("over budget: the body must not run")

    with pytest.raises(BudgetExceededError) as info:
        asyncio.run(expensive())
    assert (info.value.agent_id, info.value.limit, info.value.task_cost) == ("other", 2.0, 3.0)
    assert info.value.policy_name == "budget"
