"""The workers of test_guarded_processes.py: decorated calls under one policy file, on one SQLite store."""

from __future__ import annotations

import time
from typing import Any

from proctor import BudgetExceededError, PolicyViolationError, RuleViolationError, current_run, runlog
from proctor.stores import SQLiteStore, set_store

ESTIMATE = 0.05  # each call's cost= estimate; it really costs 0.01 to 0.05
DAILY = 1.0  # the cost_today cap of the agent "capped"
BUDGET = 6.0  # the budget of the agent "free" (four processes); the other agents' spend is kept, unlimited
RATED = 30  # the calls the agent "rated" may make
LEASE = 2.0  # seconds a killed call's holds last

POLICIES: dict[str, Any] = {
    "defaults": {"lease": LEASE},
    "policies": [
        {
            "id": "daily-cap",
            "when": {"agent": "capped", "cost_today_with_call": {"gt": DAILY}},
            "action": "deny",
        }
    ],
    "budgets": [{"id": "spend", "per": "agent", "limits": {"free": BUDGET}}],
    # A period so long that the bucket does not refill during the test: exactly RATED calls pass.
    "rate_limits": [{"id": "calls", "per": "agent", "limits": {"rated": RATED}, "period": 1e9}],
}


def run(path: str, worker: int, agent: str, calls: int, out_path: str, stop_from: int | None) -> None:
    """Make ``calls`` calls as ``agent``, logging each to ``out_path``; the first call admitted at
    or after ``stop_from`` hangs inside, for the test to kill the process there."""
    set_store(SQLiteStore(path))

    with open(out_path, "a") as out:

        @runlog(service="svc", agent=agent, name="call", cost=ESTIMATE, policies=POLICIES, record=False)
        def call(i: int) -> int:
            if stop_from is not None and i >= stop_from:
                out.write("admitted-then-killed\n")
                out.flush()
                time.sleep(600)  # killed here: after every check, before any settle
            cents = 1 + (worker * 7 + i) % 5
            current_run().add_cost(cents / 100)
            return cents

        for i in range(calls):
            try:
                cents = call(i)
            except RuleViolationError:
                out.write("denied daily-cap\n")
            except BudgetExceededError:
                out.write("rejected spend\n")
            except PolicyViolationError as exc:
                out.write(f"rejected {exc.policy_name}\n")
            else:
                out.write(f"spent {cents}\n")
            out.flush()
