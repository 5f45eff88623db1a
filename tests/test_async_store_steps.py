"""An async @runlog call whose limits live in SQLite leaves the event loop free while the store is busy."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import proctor.guard._ledgers
from proctor import BudgetPolicy, RatePolicy, runlog
from proctor.guard._ledgers import daily_spend
from proctor.stores import SQLiteStore, set_store

TICKS = 20
"""Heartbeats that must run while a store step waits: none can while the loop is blocked."""

POLICIES: dict[str, Any] = {
    "policies": [{"id": "cap", "when": {"cost_today_with_call": {"gt": 10.0}}, "action": "deny"}],
    "budgets": [{"id": "spend", "limit": 10.0}],
    "rate_limits": [{"id": "calls", "limit": 100, "period": "hour"}],
}


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, busy_timeout=10.0)
    set_store(store)
    yield path
    set_store(None)
    store.close()


async def beat_while_pending(pending: asyncio.Future[Any]) -> int:
    ticks = 0
    while ticks < TICKS:
        await asyncio.sleep(0.001)
        assert not pending.done(), f"the call went on (or the loop stalled) after {ticks} heartbeats"
        ticks += 1
    return ticks


@pytest.mark.parametrize("recorded", [False, True])
def test_checks_and_settles_wait_for_a_busy_store_off_the_loop(store_file: Path, recorded: bool) -> None:
    @runlog(service="async-stores", cost=1.0, policies=POLICIES, record=recorded)
    async def call(inside: asyncio.Event, release: asyncio.Event) -> str:
        inside.set()
        await release.wait()
        return "done"

    other = sqlite3.connect(store_file, isolation_level=None)  # another process's writer, in effect

    async def main() -> None:
        inside, release = asyncio.Event(), asyncio.Event()
        release.set()
        other.execute("BEGIN IMMEDIATE")  # the store is busy before the call is checked
        checking = asyncio.ensure_future(call(inside, release))
        assert await beat_while_pending(checking) == TICKS
        assert not inside.is_set()  # still being checked
        other.execute("COMMIT")
        assert await checking == "done"

        inside, release = asyncio.Event(), asyncio.Event()
        finishing = asyncio.ensure_future(call(inside, release))
        await inside.wait()  # checked and running: make the store busy before it settles
        other.execute("BEGIN IMMEDIATE")
        release.set()
        assert await beat_while_pending(finishing) == TICKS
        other.execute("COMMIT")
        assert await finishing == "done"

    try:
        asyncio.run(main())
    finally:
        other.close()


@pytest.mark.parametrize("shape", ["coroutine", "async generator"])
def test_a_call_cancelled_while_its_limits_wait_gives_back_what_they_took(
    store_file: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    # No rule of this process reads cost_today here, so the check holds nothing: it is the
    # limits' admit that waits for the store (earlier tests' rules may have read cost_today).
    monkeypatch.setattr(proctor.guard._ledgers, "reads_daily", False)
    limits = {
        "budgets": [{"id": "spend", "limit": 10.0}],
        "rate_limits": [{"id": "calls", "limit": 5, "period": "hour"}],
    }
    ran = []
    guarded = runlog(service="async-cancel", cost=1.0, policies=limits, record=False)

    @guarded
    async def call() -> None:
        ran.append(True)

    @guarded
    async def stream() -> Any:
        ran.append(True)
        yield "item"

    async def first() -> Any:  # an async generator is admitted before its first item
        return await stream().__anext__()

    store = SQLiteStore(store_file)
    budget = BudgetPolicy(store=store, namespace="proctor.budgets:spend")
    rate = RatePolicy({"async-cancel": 5}, 3600.0, store=store, namespace="proctor.rate_limits:calls")
    other = sqlite3.connect(store_file, isolation_level=None)

    def reserved_once() -> bool:
        """Whether a lease of the budget's ledger was taken and then ended (its id is in ``done``)."""
        row = other.execute(
            "SELECT done FROM proctor_ledger WHERE key = 'proctor.budgets:spend:async-cancel' AND id = 0"
        ).fetchone()
        return row is not None and row[0] is not None

    async def main() -> None:
        other.execute("BEGIN IMMEDIATE")  # the limits' admit waits for the store
        admitting = asyncio.ensure_future(call() if shape == "coroutine" else first())
        assert await beat_while_pending(admitting) == TICKS
        admitting.cancel()
        assert await beat_while_pending(admitting) == TICKS  # the admit goes on: the store is still busy
        other.execute("COMMIT")  # the admit completes on its thread; the call is withdrawn, then cancelled
        with pytest.raises(asyncio.CancelledError):
            await admitting

    try:
        asyncio.run(main())
        assert not ran
        assert reserved_once()  # the admit did reserve, after the caller had gone
        assert budget.reserved("async-cancel") == 0.0  # the reservation went back
        assert budget.spent("async-cancel") == 0.0
        assert rate.remaining("async-cancel") == 5.0  # and so did the token
    finally:
        other.close()


