"""Async callers waiting for approval: coroutines, not threads, so a thousand of them wait at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    ApprovalChannel,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalStore,
    CallbackChannel,
    DurableChannel,
    PollingChannel,
    RuleViolationError,
    runlog,
)

WAITERS = 1000
TIMEOUT = 5.0  # each call's own approval timeout, in seconds
SLACK = 1.0  # how late past its timeout a call may end


def policy(timeout: float) -> dict[str, Any]:
    return {
        "policies": [
            {
                "id": "big_refund",
                "when": {"args.amount": {"gt": 100}},
                "action": "require_approval",
                "timeout": timeout,
            }
        ]
    }


async def to_thread_delay() -> float:
    """How long an unrelated ``asyncio.to_thread`` takes to run a no-op, in seconds."""
    began = time.monotonic()
    await asyncio.to_thread(lambda: None)
    return time.monotonic() - began


async def crowd(
    channel: ApprovalChannel,
    visible: Callable[[], int],
    decide: Callable[[int], None],
) -> tuple[list[tuple[int, float, Any]], float]:
    """``WAITERS`` calls waiting on ``channel``; the even ones are approved once all are visible.

    Returns each call's (number, seconds it took, result or error) and the worst delay of an
    unrelated ``to_thread`` while they waited.
    """

    @runlog(service="support", agent="refund-bot", policies=policy(TIMEOUT), approvals=channel, record=False)
    async def refund(amount: int) -> str:
        return f"refunded {amount}"

    async def one(number: int) -> tuple[int, float, Any]:
        began = time.monotonic()
        try:
            result: Any = await refund(101 + number)
        except RuleViolationError as exc:
            result = exc
        return number, time.monotonic() - began, result

    tasks = [asyncio.create_task(one(number)) for number in range(WAITERS)]
    began = time.monotonic()
    worst = 0.0
    while (seen := await asyncio.to_thread(visible)) < WAITERS:
        # Every request is visible well before the first call's timeout.
        assert time.monotonic() - began < TIMEOUT - 0.5, f"only {seen} of {WAITERS} requests are visible"
        worst = max(worst, await to_thread_delay())
        await asyncio.sleep(0.05)
    for number in range(0, WAITERS, 2):
        await asyncio.to_thread(decide, number)
    while not all(task.done() for task in tasks):
        worst = max(worst, await to_thread_delay())
        await asyncio.sleep(0.05)
    return [task.result() for task in tasks], worst


def check(results: list[tuple[int, float, Any]], worst: float) -> None:
    assert worst < 0.5, f"an unrelated to_thread waited {worst:.2f} s"
    for number, took, result in results:
        assert took < TIMEOUT + SLACK, f"call {number} took {took:.2f} s with a timeout of {TIMEOUT} s"
        if number % 2 == 0:
            assert result == f"refunded {101 + number}"
        else:
            assert isinstance(result, RuleViolationError)
            assert "approval timed out" in str(result)


def test_a_thousand_coroutines_wait_on_the_durable_queue_at_once(db: Path) -> None:
    # people decide through a connection of their own
    with ApprovalStore(db) as store, ApprovalStore(db) as deciding:
        ids: dict[int, str] = {}

        def visible() -> int:
            pending = deciding.list(status="pending", limit=None)
            for record in pending:
                ids[record.args["amount"] - 101] = record.id
            return len(pending)

        def decide(number: int) -> None:
            deciding.decide(ids[number], "alice", True)

        results, worst = asyncio.run(crowd(DurableChannel(store), visible, decide))
        check(results, worst)
        statuses = {record.status for record in deciding.list(limit=None)}
        assert statuses == {"approved", "expired"}
        assert len(deciding.list(status="expired", limit=None)) == WAITERS // 2


class Desk:
    """Decisions people make at an in-memory desk, for the user-written channels below."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.asked: dict[int, ApprovalRequest] = {}
        self.answers: dict[int, ApprovalDecision] = {}
        self.events: dict[int, threading.Event] = {}

    def ask(self, request: ApprovalRequest) -> int:
        number: int = request.args["amount"] - 101
        with self.lock:
            self.asked[number] = request
            self.events[number] = threading.Event()
        return number

    def visible(self) -> int:
        with self.lock:
            return len(self.asked)

    def decide(self, number: int) -> None:
        with self.lock:
            self.answers[number] = ApprovalDecision(True, "alice")
            self.events[number].set()


def test_a_blocking_user_channel_waits_without_the_default_executor() -> None:
    desk = Desk()

    def handler(request: ApprovalRequest) -> ApprovalDecision | None:
        number = desk.ask(request)
        if not desk.events[number].wait(request.timeout):
            return None
        return desk.answers[number]

    results, worst = asyncio.run(crowd(CallbackChannel(handler), desk.visible, desk.decide))
    check(results, worst)


class DeskChannel(PollingChannel):
    """A user's channel in the polling style: it asks at once and is asked for answers now and then."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.threads = 0

    def submit(self, request: ApprovalRequest) -> int:
        self.threads = max(self.threads, threading.active_count())
        return self.desk.ask(request)

    def poll(self, tickets: Collection[Any]) -> Mapping[Any, ApprovalDecision | None]:
        self.threads = max(self.threads, threading.active_count())
        with self.desk.lock:
            return {ticket: self.desk.answers[ticket] for ticket in tickets if ticket in self.desk.answers}


def test_a_polling_user_channel_holds_no_thread_while_it_waits() -> None:
    desk = Desk()
    channel = DeskChannel(desk)
    before = threading.active_count()
    results, worst = asyncio.run(crowd(channel, desk.visible, desk.decide))
    check(results, worst)
    # One worker thread for the channel's calls, plus the loop's default executor's few.
    assert channel.threads <= before + 8


def test_a_polling_channel_serves_sync_callers_too() -> None:
    desk = Desk()
    channel = DeskChannel(desk)

    @runlog(service="support", policies=policy(5.0), approvals=channel, record=False)
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    def approve_soon() -> None:
        while not desk.visible():
            time.sleep(0.01)
        desk.decide(0)

    threading.Thread(target=approve_soon, daemon=True).start()
    assert refund(101) == "refunded 101"
    with pytest.raises(RuleViolationError, match="approval timed out"):
        runlog(service="support", policies=policy(0.2), approvals=DeskChannel(Desk()), record=False)(
            lambda amount: amount
        )(102)
