"""Issue 11 done-when: 8 processes x 500 calls on one SQLite file are exact, also when each is killed once."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from tests.stores import _workers

PROCESSES = 8
CALLS = 500
LEASE = 2.0


def tally(outputs: list[Path]) -> tuple[int, int, int]:
    """The recorded actual spend in cents, the calls admitted (settled or killed), and the rejections."""
    cents = admitted = rejected = 0
    for path in outputs:
        for line in path.read_text().splitlines():
            word, _, value = line.partition(" ")
            if word == "spent":
                cents += int(value)
                admitted += 1
            elif word == "admitted-then-killed":
                admitted += 1
            else:
                rejected += 1
    return cents, admitted, rejected


def check_exact(path: Path, outputs: list[Path]) -> None:
    budget, rate, _ = _workers.policies(str(path), LEASE)
    cents, admitted, rejected = tally(outputs)
    assert admitted + rejected == PROCESSES * CALLS
    assert budget.spent("a") <= _workers.LIMIT
    assert round(budget.spent("a") * 100) == cents  # the ledger holds exactly the recorded actual costs
    assert budget.spent("a") * 100 == cents
    assert budget.reserved("a") == 0.0
    assert rejected > 0  # the limit was reached, and held
    assert rate.remaining("a") == _workers.RATE - admitted  # each admitted call took one token, no more


def test_eight_processes_share_one_budget_and_rate_exactly(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _workers.policies(str(path), LEASE)  # create the file before the processes race to
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"worker{n}.txt" for n in range(PROCESSES)]
    workers = [
        context.Process(target=_workers.run, args=(str(path), n, CALLS, str(outputs[n]), LEASE, None))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0  # no StoreError, no busy error reached a caller
    check_exact(path, outputs)


def test_processes_killed_between_check_and_settle_give_their_leases_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _workers.policies(str(path), LEASE)
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"worker{n}.txt" for n in range(PROCESSES)]
    stops = [20 + 13 * n for n in range(PROCESSES)]
    first = [
        context.Process(target=_workers.run, args=(str(path), n, CALLS, str(outputs[n]), LEASE, stops[n]))
        for n in range(PROCESSES)
    ]
    for worker in first:
        worker.start()
    for n, worker in enumerate(first):
        while "admitted-then-killed" not in (outputs[n].read_text() if outputs[n].exists() else ""):
            assert worker.is_alive() or worker.exitcode is None, outputs[n].read_text()
            time.sleep(0.02)
        worker.kill()  # SIGKILL, between check and settle
        worker.join(30)
    # Each worker's remaining calls run in a fresh process, as a restarted worker would.
    second = [
        context.Process(
            target=_workers.run,
            args=(str(path), n, CALLS - stops[n] - 1, str(outputs[n]), LEASE, None),
        )
        for n in range(PROCESSES)
    ]
    for worker in second:
        worker.start()
    for worker in second:
        worker.join(120)
        assert worker.exitcode == 0
    time.sleep(LEASE)  # past every killed worker's lease
    check_exact(path, outputs)
