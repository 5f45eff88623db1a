"""One agent process of the several-hosts test: ``python -m tests.hosts.worker NAME POLICIES SLOTS_URL``.

It reads ``PROCTOR_STORE`` (Redis: budgets, rate limits) and ``PROCTOR_DB`` (PostgreSQL: runs and
approvals) like any user's process. It first asks for a refund that needs a person's approval, then
calls a paid LLM through a fair slot of ``llm_api`` (capacity 3, on ``SLOTS_URL``) until the shared
budget refuses it five times in a row. Each event is one JSON line on stdout; the "hosts" share this
machine's clock, so the intervals of every process's calls can be compared.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from proctor import BudgetExceededError, LOCOScheduler, SharedResource, StoreError, runlog


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> None:
    name, policies, slots_url = sys.argv[1:4]
    llm_api = SharedResource("llm_api", capacity=3, store=slots_url)
    scheduler = LOCOScheduler(resource=llm_api)

    @runlog(service="support", agent=name, name="refund", policies=policies)
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    @runlog(service="support", agent=name, name="ask_llm", policies=policies, cost=1.0, scheduler=scheduler)
    def ask_llm(question: str) -> str:
        began = time.time()
        time.sleep(0.02)
        say("ran", began=began, ended=time.time())
        return f"answer to {question}"

    say("started")
    say("refunded", result=refund(250))
    refusals = 0
    number = 0
    while refusals < 5:
        number += 1
        try:
            ask_llm(f"question {number}")
            refusals = 0
        except BudgetExceededError:
            refusals += 1
            time.sleep(0.5)  # five of these outlast the budget's lease: a dead holder's estimate comes back
        except StoreError as exc:
            say("store_error", error=str(exc))
            time.sleep(0.05)
    scheduler.shutdown()
    say("done")


if __name__ == "__main__":
    main()
