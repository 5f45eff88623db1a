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
PATIENT = 60.0  # the approval timeout of the even calls, which are approved once every one of them asks
IMPATIENT = 3.0  # the approval timeout of the odd calls, which nobody decides


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


CROWD = {
    "policies": [
        {
            "id": "big_refund",
            "when": {"args.amount": {"gt": 100}, "args.patient": True},
            "action": "require_approval",
            "timeout": PATIENT,
        },
        {
            "id": "big_refund_now",
            "when": {"args.amount": {"gt": 100}, "args.patient": False},
            "action": "require_approval",
            "timeout": IMPATIENT,
        },
    ]
}


async def crowd(
    channel: ApprovalChannel,
    visible: Callable[[], int],
    decide: Callable[[int], None],
) -> list[tuple[int, float, Any]]:
    """``WAITERS`` calls waiting on ``channel`` at once: the even ones are approved once all of them have
    asked (``visible`` counts them); nobody decides the odd ones, which time out.

    Returns each call's (number, seconds it took, result or error). While every even call waits,
    undecided, an unrelated ``asyncio.to_thread`` must still run: waits that each held a thread of the
    loop's default executor would keep it waiting for the even calls' timeout.
    """

    @runlog(service="support", agent="refund-bot", policies=CROWD, approvals=channel, record=False)
    async def refund(amount: int, patient: bool) -> str:
        return f"refunded {amount}"

    async def one(number: int) -> tuple[int, float, Any]:
        began = time.monotonic()
        try:
            result: Any = await refund(101 + number, patient=number % 2 == 0)
        except RuleViolationError as exc:
            result = exc
        return number, time.monotonic() - began, result

    tasks = [asyncio.create_task(one(number)) for number in range(WAITERS)]
    while await asyncio.to_thread(visible) < WAITERS // 2:
        await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.to_thread(lambda: None), timeout=PATIENT / 3)
    assert not any(task.done() for task in tasks[::2])
    for number in range(0, WAITERS, 2):
        await asyncio.to_thread(decide, number)
    return list(await asyncio.gather(*tasks))


def check(results: list[tuple[int, float, Any]]) -> None:
    """Even calls ran once approved; odd ones ended at their own timeout, not before nor at the even ones'."""
    for number, took, result in results:
        if number % 2 == 0:
            assert result == f"refunded {101 + number}"
        else:
            assert isinstance(result, RuleViolationError)
            assert "approval timed out" in str(result)
            assert IMPATIENT <= took < PATIENT, (
                f"call {number} took {took:.2f} s with a timeout of {IMPATIENT} s"
            )


def test_a_thousand_coroutines_wait_on_the_durable_queue_at_once(db: Path) -> None:
    # people decide through a connection of their own
    with ApprovalStore(db) as store, ApprovalStore(db) as deciding:
        ids: dict[int, str] = {}

        def visible() -> int:
            for record in deciding.list(limit=None):
                if record.args["patient"]:
                    ids[record.args["amount"] - 101] = record.id
            return len(ids)

        def decide(number: int) -> None:
            deciding.decide(ids[number], "alice", True)

        check(asyncio.run(crowd(DurableChannel(store), visible, decide)))
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
        """How many of the calls that wait to be approved have asked."""
        with self.lock:
            return sum(request.args.get("patient", True) for request in self.asked.values())

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

    check(asyncio.run(crowd(CallbackChannel(handler), desk.visible, desk.decide)))


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
    check(asyncio.run(crowd(channel, desk.visible, desk.decide)))
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
