"""``scheduler.metrics``: loco-agent's live view of costs, sessions, queues and token counts."""

from __future__ import annotations

import asyncio

import pytest

from proctor import (
    Agent,
    AsyncLOCOScheduler,
    BudgetExceededError,
    BudgetPolicy,
    LOCOScheduler,
    SharedResource,
    Task,
)


def test_every_granted_task_counts_at_its_estimated_cost() -> None:
    budget = BudgetPolicy(default_limit=4.0)
    scheduler = AsyncLOCOScheduler(resource=SharedResource("api", 1), budget=budget)

    async def main() -> None:
        async with scheduler.acquire("a"):  # a default task: weight 1
            pass
        async with scheduler.acquire("a", Task(weight=3.0, cost=0.5, session_id="s")):
            pass
        await scheduler.submit_task("b", Task(weight=2.0, session_id="s"))
        async with scheduler.acquire("b"):
            pass
        with pytest.raises(BudgetExceededError):  # rejected: not counted
            async with scheduler.acquire("b", Task(weight=3.0)):
                pass

    asyncio.run(main())
    metrics = scheduler.metrics
    assert metrics is scheduler.metrics
    assert metrics.cost_by_agent() == {"a": 1.5, "b": 2.0}
    assert (metrics.total_cost(), metrics.agent_cost("a"), metrics.agent_cost("nobody")) == (3.5, 1.5, 0.0)
    assert metrics.cost_by_session() == {"s": 2.5}
    assert metrics.cost_by_session_and_agent("s") == {"a": 0.5, "b": 2.0}
    assert metrics.completed_by_agent() == {"a": 0, "b": 1}
    assert metrics.queue_depth_by_agent() == {"a": 0.0, "b": 0.0}
    assert set(metrics.wait_time_by_agent()) == {"b"}


def test_completed_counts_every_served_task_not_only_the_kept_ones() -> None:
    agent = Agent("a", tasks=[Task() for _ in range(1005)])
    scheduler = LOCOScheduler([agent], SharedResource("api", 1))
    for _ in range(1005):
        with scheduler.acquire("a"):
            pass
    assert len(agent.completed_tasks) == 1000
    assert scheduler.metrics.completed_by_agent() == {"a": 1005}
    assert scheduler.metrics.cost_by_agent() == {"a": 1005.0}
    assert scheduler.metrics.resource_utilization() == 0.0


def test_token_counts_feed_a_moving_average_per_task_type() -> None:
    scheduler = LOCOScheduler(resource=SharedResource("api", 1))
    metrics = scheduler.metrics
    task = Task(task_type="chat")
    assert metrics.empirical_weight("chat") is None
    metrics.record_actual_tokens("a", task, 1000)
    metrics.record_actual_tokens("a", task, 2000)
    assert metrics.empirical_weight("chat") == pytest.approx(0.3 * 2000 + 0.7 * 1000)
    assert metrics.actual_tokens_by_agent() == {"a": [1000, 2000]}
    assert metrics.total_actual_tokens() == 3000
