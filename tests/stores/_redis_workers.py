"""The worker processes of test_redis.py: each makes its calls against one budget in one redis-server."""

from __future__ import annotations

import os
import time

from proctor import BudgetPolicy, Outcome, PolicyEnforcer, PolicyViolationError, Status, Task
from proctor.stores import RedisStore

LIMIT = 3.0  # 150 calls at 0.02 fit; the workers together ask for more
COST = 0.02


def budget(url: str, prefix: str, lease: float = 60.0) -> BudgetPolicy:
    return BudgetPolicy(default_limit=LIMIT, store=RedisStore(url, prefix=prefix, timeout=5.0), lease=lease)


def run(url: str, prefix: str, calls: int, out_path: str) -> None:
    """Make ``calls`` calls costing COST (estimated and actual); write the number granted to ``out_path``."""
    policy = budget(url, prefix)
    enforcer = PolicyEnforcer([policy])
    granted = 0
    for _ in range(calls):
        try:
            admission = enforcer.admit("a", Task(cost=COST))
        except PolicyViolationError:
            continue
        enforcer.settle(admission, Outcome(Status.SUCCESS, COST))
        granted += 1
    with open(out_path, "w") as out:
        out.write(str(granted))


def hold_and_die(url: str, prefix: str, lease: float, ready_path: str) -> None:
    """Reserve, say so, and hang: the test kills this process with SIGKILL, so nothing settles."""
    policy = budget(url, prefix, lease)
    PolicyEnforcer([policy]).admit("a", Task(cost=LIMIT))
    with open(ready_path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(600)
