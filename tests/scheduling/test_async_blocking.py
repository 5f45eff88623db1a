"""AsyncLOCOScheduler with policies that may block: their store calls leave the event loop free."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    AsyncLOCOScheduler,
    BudgetPolicy,
    Decision,
    MemoryStore,
    Outcome,
    Policy,
    PolicyEnforcer,
    PolicyViolationError,
    RatePolicy,
    SharedResource,
    SQLiteStore,
    Task,
)

TICKS = 20
"""Heartbeats that must run while a store call waits: none can while the loop is blocked."""


def make(capacity: int = 1, **kwargs: object) -> AsyncLOCOScheduler:
    return AsyncLOCOScheduler([], SharedResource("api", capacity=capacity), **kwargs)  # type: ignore[arg-type]


async def beat_while_pending(pending: asyncio.Future[Any]) -> int:
    """Tick TICKS times on the loop, checking each time that ``pending`` is still waiting."""
    ticks = 0
    while ticks < TICKS:
        await asyncio.sleep(0.001)
        assert not pending.done(), f"the store call ended (or the loop stalled) after {ticks} heartbeats"
        ticks += 1
    return ticks


def test_a_busy_sqlite_store_leaves_the_loop_running_while_admitting_and_settling(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    budget = BudgetPolicy(default_limit=10.0, store=SQLiteStore(path, busy_timeout=10.0))
    rate = RatePolicy(default_limit=100.0, store=SQLiteStore(path, busy_timeout=10.0))
    scheduler = make(enforcer=PolicyEnforcer([rate]), budget=budget)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, in effect

    async def main() -> None:
        other.execute("BEGIN IMMEDIATE")
        admitting = asyncio.ensure_future(scheduler.acquire_start("a", Task(cost=1.0)))
        assert await beat_while_pending(admitting) == TICKS
        other.execute("COMMIT")
        grant = await admitting
        assert budget.reserved("a") == 1.0

        other.execute("BEGIN IMMEDIATE")
        settling = asyncio.ensure_future(scheduler.release_handle(grant))
        assert await beat_while_pending(settling) == TICKS
        other.execute("COMMIT")
        await settling
        assert (budget.spent("a"), budget.reserved("a")) == (1.0, 0.0)

        async def work() -> None:
            async with scheduler.acquire("a", Task(cost=2.0)):
                other.execute("BEGIN IMMEDIATE")  # the block's settle will find the store busy

        working = asyncio.ensure_future(work())
        assert await beat_while_pending(working) == TICKS
        other.execute("COMMIT")
        await working
        assert budget.spent("a") == 3.0  # settled before the block was left

    try:
        asyncio.run(main())
    finally:
        other.close()


class Recorder(Policy):
    """Records which thread each call ran in, and the order of the calls."""

    def __init__(self, name: str, blocking: bool) -> None:
        self.name = name
        self.blocking = blocking
        self.calls: list[tuple[str, str, int]] = []  # (call, agent, thread)

    def admit(self, agent_id: str, task: Task) -> Decision:
        self.calls.append(("admit", agent_id, threading.get_ident()))
        return Decision(policy=self.name, reservation=agent_id)

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        self.calls.append(("settle", agent_id, threading.get_ident()))


def test_the_enforcer_blocks_when_one_of_its_policies_does(tmp_path: Path) -> None:
    assert not MemoryStore.blocking
    assert SQLiteStore.blocking
    in_memory = BudgetPolicy(store=MemoryStore())
    on_file = RatePolicy(store=SQLiteStore(tmp_path / "store.db"))
    assert not in_memory.blocking
    assert on_file.blocking
    enforcer = PolicyEnforcer([in_memory])
    assert not enforcer.blocking
    enforcer.add_policy(on_file)
    assert enforcer.blocking
    scheduler = make(enforcer=enforcer, budget=BudgetPolicy())
    assert scheduler.enforcer is not None
    assert scheduler.enforcer.blocking
    enforcer.remove_policy("rate")
    assert not enforcer.blocking


def test_blocking_policies_run_in_one_worker_thread_in_the_order_inline_ones_run() -> None:
    blocking, inline = Recorder("blocking", True), Recorder("inline", False)
    loop_thread = threading.get_ident()

    async def main(policy: Policy) -> None:
        scheduler = make(capacity=3, enforcer=PolicyEnforcer([policy]))

        async def work(agent_id: str) -> None:
            async with scheduler.acquire(agent_id):
                await asyncio.sleep(0)

        await asyncio.gather(*(work(agent_id) for agent_id in "abcdefg"))

    asyncio.run(main(inline))
    asyncio.run(main(blocking))
    assert {thread for _, _, thread in inline.calls} == {loop_thread}
    workers = {thread for _, _, thread in blocking.calls}
    assert len(workers) == 1
    assert loop_thread not in workers
    for policy in (inline, blocking):
        assert [agent for call, agent, _ in policy.calls if call == "admit"] == list("abcdefg")
        assert [agent for call, agent, _ in policy.calls if call == "settle"] == list("abcdefg")
        # As inline, the holder whose slot a grant took has settled before that grant is admitted.
        admits = [i for i, (call, _, _) in enumerate(policy.calls) if call == "admit"]
        settles = [i for i, (call, _, _) in enumerate(policy.calls) if call == "settle"]
        assert all(settles[k] < admits[k + 3] for k in range(len(admits) - 3))


class Gated(Policy):
    """A blocking policy whose admit waits for ``gate``; it records rollbacks and settles."""

    name = "gated"
    blocking = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.rolled_back = threading.Event()
        self.settled = 0

    def admit(self, agent_id: str, task: Task) -> Decision:
        self.entered.set()
        self.gate.wait()
        return Decision(policy=self.name, reservation=1)

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        self.rolled_back.set()

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        self.settled += 1


def test_a_caller_cancelled_while_admitted_off_the_loop_gives_back_the_slot_task_and_reservation() -> None:
    gated = Gated()
    queued = Task(task_id="queued")

    async def main() -> None:
        scheduler = make(enforcer=PolicyEnforcer([gated]))
        await scheduler.submit_task("a", queued)
        caller = asyncio.ensure_future(scheduler.acquire_start("a"))
        assert await asyncio.to_thread(gated.entered.wait, 10)
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        agent = scheduler.get_agent("a")
        assert scheduler.resource.holder_count == 0
        assert agent.stats.cancelled == 1
        assert agent.stats.rejected == 0
        assert agent.tasks == [queued]  # back on the queue, unserved
        gated.gate.set()
        assert await asyncio.to_thread(gated.rolled_back.wait, 10)  # the admission, once made, is withdrawn
        grant = await scheduler.acquire_start("a")  # the queued task is served by the next caller
        assert grant.task is queued
        await scheduler.release_handle(grant)
        assert gated.settled == 1

    asyncio.run(main())


def test_a_rejection_off_the_loop_raises_in_the_caller_and_frees_the_slot() -> None:
    class Refuser(Policy):
        name = "refuser"
        blocking = True

        def check(self, agent_id: str, task: Task) -> bool:
            return agent_id != "refused"

    async def main() -> None:
        scheduler = make(enforcer=PolicyEnforcer([Refuser()]))
        with pytest.raises(PolicyViolationError, match="refuser"):
            await scheduler.acquire_start("refused")
        assert scheduler.resource.holder_count == 0
        assert scheduler.get_agent("refused").stats.rejected == 1
        async with scheduler.acquire("welcome") as grant:
            assert grant.agent_id == "welcome"

    asyncio.run(main())
