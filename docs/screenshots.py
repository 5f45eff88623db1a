"""Regenerate the console's screenshots in docs/: `.venv/bin/python docs/screenshots.py`.

Records a morning of two agents' runs in a fresh database (real @runlog calls
under real rules, with a few runs back-dated to fill the day), leaves two calls
waiting for approval, serves the console on a free loopback port, and has
Playwright drive Debian's Chromium (/usr/bin/chromium) through the sign-in,
approvals, approval, runs, run and policies pages. Needs the dev extra.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from playwright.sync_api import Page, sync_playwright

from proctor import RuleViolationError, runlog
from proctor.approvals.approvers import Approvers
from proctor.approvals.durable import DurableChannel
from proctor.approvals.store import ApprovalStore
from proctor.runs.default import recording_into
from proctor.runs.log import NO_RESULT, RunLog
from proctor.web.app import create_app

F = TypeVar("F", bound=Callable[..., Any])

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

POLICIES = """\
defaults: {approval_timeout: 900}
policies:
  - id: drop_needs_dba
    name: Dropping a table
    when: {tool: drop_table}
    action: require_approval
    approvers: [dba]
    message: A DBA must approve dropping a table
  - id: refunds_two_people
    name: Refunds above 200
    when: {tool: refund, args.amount: {gt: 200}}
    action: require_approval
    approvers: [finance]
    quorum: 2
    message: Two people from finance approve refunds above 200
  - id: no_huge_refunds
    when: {tool: refund, args.amount: {gt: 1000}}
    action: deny
    message: Refunds above 1000 go through the billing team
  - id: cap_tokens
    name: At most 1000 tokens
    when: {tool: llm, args.max_tokens: {gt: 1000}}
    action: modify
    clamp: {args.max_tokens: {max: 1000}}
  - id: audit_exports
    when: {tool: export_csv}
    action: log
