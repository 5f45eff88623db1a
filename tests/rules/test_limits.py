"""Budgets and rate limits in policy files: the semantics of BudgetPolicy and RatePolicy, on every store."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from proctor import BudgetExceededError, PolicyViolationError, current_run, runlog
from proctor.errors import PolicyConfigError
from proctor.rules import parse_policies
from proctor.runs import RunLog, recording_into
from proctor.runs.log import decode
from proctor.stores import Store
from tests.utils import default_store

__all__ = ["default_store"]

_names = itertools.count()


@pytest.fixture(autouse=True)
def _on_each_store(default_store: Store) -> Store:
    return default_store


def fresh() -> str:
    """A service and agent of its own: limits are kept per key in the store."""
    return f"limits-{next(_names)}"


def budget(**fields: Any) -> dict[str, Any]:
    return {"budgets": [{"id": "spend", "limit": 1.0, **fields}]}


def test_reject_mode_refuses_the_call_that_would_go_over() -> None:
    name = fresh()
    ran = []

    @runlog(service=name, cost=0.3, policies=budget(), record=False)
    def paid(n: int) -> int:
        ran.append(n)
        return n

    for n in range(3):
        paid(n)
    with pytest.raises(BudgetExceededError, match="policy 'spend' rejected agent"):
        paid(3)  # 0.9 + 0.3 > 1.0
    assert ran == [0, 1, 2]


def test_actual_cost_replaces_the_estimate_when_the_call_ends() -> None:
    name = fresh()

    @runlog(service=name, cost=0.5, policies=budget(), record=False)
    def cheaper() -> None:
        current_run().add_cost(0.1)

    for _ in range(6):
        cheaper()  # each reserves 0.5 at the check and settles to 0.1; the 6th: 0.5 + 0.5 fits
    with pytest.raises(BudgetExceededError):
        cheaper()  # 0.6 + 0.5 > 1.0


def test_per_key_limits_and_per_tool_ledgers() -> None:
    name = fresh()
    limits = {"budgets": [{"id": "tools", "per": "tool", "limits": {"search": 0.5}}]}

    @runlog(service=name, name="search", cost=0.3, policies=limits, record=False)
    def search() -> None: ...

    @runlog(service=name, name="fetch", cost=0.3, policies=limits, record=False)
    def fetch() -> None: ...

    search()
    with pytest.raises(BudgetExceededError, match="'search'"):
        search()
    for _ in range(5):
        fetch()  # a tool without a limit of its own is not limited


def test_alert_mode_runs_the_call_and_logs(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    name = fresh()

    @runlog(service=name, cost=0.6, policies=budget(mode="alert"))
    def paid() -> str:
        return "done"

    @runlog(service=name)
    def agent() -> list[str]:
        return [paid(), paid()]  # 0.6 + 0.6 > 1.0: the second runs too, with a warning

    log = RunLog(tmp_path / "runs.db")
    with recording_into(log), caplog.at_level(logging.WARNING, logger="proctor.policy"):
        assert agent() == ["done", "done"]
    log.flush()
    assert any("budget alert" in record.message for record in caplog.records)
    [run] = log.runs()
    first, second = log.actions(run.run_id)
    assert decode(first.decisions) in (None, [])
    assert decode(second.decisions) == [{"phase": "limit", "rule": "spend", "action": "log", "decided": True}]


def test_downgrade_mode_changes_the_arguments(tmp_path: Path) -> None:
    name = fresh()
    spec = budget(mode="downgrade", set={"args.model": "small"})

    @runlog(service=name, cost=0.6, policies=spec)
    def complete(prompt: str, model: str = "large") -> str:
        return model

    @runlog(service=name)
    def agent() -> list[str]:
        return [complete("hi"), complete("hi")]  # the second is over the limit: on the cheaper model

    log = RunLog(tmp_path / "runs.db")
    with recording_into(log):
        assert agent() == ["large", "small"]
    log.flush()
    [run] = log.runs()
    second = log.actions(run.run_id)[1]
    assert decode(second.args) == {"prompt": "hi", "model": "small"}
    assert decode(second.requested_args) == {"prompt": "hi", "model": "large"}
    assert decode(second.decisions) == [
        {"phase": "limit", "rule": "spend", "action": "modify", "decided": True}
    ]


def test_rate_limit_refuses_past_its_burst_and_a_budget_refusal_gives_the_token_back() -> None:
    name = fresh()
    spec = {
        "rate_limits": [{"id": "calls", "limit": 3, "period": "hour"}],
        "budgets": [{"id": "spend", "limit": 0.5}],
    }
    costs = iter([0.2, 0.2, 0.9, 0.1, 0.1])

    @runlog(service=name, cost=lambda: next(costs), policies=spec, record=False)
    def call() -> None: ...

    call()
    call()
    with pytest.raises(BudgetExceededError):
        call()  # 0.4 + 0.9 > 0.5: refused by the budget, after the rate limit took a token ...
    call()  # ... which it gave back: this is the third call the rate limit counts
    with pytest.raises(PolicyViolationError, match="Rate limit exceeded"):
        call()


def test_rules_refusing_a_call_reserve_nothing() -> None:
    name = fresh()
    spec = {**budget(), "policies": [{"id": "no-big", "when": {"args.n": {"gt": 9}}, "action": "deny"}]}

    @runlog(service=name, cost=0.4, policies=spec, on_deny="return", record=False)
    def call(n: int) -> int:
        return n

    for _ in range(5):
        call(10)  # denied by the rule: no budget is reserved
    assert call(1) == 1
    assert call(2) == 2
    with pytest.raises(BudgetExceededError):
        call(3)


def test_concurrent_calls_never_spend_past_the_limit() -> None:
    name = fresh()
    release = threading.Event()
    ran: list[int] = []

    @runlog(service=name, cost=0.1, policies=budget(), record=False)
    def paid(n: int) -> None:
        ran.append(n)
        release.wait(30)

    def one(n: int) -> bool:
        try:
            paid(n)
        except BudgetExceededError:
            return False
        return True

    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(one, n) for n in range(30)]
        while len(ran) + sum(f.done() for f in futures) < 30:
            release.wait(0.01)
        release.set()
        passed = sum(f.result() for f in futures)
    assert passed == 10  # 10 x 0.1 fill 1.0 exactly, whatever the interleaving


def test_async_and_generator_functions_pass_the_limits_too() -> None:
    name = fresh()

    @runlog(service=name, cost=0.4, policies=budget(), record=False)
    async def fetch() -> str:
        return "ok"

    @runlog(service=name, cost=0.4, policies=budget(), record=False)
    def stream() -> Iterator[int]:
        yield 1
        yield 2

    assert asyncio.run(fetch()) == "ok"
    assert list(stream()) == [1, 2]
    with pytest.raises(BudgetExceededError):
        asyncio.run(fetch())
    with pytest.raises(BudgetExceededError):
        list(stream())


def test_a_reloaded_file_keeps_the_spend(tmp_path: Path) -> None:
    name = fresh()
    path = tmp_path / "limits.yaml"
    path.write_text("budgets:\n  - {id: spend, limit: 1.0}\n")

    @runlog(service=name, cost=0.4, policies=path, record=False)
    def paid() -> None: ...

    paid()
    paid()
    source = paid.__proctor_guard__.source  # type: ignore[attr-defined]
    path.write_text("budgets:\n  - {id: spend, limit: 1.1}\n")
    source._next_check = 0.0  # check the file at the next call
    with pytest.raises(BudgetExceededError, match=r"limit of 1\.1"):
        paid()  # 0.8 spent before the reload still counts: 0.8 + 0.4 > 1.1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("budgets:\n  - {id: a}\n", "2:5: a budget needs limit, limits or both"),
        ("budgets:\n  - {id: a, limit: 1, period: week}\n", "2:31: period: the period is one of hour, day"),
        ("budgets:\n  - {id: a, limit: 1, mode: downgrade}\n", "2:5: a downgrade budget needs set, redact"),
        (
            "budgets:\n  - {id: a, limit: 1, set: {args.m: x}}\n",
            "2:5: set, redact and clamp belong to downgrade",
        ),
        ("budgets:\n  - {id: a, limit: 1, per: user}\n", "2:28: per: expected one of 'agent', 'service'"),
        ("rate_limits:\n  - {id: a, limit: 0}\n", "2:20: limit: Input should be greater than 0"),
        (
            "budgets:\n  - {id: a, limit: 1}\nrate_limits:\n  - {id: a, limit: 1}\n",
            "4:10: duplicate limit id 'a' (also budget #1)",
        ),
    ],
)
def test_problems_are_reported_where_they_are(text: str, problem: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_policies(text, "limits.yaml")
    messages = [f"{location}: {message}" for location, message in caught.value.problems]
    assert any(message.startswith(f"limits.yaml:{problem}") for message in messages), messages


def test_a_call_that_raised_spends_what_it_reported_as_cost_today_counts_it() -> None:
    name = fresh()

    @runlog(service=name, cost=0.6, policies=budget(), record=False)
    def flaky(charge: float) -> None:
        if charge:
            current_run().add_cost(charge)
        raise ValueError("upstream failed")

    @runlog(service=name, cost=0.6, policies=budget(), record=False)
    def paid() -> str:
        return "ok"

    with pytest.raises(ValueError, match="upstream"):
        flaky(0.0)  # failed before spending: the budget keeps nothing of its estimate
    with pytest.raises(ValueError, match="upstream"):
        flaky(0.3)  # failed having reported 0.3: that is what it spent
    assert paid() == "ok"  # 0.3 + 0.6 fits under 1.0
    with pytest.raises(BudgetExceededError, match=r"bring spend to 1\.5"):
        paid()  # 0.9 + 0.6