def test_a_call_cancelled_while_its_check_waits_keeps_nothing_held(store_file: Path) -> None:
    cap = {"policies": [{"id": "cap", "when": {"cost_today_with_call": {"gt": 10.0}}, "action": "deny"}]}
    ran = []

    @runlog(service="async-check-cancel", cost=1.0, policies=cap, record=False)
    async def call() -> None:
        ran.append(True)

    other = sqlite3.connect(store_file, isolation_level=None)

    async def main() -> None:
        other.execute("BEGIN IMMEDIATE")  # reading today's spend and holding the estimate waits
        checking = asyncio.ensure_future(call())
        assert await beat_while_pending(checking) == TICKS
        checking.cancel()
        other.execute("COMMIT")  # the check ends on its thread (holding 1.0), then the call gives it back
        with pytest.raises(asyncio.CancelledError):
            await checking

    try:
        asyncio.run(main())
    finally:
        other.close()
    assert not ran
    assert daily_spend().spent("async-check-cancel/async-check-cancel") == 0.0


def test_a_call_cancelled_while_its_limits_settle_still_counts_what_it_spent(store_file: Path) -> None:
    policies = {
        "policies": [{"id": "cap", "when": {"cost_today_with_call": {"gt": 100.0}}, "action": "deny"}],
        "budgets": [{"id": "spend", "limit": 100.0}],
    }

    @runlog(service="async-settle-cancel", cost=1.0, policies=policies, record=False)
    async def call(inside: asyncio.Event, release: asyncio.Event) -> str:
        inside.set()
        await release.wait()
        return "done"

    other = sqlite3.connect(store_file, isolation_level=None)
    budget = BudgetPolicy(store=SQLiteStore(store_file), namespace="proctor.budgets:spend")

    async def main() -> None:
        inside, release = asyncio.Event(), asyncio.Event()
        settling = asyncio.ensure_future(call(inside, release))
        await inside.wait()
        other.execute("BEGIN IMMEDIATE")  # the function returns; its settle waits for the store
        release.set()
        assert await beat_while_pending(settling) == TICKS
        settling.cancel()
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await settling

    try:
        asyncio.run(main())
    finally:
        other.close()
    key = "async-settle-cancel"
    assert budget.spent(key) == 1.0  # the limits settled what it cost
    assert daily_spend().spent(f"{key}/{key}") == 1.0  # and so did today's spend


def test_an_async_generators_checks_and_settles_wait_for_a_busy_store_off_the_loop(store_file: Path) -> None:
    @runlog(service="async-stream", cost=1.0, policies=POLICIES, record=False)
    async def stream(release: asyncio.Event) -> Any:
        yield "first"
        await release.wait()
        yield "second"

    other = sqlite3.connect(store_file, isolation_level=None)

    async def drain(items: Any) -> list[str]:
        return [item async for item in items]

    async def main() -> None:
        release = asyncio.Event()
        release.set()
        other.execute("BEGIN IMMEDIATE")  # busy before the generator is checked and admitted
        checking = asyncio.ensure_future(drain(stream(release)))
        assert await beat_while_pending(checking) == TICKS
        other.execute("COMMIT")
        assert await checking == ["first", "second"]

        release = asyncio.Event()
        items = stream(release)
        assert await items.__anext__() == "first"  # checked, admitted, running
        other.execute("BEGIN IMMEDIATE")  # busy before it settles
        release.set()
        finishing = asyncio.ensure_future(drain(items))
        assert await beat_while_pending(finishing) == TICKS
        other.execute("COMMIT")
        assert await finishing == ["second"]

    try:
        asyncio.run(main())
    finally:
        other.close()
    budget = BudgetPolicy(store=SQLiteStore(store_file), namespace="proctor.budgets:spend")
    assert budget.spent("async-stream") == 2.0  # both runs settled, at their estimate
    assert budget.reserved("async-stream") == 0.0
