"""Policy is abstract, as loco-agent's: a policy says what it checks, by ``check`` or by ``admit``."""

from __future__ import annotations

import inspect

import pytest

from proctor import (
    AccessPolicy,
    Action,
    BudgetPolicy,
    Decision,
    Outcome,
    Policy,
    PolicyEnforcer,
    PolicyViolationError,
    RatePolicy,
    Task,
)
from proctor.decision import ALLOW


def test_policy_itself_cannot_be_made() -> None:
    with pytest.raises(TypeError, match=r"abstract class Policy .*check"):
        Policy()
    assert inspect.isabstract(Policy)


def test_a_policy_without_check_cannot_be_made() -> None:
    class Observer(Policy):
        name = "observer"

        def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
            pass

    with pytest.raises(TypeError, match=r"abstract class Observer .*check"):
        Observer()


def test_check_or_admit_makes_a_policy() -> None:
    class Checked(Policy):
        def check(self, agent_id: str, task: Task) -> bool:
            return task.task_type != "no"

    class Admitting(Policy):
        name = "admitting"

        def admit(self, agent_id: str, task: Task) -> Decision:
            if task.task_type == "no":
                return Decision(Action.DENY, self.name, "not this one")
            return ALLOW

    class Inherited(Checked):
        pass

    for policy_class in (Checked, Admitting, Inherited, AccessPolicy, RatePolicy, BudgetPolicy):
        assert not inspect.isabstract(policy_class)
    enforcer = PolicyEnforcer([Checked(), Admitting(), Inherited()])
    assert enforcer.check_all("a", Task()) == ["policy", "admitting", "policy"]
    # A policy that decides in admit() answers check() too, reserving nothing.
    assert Admitting().check("a", Task()) is True
    with pytest.raises(PolicyViolationError, match="not this one"):
        Admitting().check("a", Task(task_type="no"))


def test_a_two_phase_policy_checks_without_keeping_its_reservation() -> None:
    class Tokens(Policy):
        name = "tokens"

        def __init__(self) -> None:
            self.held = 0

        def admit(self, agent_id: str, task: Task) -> Decision:
            self.held += 1
            return Decision(Action.ALLOW, self.name, reservation=1)

        def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
            self.held -= 1

    tokens = Tokens()
    assert tokens.check("a", Task()) is True
    assert tokens.held == 0
