"""Async approval waits at scale: 1,000 coroutines waiting on the durable queue at once.

Run it with::

    .venv/bin/python bench/approvals.py              # about 15 s
    .venv/bin/python bench/approvals.py --waiters 200 --timeout 2

Each waiter is a call of an ``async`` function decorated with ``@runlog`` under a
``require_approval`` rule with its own ``timeout``, waiting on the default
``DurableChannel`` (an SQLite file in a temporary folder). Once every request is
in the database, half of them are approved by a second connection, as a person
deciding from another process would; the other half run into their timeout.
While they wait, the script keeps timing an unrelated ``asyncio.to_thread`` of a
no-op, the call that a blocked default executor delays (DNS lookups take the same
path).

For comparison, the same crowd (fewer waiters: each holds a thread) waits the way
proctor waited before issue 10: ``asyncio.to_thread(channel.request, ...)`` per
call, in the loop's default executor.

The table gives: when the last request became visible to approvers; how long an
approved call took from its decision to its return; how far past its own timeout
an unanswered call ended; and the worst delay of the unrelated ``to_thread``, while the
calls start and write their requests (a burst of work on the event loop and the channel's
worker thread) and while they wait.
The targets (issue 10, item 1): every request visible at once (well before the
first timeout), each call ends within its own timeout plus 1 s, and the unrelated
``to_thread`` is not delayed (under 0.1 s). The exit status is 0 whatever the
figures: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from _report import Target, fmt, machine_lines, positive, targets_table
from proctor import (
    ApprovalChannel,
    ApprovalDecision,
    ApprovalError,
    ApprovalRequest,
    ApprovalStore,
    DurableChannel,
    RuleViolationError,
    runlog,
)
from proctor.runs import recording_into


@dataclass(slots=True)
class Crowd:
    """What one crowd of waiters measured, in seconds."""

    waiters: int
    all_visible: float  # from the first call to the last request in the database
    decided_to_return: list[float]  # approved calls: from the decision to the call's return
    past_timeout: list[float]  # unanswered calls: how long after their own timeout they ended
    to_thread_starting: float  # worst delay while the calls started and wrote their requests
    to_thread_worst: float  # worst delay while they waited, all requests written


class ToThreadChannel(ApprovalChannel):
    """The durable queue waited on as proctor did before: ``asyncio.to_thread(channel.request)``."""

    def __init__(self, channel: DurableChannel) -> None:
        self._channel = channel

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        return self._channel.request(request)

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        return await asyncio.to_thread(self._channel.request, request)


def policy(timeout: float) -> dict[str, Any]:
    rule = {"id": "refund", "when": {"tool": "refund"}, "action": "require_approval", "timeout": timeout}
    return {"policies": [rule]}


async def crowd(channel: ApprovalChannel, deciding: ApprovalStore, waiters: int, timeout: float) -> Crowd:
    guard = runlog(
        service="bench",
        agent="refund-bot",
        name="refund",
        policies=policy(timeout),
        approvals=channel,
        record=False,
    )

    async def plain(number: int) -> int:
        return number

    refund = guard(plain)

    ended: dict[int, float] = {}

    async def one(number: int) -> None:
        with contextlib.suppress(RuleViolationError):
            await refund(number)
        ended[number] = time.monotonic()

    began = time.monotonic()
    seen = threading.Event()
    visible: list[float] = []
    decided: dict[int, float] = {}

    def person() -> None:
        """An approver in another thread: waits until every request is listed, approves every other."""
        pending: list[Any] = []
        while len(pending) < waiters and time.monotonic() - began < timeout:
            pending = deciding.list("pending", None)
            time.sleep(0.01)
        if len(pending) == waiters:
            visible.append(time.monotonic() - began)
        seen.set()
        for record in pending[::2]:
            try:
                deciding.decide(record.id, "alice", True)
            except ApprovalError:  # it ran into its timeout first (the to_thread comparison)
                continue
            decided[record.args["number"]] = time.monotonic()

    approver = threading.Thread(target=person, daemon=True)
    tasks = [asyncio.create_task(one(number)) for number in range(waiters)]
    approver.start()
    starting = waiting = 0.0
    while not all(task.done() for task in tasks):  # an unrelated to_thread, timed all along
        probe_began = time.monotonic()
        await asyncio.to_thread(lambda: None)
        delay = time.monotonic() - probe_began
        if seen.is_set():
            waiting = max(waiting, delay)
        else:
            starting = max(starting, delay)
        await asyncio.sleep(0.02)
    approver.join()
    unanswered = [number for number in range(waiters) if number not in decided]
    return Crowd(
        waiters,
        visible[0] if visible else float("inf"),
        [ended[number] - at for number, at in decided.items()],
        [ended[number] - began - timeout for number in unanswered],
        starting,
        waiting,
    )


def measure(make: Callable[[ApprovalStore], ApprovalChannel], waiters: int, timeout: float) -> Crowd:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "approvals.db"
        store, deciding = ApprovalStore(db), ApprovalStore(db)
        try:
            with recording_into(None):  # the runs are not what is measured
                return asyncio.run(crowd(make(store), deciding, waiters, timeout))
        finally:
            store.close()
            deciding.close()


def row(table: Table, name: str, result: Crowd) -> None:
    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):.2f} / {max(values):.2f}"

    table.add_row(
        name,
        str(result.waiters),
        fmt(result.all_visible),
        spread(result.decided_to_return),
        spread(result.past_timeout),
        fmt(result.to_thread_starting, ".3f"),
        fmt(result.to_thread_worst, ".3f"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--waiters", type=positive, default=1000, help="coroutines waiting (default 1000)")
    parser.add_argument("--timeout", type=float, default=3.0, help="each call's timeout, s (default 3)")
    parser.add_argument(
        "--before-waiters", type=positive, default=30, help="waiters of the to_thread comparison (default 30)"
    )
    args = parser.parse_args(argv)
    logging.getLogger("proctor.approvals").setLevel(logging.ERROR)  # one "waits for approval" line each

    console = Console(width=160)
    for line in machine_lines({}):
        console.print(line)
    console.print()
    with console.status("1,000 coroutines wait on the durable queue"):
        now = measure(DurableChannel, args.waiters, args.timeout)
    with console.status("the same, the way it was: asyncio.to_thread per wait"):
        before = measure(
            lambda store: ToThreadChannel(DurableChannel(store)), args.before_waiters, args.timeout
        )

    table = Table(title=f"Coroutines waiting for approval, timeout {args.timeout:g} s", title_justify="left")
    for column in (
        "how they wait",
        "waiters",
        "all visible (s)",
        "decision to return, p50 / max (s)",
        "past own timeout, p50 / max (s)",
        "to_thread while starting, worst (s)",
        "to_thread while waiting, worst (s)",
    ):
        table.add_column(column, justify="left" if column == "how they wait" else "right")
    row(table, "proctor: a coroutine per wait (arequest)", now)
    row(table, "before: asyncio.to_thread(channel.request)", before)
    console.print(table)
    console.print()

    late = max(now.past_timeout, default=0.0)
    rows = [
        Target(
            f"all {args.waiters} requests visible",
            f"< timeout ({args.timeout:g} s)",
            fmt(now.all_visible, ".2f", " s"),
            f"to_thread: {fmt(before.all_visible, '.2f', ' s')} for {args.before_waiters}",
            now.all_visible < args.timeout,
        ),
        Target(
            "each call ends within its timeout + 1 s",
            "<= 1 s past",
            fmt(late, ".2f", " s"),
            f"to_thread: {fmt(max(before.past_timeout, default=0.0), '.2f', ' s')}",
            late <= 1.0,
        ),
        Target(
            "an unrelated to_thread is not delayed while they wait",
            "< 0.1 s",
            fmt(now.to_thread_worst, ".3f", " s"),
            f"to_thread: {fmt(before.to_thread_worst, '.2f', ' s')}",
            now.to_thread_worst < 0.1,
        ),
    ]
    console.print(targets_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
