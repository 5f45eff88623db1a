from __future__ import annotations

import logging

import pytest

from proctor import (
    Action,
    BudgetPolicy,
    Decision,
    MemoryStore,
    Outcome,
    Policy,
    PolicyEnforcer,
    PolicyViolationError,
    RatePolicy,
    Status,
    Task,
)


class Recorder(Policy):
    def __init__(self, name: str, log: list[str], allow: bool = True) -> None:
        self.name = name
        self.log = log
        self.allow = allow

    def check(self, agent_id: str, task: Task) -> bool:
        self.log.append(f"check {self.name}")
        return self.allow

    def record(self, agent_id: str, task: Task) -> None:
        self.log.append(f"record {self.name}")


def test_policies_run_in_order_and_stop_at_the_first_rejection() -> None:
    log: list[str] = []
    enforcer = PolicyEnforcer([Recorder("a", log), Recorder("b", log, allow=False), Recorder("c", log)])
    with pytest.raises(PolicyViolationError) as info:
        enforcer.admit("agent", Task())
    assert log == ["check a", "check b"]
    assert info.value.policy_name == "b"
    assert "Recorder.check() returned False" in info.value.detail


def test_a_falsy_return_is_a_rejection() -> None:
    class Forgetful(Policy):
        name = "forgetful"

        def check(self, agent_id: str, task: Task) -> bool:
            return None  # type: ignore[return-value]

    with pytest.raises(PolicyViolationError, match="returned None"):
        PolicyEnforcer([Forgetful()]).admit("a", Task())


def test_rejection_rolls_back_earlier_reservations() -> None:
    budget = BudgetPolicy(default_limit=10.0)
    rate = RatePolicy(limits={"a": 5.0})
    log: list[str] = []
    enforcer = PolicyEnforcer([budget, rate, Recorder("no", log, allow=False)])
    with pytest.raises(PolicyViolationError):
        enforcer.admit("a", Task(weight=4.0))
    assert budget.reserved("a") == 0.0
    assert rate.remaining("a") == pytest.approx(5.0)


def test_an_unexpected_error_in_a_policy_rolls_back_and_propagates() -> None:
    class Broken(Policy):
        name = "broken"

        def check(self, agent_id: str, task: Task) -> bool:
            raise RuntimeError("bug")

    budget = BudgetPolicy(default_limit=10.0)
    with pytest.raises(RuntimeError, match="bug"):
        PolicyEnforcer([budget, Broken()]).admit("a", Task())
    assert budget.reserved("a") == 0.0


def test_deny_decisions_become_violations() -> None:
    class Denier(Policy):
        name = "denier"

        def admit(self, agent_id: str, task: Task) -> Decision:
            return Decision(Action.DENY, self.name, "not today")

    with pytest.raises(PolicyViolationError, match="not today"):
        PolicyEnforcer([Denier()]).admit("a", Task())


def test_settle_passes_the_outcome_once_and_survives_a_failing_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Outcome] = []

    class Watcher(Policy):
        name = "watcher"

        def check(self, agent_id: str, task: Task) -> bool:
            return True

        def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
            seen.append(outcome)

    class Exploding(Policy):
        name = "exploding"

        def check(self, agent_id: str, task: Task) -> bool:
            return True

        def record(self, agent_id: str, task: Task) -> None:
            raise RuntimeError("record failed")

    enforcer = PolicyEnforcer([Exploding(), Watcher()])
    admission = enforcer.admit("a", Task())
    outcome = Outcome(Status.ERROR, cost=2.0, error=ValueError("x"))
    with caplog.at_level(logging.ERROR, logger="proctor.policy"):
        enforcer.settle(admission, outcome)
        enforcer.settle(admission, outcome)
    assert seen == [outcome]
    assert "policy 'exploding' failed to settle" in caplog.text


def test_add_remove_get() -> None:
    enforcer = PolicyEnforcer()
    assert not enforcer
    assert len(enforcer) == 0
    budget = BudgetPolicy()
    enforcer.add_policy(budget)
    assert enforcer.get_policy("budget") is budget
    assert enforcer.policies == [budget]
    enforcer.policies.clear()  # a copy
    assert len(enforcer) == 1
    assert enforcer.remove_policy("rate") is None  # as in LOCO: an unknown name is not an error
    assert enforcer.remove_policy("budget") is budget
    assert enforcer.remove_policy("budget") is None
    with pytest.raises(TypeError, match="expected a proctor Policy"):
        enforcer.add_policy(object())  # type: ignore[arg-type]


def test_summary_uses_each_policy_summary() -> None:
    enforcer = PolicyEnforcer([RatePolicy(limits={"a": 1.0}), BudgetPolicy(default_limit=3.0)])
    assert enforcer.summary() == {"rate": {"type": "RatePolicy"}, "budget": {}}


def test_check_all_reserves_and_record_all_settles() -> None:
    budget = BudgetPolicy(default_limit=5.0)
    rate = RatePolicy(limits={"a": 10.0})
    enforcer = PolicyEnforcer([rate, budget])
    task = Task(weight=2.0)
    assert enforcer.check_all("a", task) == ["rate", "budget"]
    assert budget.reserved("a") == 2.0  # held while the work runs, like a grant's
    assert rate.remaining("a") == pytest.approx(9.0, abs=0.01)
    enforcer.record_all("a", task)
    assert (budget.reserved("a"), budget.spent("a")) == (0.0, 2.0)
    enforcer.record_all("a", task)  # nothing checked is pending now: each policy's record()
    assert budget.spent("a") == 4.0
    assert not enforcer._checked


def test_check_all_rolls_back_and_raises_the_first_rejection() -> None:
    log: list[str] = []
    budget = BudgetPolicy(default_limit=5.0)
    enforcer = PolicyEnforcer([budget, Recorder("no", log, allow=False), Recorder("never", log)])
    with pytest.raises(PolicyViolationError) as info:
        enforcer.check_all("a", Task(weight=2.0))
    assert info.value.policy_name == "no"
    assert log == ["check no"]
    assert budget.reserved("a") == 0.0
    assert not enforcer._checked


def test_record_all_settles_each_check_of_the_same_task_once() -> None:
    log: list[str] = []
    enforcer = PolicyEnforcer([Recorder("r", log)])
    task = Task()
    enforcer.check_all("a", task)
    enforcer.check_all("a", task)
    enforcer.check_all("b", task)
    for agent in ("a", "b", "a"):
        enforcer.record_all(agent, task)
    assert log == ["check r"] * 3 + ["record r"] * 3
    assert not enforcer._checked


def test_blocking_follows_the_policies_also_in_an_extended_view() -> None:
    class Remote(Policy):
        name = "remote"
        blocking = True

        def check(self, agent_id: str, task: Task) -> bool:
            return True

    base = PolicyEnforcer([BudgetPolicy(store=MemoryStore())])
    view = base._extended(RatePolicy(store=MemoryStore()))
    assert not base.blocking
    assert not view.blocking
    base.add_policy(Remote())
    assert base.blocking
    assert view.blocking  # the view checks the base's policies too
    view.remove_policy("remote")  # removed from the base, through the view
    assert not base.blocking
    assert not view.blocking


def test_an_admission_is_downgraded_when_one_decision_is() -> None:
    budget = BudgetPolicy(default_limit=1.0, on_exceeded="downgrade")
    enforcer = PolicyEnforcer([RatePolicy(default_limit=10.0), budget])
    assert not enforcer.admit("a", Task(cost=1.0)).downgraded
    assert enforcer.admit("a", Task(cost=1.0)).downgraded
