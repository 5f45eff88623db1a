from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from proctor import (
    Action,
    BudgetExceededError,
    BudgetPolicy,
    ConfigurationError,
    Outcome,
    Status,
    Task,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settle(policy: BudgetPolicy, agent: str, task: Task, cost: float | None = None) -> None:
    decision = policy.admit(agent, task)
    policy.settle(agent, task, decision, Outcome(Status.SUCCESS, cost))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_limit": -1.0}, "default_limit must be a finite number >= 0"),
        ({"default_limit": float("nan")}, "default_limit"),
        ({"on_exceeded": "explode"}, "on_exceeded must be one of"),
        ({"period": "week"}, "period must be 'hour', 'day', 'month'"),
        ({"period": 0}, "period in seconds must be a finite number > 0"),
        ({"period": -5.0}, "period in seconds"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BudgetPolicy(**kwargs)  # type: ignore[arg-type]


def test_set_limit_rejects_negative() -> None:
    with pytest.raises(ValueError, match="max_cost must be a finite number >= 0"):
        BudgetPolicy().set_limit("a", max_cost=-1)


def test_reject_mode_reserves_and_settles() -> None:
    policy = BudgetPolicy(default_limit=10.0)
    task = Task(weight=4.0)
    first = policy.admit("a", task)
    assert (policy.spent("a"), policy.reserved("a"), policy.remaining("a")) == (0.0, 4.0, 6.0)
    second = policy.admit("a", task)
    assert policy.remaining("a") == 2.0
    # A third would reach 12 > 10, counting the two reservations not yet settled.
    with pytest.raises(BudgetExceededError) as info:
        policy.admit("a", task)
    assert (info.value.current, info.value.limit, info.value.task_cost) == (8.0, 10.0, 4.0)
    # Settling with an actual cost lower than the estimate frees the difference.
    policy.settle("a", task, first, Outcome(Status.SUCCESS, cost=1.5))
    policy.rollback("a", task, second)
    assert (policy.spent("a"), policy.reserved("a"), policy.remaining("a")) == (1.5, 0.0, 8.5)


def test_cost_is_task_cost_when_given_else_weight() -> None:
    policy = BudgetPolicy(default_limit=1.0)
    settle(policy, "a", Task(weight=3.0, cost=0.25))
    assert policy.spent("a") == 0.25
    with pytest.raises(BudgetExceededError):
        policy.admit("a", Task(weight=1.0))  # weight 1 + 0.25 > 1


def test_decimal_costs_add_up_exactly() -> None:
    policy = BudgetPolicy(default_limit=0.3)
    for _ in range(3):
        settle(policy, "a", Task(cost=0.1))
    assert policy.spent("a") == 0.3
    assert policy.remaining("a") == 0.0
    with pytest.raises(BudgetExceededError):
        policy.admit("a", Task(cost=0.000000001))


def test_alert_mode_allows_logs_and_remembers(caplog: pytest.LogCaptureFixture) -> None:
    policy = BudgetPolicy(default_limit=1.0, on_exceeded="alert")
    settle(policy, "a", Task())
    with caplog.at_level(logging.WARNING, logger="proctor.budget"):
        decision = policy.admit("a", Task(weight=2.0))
    assert decision.action is Action.LOG
    assert not decision.downgrade
    assert "budget alert for agent 'a'" in caplog.text
    assert policy.alerts == [
        {"agent_id": "a", "current": 1.0, "task_cost": 2.0, "limit": 1.0, "action": "alert"}
    ]
    assert policy.check("a", Task()) is False  # over, but no exception in alert mode


def test_downgrade_mode_flags_the_decision() -> None:
    policy = BudgetPolicy(default_limit=1.0, on_exceeded="downgrade")
    assert not policy.admit("a", Task()).downgrade
    decision = policy.admit("a", Task())
    assert decision.action is Action.ALLOW
    assert decision.downgrade
    assert policy.alerts[-1]["action"] == "downgrade"


def test_alerts_are_bounded() -> None:
    policy = BudgetPolicy(default_limit=0.0, on_exceeded="alert")
    for _ in range(500):
        policy.rollback("a", Task(), policy.admit("a", Task()))
    assert len(policy.alerts) == 100


def test_check_reserves_nothing_and_accepts_a_bare_cost() -> None:
    policy = BudgetPolicy(default_limit=5.0)
    assert policy.check("a", Task(weight=5.0)) is True
    assert policy.check("a", 5.0) is True
    assert policy.reserved("a") == 0.0
    with pytest.raises(BudgetExceededError):
        policy.check("a", 5.5)


def test_limits_per_agent_and_unlimited() -> None:
    policy = BudgetPolicy()
    assert policy.get_limit("a") is None
    assert policy.remaining("a") is None
    settle(policy, "a", Task(weight=1000.0))
    assert policy.spent("a") == 1000.0
    policy.set_limit("b", max_cost=2.0)
    assert policy.get_limit("b") == 2.0
    policy.remove_limit("b")
    assert policy.get_limit("b") is None


def test_record_spend_reset_and_summary() -> None:
    policy = BudgetPolicy(default_limit=10.0)
    policy.set_limit("b", max_cost=4.0)
    policy.record_spend("a", 3.0)
    assert policy.summary() == {
        "a": {"limit": 10.0, "spent": 3.0, "remaining": 7.0},
        "b": {"limit": 4.0, "spent": 0.0, "remaining": 4.0},
    }
    policy.reset("a")
    assert policy.spent("a") == 0.0
    policy.record_spend("a", 1.0)
    policy.record_spend("b", 1.0)
    policy.reset_all()
    assert policy.spent("a") == policy.spent("b") == 0.0


def test_period_in_seconds_starts_spend_over() -> None:
    clock = Clock(1000.0)
    policy = BudgetPolicy(default_limit=2.0, period=60, clock=clock)
    settle(policy, "a", Task(weight=2.0))
    with pytest.raises(BudgetExceededError):
        policy.admit("a", Task())
    clock.now = 1019.0  # still in the window [960, 1020)
    assert policy.spent("a") == 2.0
    clock.now = 1020.0
    assert policy.spent("a") == 0.0
    settle(policy, "a", Task())
    assert policy.spent("a") == 1.0


def test_reservation_made_before_a_period_ends_is_settled_after_it() -> None:
    clock = Clock(0.0)
    policy = BudgetPolicy(default_limit=5.0, period=10, clock=clock)
    task = Task(weight=4.0)
    decision = policy.admit("a", task)
    clock.now = 10.0  # next period; the running task's reservation carries over
    assert policy.remaining("a") == 1.0
    with pytest.raises(BudgetExceededError):
        policy.admit("a", Task(weight=2.0))
    policy.settle("a", task, decision, Outcome(Status.SUCCESS))
    assert (policy.spent("a"), policy.reserved("a")) == (4.0, 0.0)


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        ("hour", datetime(2026, 3, 8, 1, 59, 59), datetime(2026, 3, 8, 3, 0, 0)),  # spring forward
        ("day", datetime(2026, 11, 1, 23, 59, 59), datetime(2026, 11, 2, 0, 0, 0)),
        ("day", datetime(2026, 3, 8, 23, 59, 59), datetime(2026, 3, 9, 0, 0, 0)),  # a 23 h day
        ("month", datetime(2026, 12, 31, 23, 59, 59), datetime(2027, 1, 1, 0, 0, 0)),
    ],
)
def test_calendar_periods_follow_the_time_zone(period: str, before: datetime, after: datetime) -> None:
    zone = ZoneInfo("America/New_York")
    clock = Clock(before.replace(tzinfo=zone).timestamp())
    policy = BudgetPolicy(default_limit=1.0, period=period, timezone=zone, clock=clock)
    settle(policy, "a", Task())
    clock.now -= 1800 if period == "hour" else 3600
    assert policy.spent("a") == 1.0  # same period, earlier in it
    clock.now = after.replace(tzinfo=zone).timestamp() - 0.001
    assert policy.spent("a") == 1.0
    clock.now = after.replace(tzinfo=zone).timestamp()
    assert policy.spent("a") == 0.0


