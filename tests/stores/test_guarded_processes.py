"""Issue 11 done-when, through @runlog and a policy file: 8 processes x 500 calls under a budget, a
cost_today cap and a rate limit on one SQLite store are exact, also when each process is killed -9
once mid-call and restarted. Each limit binds a different agent (two processes each, four for the
budget), so each is reached whatever the order the processes run in."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from pathlib import Path

from proctor.policy.budget import BudgetPolicy
from proctor.policy.daily import DailySpend
from proctor.policy.rate import RatePolicy
from proctor.stores import SQLiteStore
from tests.stores import _guarded

PROCESSES = 8
CALLS = 500
AGENTS = ["capped", "capped", "rated", "rated", "free", "free", "free", "free"]


def tally(outputs: list[Path]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Per agent: cents spent, calls admitted (settled or killed inside), and refusals by kind."""
    cents: Counter[str] = Counter()
    admitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for n, path in enumerate(outputs):
        agent = AGENTS[n]
        for line in path.read_text().splitlines():
            word, _, value = line.partition(" ")
            if word == "spent":
                cents[agent] += int(value)
                admitted[agent] += 1
            elif word == "admitted-then-killed":
                admitted[agent] += 1
            else:
                refused[value] += 1
    return cents, admitted, refused


def test_eight_killed_and_restarted_processes_keep_every_limit_exactly(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()  # the file and its tables, before the processes race to make them
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"worker{n}.txt" for n in range(PROCESSES)]
    stops = [2 + n for n in range(PROCESSES)]
    first = [
        context.Process(target=_guarded.run, args=(str(path), n, AGENTS[n], CALLS, str(outputs[n]), stops[n]))
        for n in range(PROCESSES)
    ]
    for worker in first:
        worker.start()
    killed_at = []
    for n, worker in enumerate(first):
        while True:
            lines = outputs[n].read_text().splitlines() if outputs[n].exists() else []
            if lines and lines[-1] == "admitted-then-killed":
                break
            assert worker.is_alive(), f"worker {n} ended without being stopped: {lines[-3:]}"
            time.sleep(0.02)
        worker.kill()  # SIGKILL, inside the call: its holds and tokens were taken, nothing settled
        worker.join(30)
        killed_at.append(len(lines))  # calls made, the killed one included
    # Each worker's remaining calls run in a fresh process, as a restarted worker would.
    second = [
        context.Process(
            target=_guarded.run,
            args=(str(path), n, AGENTS[n], CALLS - killed_at[n], str(outputs[n]), None),
        )
        for n in range(PROCESSES)
    ]
    for worker in second:
        worker.start()
    for worker in second:
        worker.join(120)
        assert worker.exitcode == 0  # no StoreError, no busy error reached a caller
    time.sleep(_guarded.LEASE)  # past every killed call's lease

    cents, admitted, refused = tally(outputs)
    assert sum(admitted.values()) + sum(refused.values()) == PROCESSES * CALLS
    assert set(refused) == {"daily-cap", "spend", "calls"}  # every limit was reached, and held
    store = SQLiteStore(path)
    budget = BudgetPolicy(store=store, namespace="proctor.budgets:spend")
    for agent in ("capped", "rated", "free"):  # each ledger holds exactly the recorded actual costs
        assert budget.spent(agent) * 100 == cents[agent]
        assert budget.reserved(agent) == 0.0  # the killed calls' reservations came back
    assert budget.spent("free") <= _guarded.BUDGET
    today = DailySpend(store).spent("svc/capped")  # spend and live holds: no hold is live now
    assert today * 100 == cents["capped"]
    assert today <= _guarded.DAILY
    rate = RatePolicy({"rated": _guarded.RATED}, 1e9, store=store, namespace="proctor.rate_limits:calls")
    assert admitted["rated"] == _guarded.RATED  # the killed call kept its token: it was admitted
    assert rate.remaining("rated") == 0.0
