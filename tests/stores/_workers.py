"""The worker processes of test_processes.py: each runs its calls against one SQLite store file."""

from __future__ import annotations

import time

from proctor import BudgetPolicy, Outcome, PolicyEnforcer, PolicyViolationError, RatePolicy, Status, Task
from proctor.stores import SQLiteStore

LIMIT = 50.0  # the budget binds: 4,000 calls estimated at 0.05 would need 200
ESTIMATE = 0.05
RATE = 3000.0  # tokens; the rate clock is frozen, so the bucket never refills


def policies(path: str, lease: float) -> tuple[BudgetPolicy, RatePolicy, PolicyEnforcer]:
    store = SQLiteStore(path)
    budget = BudgetPolicy(default_limit=LIMIT, store=store, lease=lease)
    rate = RatePolicy(default_limit=RATE, period=3600.0, store=store, clock=lambda: 0.0)
    return budget, rate, PolicyEnforcer([rate, budget])


def run(path: str, worker: int, calls: int, out_path: str, lease: float, stop_at: int | None) -> None:
    """Make ``calls`` calls, logging each to ``out_path``; call ``stop_at`` is admitted, then hangs."""
    _, _, enforcer = policies(path, lease)
    with open(out_path, "a") as out:
        for i in range(calls):
            try:
                admission = enforcer.admit("a", Task(cost=ESTIMATE))
            except PolicyViolationError as exc:
                out.write(f"rejected {exc.policy_name}\n")
                out.flush()
                continue
            if i == stop_at:
                out.write("admitted-then-killed\n")
                out.flush()
                time.sleep(600)  # the test kills this process here, between check and settle
            cents = 1 + (worker * 7 + i) % 5  # the actual cost: 0.01 to 0.05
            enforcer.settle(admission, Outcome(Status.SUCCESS, cents / 100))
            out.write(f"spent {cents}\n")
            out.flush()
