"""In a real browser: a person signs in, approves a waiting call (it proceeds) and denies another (it raises).

Playwright drives Debian's Chromium (/usr/bin/chromium) against the console served
by uvicorn on a free loopback port; the decorated calls wait in threads of the test.
"""

from __future__ import annotations

import contextvars
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from proctor import RuleViolationError, runlog
from proctor.approvals.approvers import Approvers
from proctor.approvals.durable import DurableChannel
from proctor.approvals.store import ApprovalStore
from proctor.runs.default import recording_into
from proctor.runs.log import RunLog
from proctor.web.app import create_app
from tests.web.conftest import People

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the browser test drives Debian's Chromium at /usr/bin/chromium, which is not installed "
    "(`make test` installs it with scripts/apt-install chromium)",
)


@pytest.fixture
def console_url(db: Path, people: People, policy_file: Path) -> Iterator[str]:
    """The console, served by uvicorn in a thread on a free loopback port."""
    app = create_app(db=db, approvers=people.path, policies=[policy_file], secret="browser test")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the console to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    listener.close()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_person_approves_a_waiting_call_in_the_browser_and_denies_another(
    console_url: str, db: Path, people: People, policy_file: Path, store: ApprovalStore
) -> None:
    from playwright.sync_api import expect, sync_playwright

    channel = DurableChannel(store, Approvers.load(people.path))
    rules = str(policy_file)

    @runlog(service="warehouse", agent="ops-bot", name="list_tables", policies=rules, approvals=channel)
    def list_tables(schema: str) -> list[str]:
        return ["orders_2019", "customers"]

    @runlog(service="warehouse", agent="ops-bot", name="drop_table", policies=rules, approvals=channel)
    def drop_table(table: str) -> str:
        return f"dropped {table}"

    @runlog(service="warehouse", agent="ops-bot", name="cleanup", policies=rules, approvals=channel)
    def cleanup(table: str) -> str:
        assert table in list_tables("sales")
        return drop_table(table)

    outcomes: dict[str, Any] = {}

    def call(table: str) -> None:
        try:
            outcomes[table] = cleanup(table)
        except RuleViolationError as exc:
            outcomes[table] = exc

    with RunLog(db, pii=False) as log, recording_into(log):
        # The calls record into the block's log: their threads start with this context.
        first = threading.Thread(target=contextvars.copy_context().run, args=(call, "orders_2019"))
        first.start()
        wait_until(lambda: store.list(status="pending"), "the first request")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(15_000)

            page.goto(f"{console_url}/approvals")
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.fill("input[name=token]", people.tokens["alice"])
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{console_url}/approvals")
            card = page.locator(".request")
            expect(card).to_have_count(1)
            expect(card).to_contain_text("drop_table")
            expect(card).to_contain_text("orders_2019")
            expect(card).to_contain_text("A DBA must approve dropping a table")
            expect(card.locator("table.timeline")).to_contain_text("list_tables")  # the run so far

            card.locator("textarea[name=comment]").fill("backups checked")
            card.locator("button[value=approve]").click()
            expect(page.locator(".flash.ok[role=status]")).to_contain_text(
                "You approved drop_table for ops-bot: it is now approved."
            )
            first.join(10)
            assert outcomes["orders_2019"] == "dropped orders_2019"

            second = threading.Thread(target=contextvars.copy_context().run, args=(call, "customers"))
            second.start()
            # No reload by hand: the page's live refresh brings the new request in.
            expect(page.locator(".request")).to_contain_text("customers")
            card = page.locator(".request")
            card.locator("textarea[name=comment]").fill("customers is still in use")
            card.locator("button[value=deny]").click()
            expect(page.locator(".flash.ok[role=status]")).to_contain_text("it is now denied")
            second.join(10)
            refusal = outcomes["customers"]
            assert isinstance(refusal, RuleViolationError)
            assert "approval refused by alice: customers is still in use" in str(refusal)

            denied = store.list(status="denied")[0]
            page.click(f"a[href$='/approvals/{denied.id}']")  # under "Recently closed"
            expect(page).to_have_url(f"{console_url}/approvals/{denied.id}")
            history = page.locator("table.history")
            expect(history).to_contain_text("alice")
            expect(history).to_contain_text("customers is still in use")
            browser.close()
    assert [record.status for record in store.list()] == ["denied", "approved"]