"""


def main() -> None:
    if not Path(CHROMIUM).exists():
        sys.exit(f"no {CHROMIUM}: install Debian's chromium (scripts/apt-install chromium)")
    os.chdir(tempfile.mkdtemp(prefix="proctor-screenshots-"))  # the pages show these paths as given
    db, rules, people = Path("proctor.db"), Path("policies.yaml"), Path("approvers.yaml")
    rules.write_text(POLICIES)
    approvers = Approvers(path=people)
    token = approvers.add("alice", ["dba", "finance"])
    approvers.add("bob", ["finance"])
    approvers.add("dana", ["dba"])
    store = ApprovalStore(db, pii=False)
    with RunLog(db, pii=False) as log, recording_into(log):
        earlier_today(log)
        waiting = record_runs(store, approvers, str(rules))
        app = create_app(db=db, approvers=people, policies=[rules], secret="screenshots")
        with served(app) as url:
            photograph(url, token, store)
        for record in store.list(status="pending"):
            store.cancel(record.id)
        for thread in waiting:
            thread.join(10)
    store.close()
    print(f"screenshots written to {DOCS}")


def record_runs(store: ApprovalStore, approvers: Approvers, rules: str) -> list[threading.Thread]:
    """Real calls under the rules: some pass, one is modified, one denied, three need approval."""
    channel = DurableChannel(store, approvers)

    def tool(service: str, agent: str, name: str, cost: float | None = None) -> Callable[[F], F]:
        decorate: Callable[[F], F] = runlog(
            service=service, agent=agent, name=name, cost=cost, policies=rules, approvals=channel
        )
        return decorate

    @tool("support", "support-bot", "lookup_customer")
    def lookup_customer(customer: int) -> dict[str, Any]:
        time.sleep(0.05)
        return {"customer": customer, "plan": "pro", "since": "2021-04-02"}

    @tool("support", "support-bot", "llm", cost=0.0031)
    def llm(prompt: str, max_tokens: int) -> str:
        time.sleep(0.4)
        return f"Drafted a reply in {max_tokens} tokens or fewer."

    @tool("support", "support-bot", "refund")
    def refund(customer: int, amount: float) -> str:
        return f"refunded {amount:.2f} to {customer}"

    @tool("support", "support-bot", "handle_ticket")
    def handle_ticket(ticket: int, customer: int, amount: float) -> str:
        lookup_customer(customer)
        llm(f"Reply to ticket {ticket}", max_tokens=4000)
        return refund(customer, amount)

    @tool("warehouse", "ops-bot", "list_tables")
    def list_tables(schema: str) -> list[str]:
        return ["orders_2019", "orders_2024", "customers"]

    @tool("warehouse", "ops-bot", "count_rows")
    def count_rows(table: str) -> int:
        time.sleep(0.2)
        return 1_284_113

    @tool("warehouse", "ops-bot", "export_csv")
    def export_csv(table: str) -> str:
        time.sleep(0.3)
        return f"s3://archive/{table}.csv"

    @tool("warehouse", "ops-bot", "drop_table")
    def drop_table(table: str) -> str:
        return f"dropped {table}"

    @tool("warehouse", "ops-bot", "nightly_cleanup")
    def nightly_cleanup(table: str) -> str:
        list_tables("sales")
        count_rows(table)
        export_csv(table)
        return drop_table(table)

    def attempt(function: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuleViolationError):  # a denial is part of the story
            function(*args)

    attempt(handle_ticket, 4411, 17, 35.0)
    attempt(handle_ticket, 4412, 23, 80.0)
    attempt(handle_ticket, 4415, 31, 1500.0)  # denied: above 1000

    def in_background(function: Callable[..., Any], *args: Any) -> threading.Thread:
        # With this context, so that its run is recorded in the log of the enclosing recording_into().
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(attempt, function, *args), daemon=True
        )
        thread.start()
        return thread

    # Approved earlier by a DBA, so the list has a closed request too.
    first = in_background(nightly_cleanup, "orders_2018")
    decide_when_asked(store, "orders_2018", "dana", True, "archived last week, fine to drop")
    first.join(10)
    waiting = [in_background(handle_ticket, 4420, 42, 450.0)]
    decide_when_asked(store, "450", "bob", True, "customer was double-charged in March")
    waiting.append(in_background(nightly_cleanup, "orders_2019"))
    wait_until(lambda: len(store.list(status="pending")) == 2)
    return waiting


def decide_when_asked(store: ApprovalStore, needle: str, who: str, approved: bool, comment: str) -> None:
    """Wait for the pending request whose arguments mention ``needle``; decide it as ``who``."""

    def asked() -> Any:
        return next((r for r in store.list(status="pending") if needle in str(r.args)), None)

    wait_until(asked)
    store.decide(asked().id, who, approved, comment)


def earlier_today(log: RunLog) -> None:
    """Back-dated runs, so the day's counts differ from the hour's."""
    now = time.time()
    decided = [{"phase": "before", "rule": "cap_tokens", "action": "modify", "decided": True}]
    denied = [{"phase": "before", "rule": "no_huge_refunds", "action": "deny", "decided": True}]
    for hours in range(2, 20, 3):
        run_id = f"earlier-{hours}h"
        started = now - hours * 3600
        log.run_started(
            run_id,
            service="support",
            agent="support-bot",
            tool="handle_ticket",
            function="app.support:handle_ticket",
            started=started,
            input={"ticket": 4000 + hours},
        )
        log.action(
            run_id,
            1,
            "llm",
            "support",
            "support-bot",
            started + 1,
            1.2,
            "succeeded",
            {"max_tokens": 1000},
            requested_args={"max_tokens": 4000},
            decisions=decided,
        )
        refused = hours % 2 == 0
        status = "denied" if refused else "succeeded"
        log.action(
            run_id,
            2,
            "refund",
            "support",
            "support-bot",
            started + 3,
            None if refused else 0.3,
            status,
            {"amount": 1800.0 if refused else 60.0},
            decisions=denied if refused else (),
        )
        log.run_finished(
            run_id, status=status, ended=started + 4, output=NO_RESULT if refused else "done", cost=0.004
        )
    log.flush()


class served:
    """The app served by uvicorn on a free loopback port, in a thread; the URL on entry."""

    def __init__(self, app: Any) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._listener]}, daemon=True
        )

    def __enter__(self) -> str:
        self._thread.start()
        wait_until(lambda: self._server.started)
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._listener.close()


def photograph(url: str, token: str, store: ApprovalStore) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
        page.goto(f"{url}/approvals")
        shoot(page, "signin", full=False)
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_selector(".request")
        page.locator("textarea[name=comment]").first.fill("Checked: the 2019 orders are archived in S3.")
        shoot(page, "approvals")
        refund = next(r for r in store.list(status="pending") if r.tool == "refund")
        page.goto(f"{url}/approvals/{refund.id}")
        shoot(page, "approval")
        page.goto(f"{url}/runs")
        shoot(page, "runs")
        approved = store.list(status="approved")[0]  # the table dropped with a DBA's approval
        page.goto(f"{url}/runs/{approved.run_id}")
        shoot(page, "run")
        page.goto(f"{url}/policies")
        shoot(page, "policies")
        browser.close()


def shoot(page: Page, name: str, *, full: bool = True) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=full)


def wait_until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the demo did not get where it should")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
