"""RulesPolicy: a policy file composes with code policies in one PolicyEnforcer, scheduler included."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    BudgetPolicy,
    LOCOScheduler,
    Outcome,
    PolicyEnforcer,
    RulesPolicy,
    RuleViolationError,
    SharedResource,
    Status,
    Task,
)
from proctor.decision import Action

RULES: dict[str, Any] = {
    "policies": [
        {
            "id": "no-big-llm",
            "when": {"tool": "llm", "cost": {"gt": 1.0}},
            "action": "deny",
            "message": "too big",
        },
        {"id": "db-needs-a-person", "when": {"tool": "db"}, "action": "require_approval"},
        {"id": "stop", "when": {"tool": "rm"}, "action": "terminate"},
        {"id": "watch-gpt", "when": {"args.model": "gpt-4"}, "action": "log"},
        {"id": "no-confidential", "when": {"labels.input": "confidential"}, "action": "deny"},
    ]
}


def test_the_rules_decide_on_the_facts_a_task_carries(caplog: pytest.LogCaptureFixture) -> None:
    enforcer = PolicyEnforcer([RulesPolicy(RULES)])
    enforcer.admit("a", Task(task_type="llm", cost=0.5))
    with pytest.raises(RuleViolationError, match="too big"):
        enforcer.admit("a", Task(task_type="llm", cost=2.0))
    with pytest.raises(RuleViolationError, match="no person is asked"):
        enforcer.admit("a", Task(task_type="db"))
    with pytest.raises(RuleViolationError, match="no run to end"):
        enforcer.admit("a", Task(task_type="rm"))
    with pytest.raises(RuleViolationError, match="no-confidential"):
        enforcer.admit("a", Task(task_type="llm", labels={"input": "confidential"}))  # type: ignore[dict-item]
    with caplog.at_level(logging.WARNING, logger="proctor.rules"):
        admission = enforcer.admit("a", Task(task_type="llm", model="gpt-4"))
    assert [d.action for d in admission.decisions] == [Action.LOG]
    assert "watch-gpt" in caplog.text


def test_a_refusal_by_the_rules_gives_back_what_a_budget_before_them_reserved() -> None:
    budget = BudgetPolicy(default_limit=10.0)
    enforcer = PolicyEnforcer([budget, RulesPolicy(RULES)])
    with pytest.raises(RuleViolationError):
        enforcer.admit("a", Task(task_type="llm", cost=2.0))
    assert budget.reserved("a") == 0.0
    admission = enforcer.admit("a", Task(task_type="llm", cost=0.5))
    assert budget.reserved("a") == 0.5
    enforcer.settle(admission, Outcome(Status.SUCCESS, 0.25))
    assert budget.spent("a") == 0.25


def test_a_scheduler_refuses_by_the_rules_after_the_grant() -> None:
    scheduler = LOCOScheduler(
        resource=SharedResource("api", capacity=1), enforcer=PolicyEnforcer([RulesPolicy(RULES)])
    )
    with scheduler.acquire("a", Task(task_type="llm", cost=0.5)):
        pass
    with (
        pytest.raises(RuleViolationError, match="too big"),
        scheduler.acquire("a", Task(task_type="llm", cost=5.0)),
    ):
        pass
    with scheduler.acquire("a", Task(task_type="llm", cost=0.1)):  # the refused request's slot came back
        pass


def test_a_changed_file_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("policies:\n  - {id: cap, when: {cost: {gt: 5}}, action: deny}\n")
    policy = RulesPolicy(path)
    enforcer = PolicyEnforcer([policy])
    enforcer.admit("a", Task(cost=3.0))
    path.write_text("policies:\n  - {id: cap, when: {cost: {gt: 2}}, action: deny}\n")
    policy._source._next_check = 0.0  # check the file at the next task
    with pytest.raises(RuleViolationError, match="cap"):
        enforcer.admit("a", Task(cost=3.0))
