from __future__ import annotations

import math

import pytest

from proctor import Agent, SecurityLabel, SharedResource, Task


def test_task_defaults() -> None:
    task = Task()
    assert (task.weight, task.task_type, task.labels, task.cost) == (1.0, "default", None, None)
    assert task.task_id
    assert Task().task_id != task.task_id
    assert task.estimated_cost == 1.0
    assert Task(weight=3.0).estimated_cost == 3.0
    assert Task(weight=3.0, cost=0.25).estimated_cost == 0.25


@pytest.mark.parametrize("weight", [0.5, 0, -1, math.nan, math.inf, "2", None, True])
def test_task_rejects_bad_weight(weight: object) -> None:
    with pytest.raises(ValueError, match=r"weight must be a finite number >= 1\.0"):
        Task(weight=weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("cost", [-0.1, math.nan, math.inf, "1"])
def test_task_rejects_bad_cost(cost: object) -> None:
    with pytest.raises(ValueError, match="cost must be a finite number"):
        Task(cost=cost)  # type: ignore[arg-type]


def test_security_labels_are_strings_in_order() -> None:
    assert SecurityLabel.PUBLIC < SecurityLabel.INTERNAL < SecurityLabel.CONFIDENTIAL
    assert max(SecurityLabel) is SecurityLabel.CONFIDENTIAL
    assert sorted([SecurityLabel.CONFIDENTIAL, SecurityLabel.PUBLIC]) == [
        SecurityLabel.PUBLIC,
        SecurityLabel.CONFIDENTIAL,
    ]
    assert SecurityLabel.INTERNAL == "internal"
    assert str(SecurityLabel.CONFIDENTIAL) == "confidential"
    assert {SecurityLabel.PUBLIC: 1}["public"] == 1
    assert SecurityLabel("public") is SecurityLabel.PUBLIC


def test_agent_and_resource_validate() -> None:
    assert Agent("a", name="Alice").name == "Alice"
    with pytest.raises(ValueError, match="agent_id"):
        Agent("")
    with pytest.raises(ValueError, match="capacity"):
        SharedResource("api", capacity=0)
    with pytest.raises(ValueError, match="capacity"):
        SharedResource("api", capacity=2.5)  # type: ignore[arg-type]
    res = SharedResource("api", capacity=3)
    assert (res.holder_count, res.waiter_count, res.available_slots, res.utilization) == (0, 0, 3, 0.0)
