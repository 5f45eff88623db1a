"""cost_today and cost_run count the estimates of calls still running: concurrent calls see each other."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor import RuleViolationError, RunTerminated, current_run, runlog
from proctor.guard._ledgers import daily_spend
from proctor.runs import recording_into

_services = itertools.count()


def fresh_service() -> str:
    """A service of its own: cost_today is kept per service and agent for the whole process."""
    return f"spend-{next(_services)}"


def policy(fact: str, limit: float) -> dict[str, Any]:
    return {"policies": [{"id": "cap", "when": {fact: {"gt": limit}}, "action": "deny"}]}


@pytest.mark.parametrize(("fact", "allowed"), [("cost_today", 4), ("cost_today_with_call", 3)])
def test_twenty_threads_at_once_spend_what_one_after_another_would(fact: str, allowed: int) -> None:
    service = fresh_service()
    release = threading.Event()
    lock = threading.Lock()
    seen = {"inside": 0, "denied": 0}

    @runlog(service=service, cost=0.3, policies=policy(fact, 1.0), record=False)
    def paid() -> None:
        with lock:
            seen["inside"] += 1
        release.wait(30)  # held until every call has been decided

    def one() -> None:
        try:
            paid()
        except RuleViolationError:
            with lock:
                seen["denied"] += 1

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(one) for _ in range(20)]
        while sum(seen.values()) < 20:
            release.wait(0.01)
        release.set()
        for future in futures:
            future.result()
    # Sequentially, 0.3 a call: 0, 0.3, 0.6 and 0.9 pass `cost_today > 1.0`; with the call's own
    # estimate, 0.3, 0.6 and 0.9 pass and 1.2 does not.
    assert seen == {"inside": allowed, "denied": 20 - allowed}
    assert daily_spend().spent(f"{service}/{service}") == pytest.approx(0.3 * allowed)


@pytest.mark.parametrize(("fact", "allowed"), [("cost_today", 4), ("cost_today_with_call", 3)])
def test_twenty_tasks_at_once_spend_what_one_after_another_would(fact: str, allowed: int) -> None:
    service = fresh_service()

    @runlog(service=service, cost=0.3, policies=policy(fact, 1.0), record=False)
    async def paid(release: asyncio.Event) -> str:
        await release.wait()
        return "ran"

    async def crowd() -> list[str]:
        release = asyncio.Event()

        async def one() -> str:
            try:
                return await paid(release)
            except RuleViolationError:
                return "denied"

        tasks = [asyncio.create_task(one()) for _ in range(20)]
        await asyncio.sleep(0.1)  # every call has been decided: the allowed ones wait inside
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(crowd())
    assert results.count("ran") == allowed
    assert daily_spend().spent(f"{service}/{service}") == pytest.approx(0.3 * allowed)


def test_a_call_that_fails_gives_its_estimate_back_and_a_finished_one_counts_its_actual() -> None:
    service = fresh_service()
    key = f"{service}/{service}"

    @runlog(service=service, cost=0.5, record=False)
    def failing() -> None:
        assert daily_spend().spent(key) == pytest.approx(0.5)  # held while it runs
        raise ValueError("no")

    @runlog(service=service, cost=0.5, record=False)
    def cheaper() -> str:
        current_run().add_cost(0.2)
        return "ok"

    with pytest.raises(ValueError, match="no"):
        failing()
    assert daily_spend().spent(key) == 0.0
    assert cheaper() == "ok"
    assert daily_spend().spent(key) == pytest.approx(0.2)


def test_cost_run_counts_the_runs_calls_still_running() -> None:
    service = fresh_service()

    @runlog(service=service, cost=0.4, policies=policy("cost_run_with_call", 1.0))
    async def step(release: asyncio.Event) -> str:
        await release.wait()
        return "ran"

    @runlog(service=service)
    async def job() -> list[str]:
        release = asyncio.Event()

        async def one() -> str:
            try:
                return await step(release)
            except RuleViolationError:
                return "denied"

        tasks = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.1)
        release.set()
        return list(await asyncio.gather(*tasks))

    with recording_into(None):
        results = asyncio.run(job())
    assert sorted(results) == ["denied", "denied", "denied", "ran", "ran"]  # 0.4 + 0.4; a third: 1.2


@settings(max_examples=30, deadline=None)
@given(
    estimates=st.lists(st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0]), min_size=1, max_size=16),
    limit=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_a_hard_cap_is_never_passed_by_concurrent_calls(estimates: list[float], limit: float) -> None:
    service = fresh_service()
    release = threading.Event()

    @runlog(service=service, cost=lambda amount: amount, policies=policy("cost_today_with_call", limit))
    def paid(amount: float) -> float:
        release.wait(30)
        return amount

    def one(amount: float) -> float:
        try:
            return paid(amount)
        except RuleViolationError:
            return 0.0

    with recording_into(None), ThreadPoolExecutor(len(estimates)) as pool:
        futures = [pool.submit(one, amount) for amount in estimates]
        threading.Event().wait(0.05)
        release.set()
        spent = sum(future.result() for future in futures)
    assert spent <= limit + 1e-9
    assert daily_spend().spent(f"{service}/{service}") == pytest.approx(spent)


def test_what_a_failing_call_reported_counts_once() -> None:
    service = fresh_service()
    key = f"{service}/{service}"

    @runlog(service=service, record=False)  # no estimate: only what it reports
    def paid_then_failed() -> None:
        current_run().add_cost(0.25)
        raise ValueError("upstream broke after charging")

    stop_on_output = {"policies": [{"id": "stop", "when": {"output": "bad"}, "action": "terminate"}]}

    @runlog(service=service, cost=0.5, policies=stop_on_output)
    def answered() -> str:
        current_run().add_cost(0.125)
        return "bad"

    with pytest.raises(ValueError, match="upstream broke"):
        paid_then_failed()
    assert daily_spend().spent(key) == pytest.approx(0.25)
    with recording_into(None), pytest.raises(RunTerminated):
        answered()  # its spend is counted when it returns, not again when the rule on its output stops it
    assert daily_spend().spent(key) == pytest.approx(0.375)
    with pytest.raises(RunTerminated):
        answered()  # recorded, the same
    assert daily_spend().spent(key) == pytest.approx(0.5)


_RESTARTED = """
from proctor import RuleViolationError, runlog

@runlog(service="restart", cost=0.3, policies={"policies": [
    {"id": "cap", "when": {"cost_today_with_call": {"gt": 1.0}}, "action": "deny"}]})
def paid() -> None: ...

ran = 0
for _ in range(4):
    try:
        paid()
        ran += 1
    except RuleViolationError:
        pass
print(ran)
"""


def test_today_s_spend_outlives_the_process_and_is_shared_by_the_next(tmp_path: Path) -> None:
    env = {**os.environ, "PROCTOR_DB": str(tmp_path / "runs.db")}
    env.pop("PROCTOR_STORE", None)
    ran = [
        subprocess.run(
            [sys.executable, "-c", _RESTARTED], env=env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    # The first process passes 0.3, 0.6 and 0.9 under the cap of 1.0; the second, started after
    # it ended, finds 0.9 spent today in the proctor database and passes none.
    assert [int(each.stdout) for each in ran] == [3, 0]