def test_rejections_are_alerts_too() -> None:
    policy = BudgetPolicy(default_limit=1.0)
    with pytest.raises(BudgetExceededError):
        policy.admit("a", Task(weight=2.0))
    with pytest.raises(BudgetExceededError):
        policy.check("a", task_cost=3.0)
    assert policy.alerts == [
        {"agent_id": "a", "current": 0.0, "task_cost": 2.0, "limit": 1.0, "action": "reject"},
        {"agent_id": "a", "current": 0.0, "task_cost": 3.0, "limit": 1.0, "action": "reject"},
    ]


def test_check_takes_task_cost_by_keyword_as_in_loco() -> None:
    policy = BudgetPolicy(default_limit=10.0, on_exceeded="alert")
    assert policy.check("a", task_cost=10.0) is True
    assert policy.check("a", task_cost=Task(weight=11.0)) is False
    assert policy.alerts[-1]["task_cost"] == 11.0
    with pytest.raises(ConfigurationError, match="task_cost must be a finite number"):
        policy.check("a", task_cost=-1.0)


def test_record_adds_the_estimate_to_spend() -> None:
    policy = BudgetPolicy(default_limit=10.0)
    policy.record("a", Task(weight=2.0))
    policy.record("a", Task(weight=2.0, cost=0.5))
    assert policy.spent("a") == 2.5
    assert policy.reserved("a") == 0.0


def test_settling_twice_changes_nothing() -> None:
    policy = BudgetPolicy(default_limit=10.0)
    task = Task(weight=4.0)
    decision = policy.admit("a", task)
    policy.settle("a", task, decision, Outcome(Status.SUCCESS, cost=3.0))
    policy.settle("a", task, decision, Outcome(Status.SUCCESS, cost=3.0))
    policy.rollback("a", task, decision)
    assert (policy.spent("a"), policy.reserved("a")) == (3.0, 0.0)


def test_an_expired_lease_is_given_back_and_its_late_settle_still_counts() -> None:
    clock = Clock(0.0)
    policy = BudgetPolicy(default_limit=10.0, clock=clock, lease=30.0)
    task = Task(weight=6.0)
    held = policy.admit("a", task)  # its holder dies before it settles
    with pytest.raises(BudgetExceededError):
        policy.admit("a", task)
    clock.now = 30.0
    assert policy.reserved("a") == 0.0
    late = policy.admit("a", task)
    policy.settle("a", task, held, Outcome(Status.SUCCESS, cost=2.0))  # it was alive after all
    policy.settle("a", task, held, Outcome(Status.SUCCESS, cost=2.0))
    policy.settle("a", task, late, Outcome(Status.SUCCESS, cost=6.0))
    assert (policy.spent("a"), policy.reserved("a")) == (8.0, 0.0)


def test_lease_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="lease must be a finite number of seconds > 0"):
        BudgetPolicy(lease=0)
