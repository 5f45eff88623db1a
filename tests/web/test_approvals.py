"""The approvals pages: pending requests with their context, decisions, refusals and the audit trail."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from proctor.approvals.store import ApprovalStore
from proctor.runs.log import RunLog
from tests.databases import on_all_databases
from tests.web.conftest import People, ask, record_run, sign_in

pytestmark = on_all_databases

LOOKUP = {"phase": "before", "rule": "audit", "action": "log", "decided": True}


def waiting_run(log: RunLog) -> None:
    """A run still going: two actions done, the third waits for a DBA."""
    record_run(
        log,
        "run-waiting",
        status=None,
        actions=[
            {"tool": "list_tables", "args": {"schema": "sales"}, "result": ["orders_2019", "orders_2024"]},
            {"tool": "export", "args": {"table": "orders_2019"}, "decisions": [LOOKUP]},
        ],
    )


def text(page: str) -> str:
    """A page's text, tags removed and entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_pending_requests_show_their_context_and_the_run_so_far(
    client: TestClient, people: People, store: ApprovalStore, log: RunLog
) -> None:
    waiting_run(log)
    record = ask(store, args={"table": "orders_2019", "cascade": True})
    sign_in(client, people.tokens["alice"])
    page = client.get("/approvals")
    assert page.status_code == 200
    shown = text(page.text)
    for fact in [
        "drop_table",
        "by ops-bot in warehouse",
        "drop_needs_dba (Dropping a table)",
        "A DBA must approve dropping a table",
        "who decides dba; one approval is enough",
        '"table": "orders_2019"',
        '"cascade": true',
        "deadline",
        "list_tables",  # the run's timeline so far
        "export",
        "audit: log*",
    ]:
        assert fact in shown, fact
    assert re.search(r"deadline \S+ \S+ \(in (1 min \d+ s|2 min)\)", shown)  # 120 s from now
    assert f'action="http://testserver/approvals/{record.id}/decide"' in page.text
    assert 'value="approve"' in page.text
    assert 'value="deny"' in page.text
    assert 'data-poll="http://testserver/api/approvals"' in page.text


def test_the_newest_request_comes_first(client: TestClient, people: People, store: ApprovalStore) -> None:
    older = ask(store, "run-1", args={"table": "first"})
    newer = ask(store, "run-2", args={"table": "second"})
    sign_in(client, people.tokens["alice"])
    page = client.get("/approvals").text
    assert page.index(f"request-{newer.id}") < page.index(f"request-{older.id}")


def test_nothing_waiting(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["alice"])
    assert "Nothing is waiting." in client.get("/approvals").text


@pytest.mark.parametrize(("choice", "status"), [("approve", "approved"), ("deny", "denied")])
def test_a_decision_with_a_comment_closes_the_request(
    client: TestClient, people: People, store: ApprovalStore, choice: str, status: str
) -> None:
    record = ask(store)
    csrf = sign_in(client, people.tokens["alice"])
    response = client.post(
        f"/approvals/{record.id}/decide",
        data={"csrf_token": csrf, "decision": choice, "comment": "checked the backups", "back": "list"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver/approvals"
    assert store.get(record.id).status == status
    [decision] = store.decisions(record.id)
    assert (decision.approver, decision.approved, decision.comment) == (
        "alice",
        choice == "approve",
        "checked the backups",
    )
    page = text(client.get("/approvals").text)
    assert f"You {status} drop_table for ops-bot: it is now {status}." in page
    assert "Nothing is waiting." in page
    assert "Recently closed" in page
    detail = text(client.get(f"/approvals/{record.id}").text)
    assert f"alice {status} checked the backups" in detail  # the history: who, decision, comment
    assert "cannot be changed or deleted" in detail


def test_someone_outside_the_rules_groups_is_refused(
    client: TestClient, people: People, store: ApprovalStore
) -> None:
    record = ask(store)
    csrf = sign_in(client, people.tokens["bob"])  # bob is in web, not dba
    listed = text(client.get("/approvals").text)
    assert "You may not decide this request: bob is not in group dba" in listed
    assert "members of dba may (alice, carol)" in listed
    response = client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert response.status_code == 403
    assert "You may not decide this request: bob is not in group dba" in text(response.text)
    assert store.get(record.id).pending
    assert store.decisions(record.id) == []


def test_a_request_for_no_group_is_anyones_to_decide(
    client: TestClient, people: People, store: ApprovalStore
) -> None:
    record = ask(store, approvers=())
    csrf = sign_in(client, people.tokens["bob"])
    assert "any listed approver" in text(client.get(f"/approvals/{record.id}").text)
    client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert store.get(record.id).status == "approved"


def test_a_closed_request_takes_no_more_decisions(
    client: TestClient, people: People, store: ApprovalStore
) -> None:
    record = ask(store)
    store.decide(record.id, "carol", False, "not today")
    csrf = sign_in(client, people.tokens["alice"])
    detail = text(client.get(f"/approvals/{record.id}").text)
    assert "carol denied not today" in detail
    assert 'value="approve"' not in client.get(f"/approvals/{record.id}").text
    response = client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert response.status_code == 409
    assert "Your decision was not recorded" in text(response.text)
    assert "already denied" in text(response.text)
    assert store.get(record.id).status == "denied"


def test_a_quorum_needs_distinct_people(client: TestClient, people: People, store: ApprovalStore) -> None:
    record = ask(store, quorum=2)
    csrf = sign_in(client, people.tokens["alice"])
    assert "2 distinct approvals needed, 0 so far" in text(client.get("/approvals").text)
    response = client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    page = text(client.get(response.headers["location"]).text)
    assert "it needs 2 approvals and has 1, so it is still pending" in page
    assert "2 distinct approvals needed, 1 so far" in page
    again = client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert again.status_code == 409
    assert "alice already approved" in text(again.text)
    carol = TestClient(client.app, follow_redirects=False)
    carol_csrf = sign_in(carol, people.tokens["carol"])
    carol.post(f"/approvals/{record.id}/decide", data={"csrf_token": carol_csrf, "decision": "approve"})
    assert store.get(record.id).status == "approved"


def test_the_live_refresh_version_changes_when_requests_come_or_are_decided(
    client: TestClient, people: People, store: ApprovalStore
) -> None:
    sign_in(client, people.tokens["alice"])
    empty = client.get("/api/approvals").json()
    assert empty["pending"] == []
    record = ask(store)
    one = client.get("/api/approvals").json()
    assert one["version"] != empty["version"]
    [item] = one["pending"]
    assert item["id"] == record.id
    assert item["tool"] == "drop_table"
    assert item["url"] == f"http://testserver/approvals/{record.id}"
    assert f'data-version="{one["version"]}"' in client.get("/approvals").text
    detail = client.get(f"/api/approvals/{record.id}").json()
    assert detail["status"] == "pending"
    store.decide(record.id, "carol", True, "fine")
    decided = client.get(f"/api/approvals/{record.id}").json()
    assert decided["version"] != detail["version"]
    assert decided["decisions"][0]["approver"] == "carol"
    assert client.get("/api/approvals").json()["version"] != one["version"]


def test_bad_decisions_and_unknown_requests(client: TestClient, people: People, store: ApprovalStore) -> None:
    record = ask(store)
    csrf = sign_in(client, people.tokens["alice"])
    assert client.get("/approvals/nope").status_code == 404
    assert "no approval request 'nope'" in text(client.get("/approvals/nope").text)
    assert client.get("/api/approvals/nope").status_code == 404
    unknown = client.post("/approvals/nope/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert unknown.status_code == 404
    maybe = client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "maybe"})
    assert maybe.status_code == 400
    long = client.post(
        f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "deny", "comment": "x" * 2001}
    )
    assert long.status_code == 400
    assert store.get(record.id).pending


def test_arguments_are_escaped(client: TestClient, people: People, store: ApprovalStore) -> None:
    ask(store, args={"table": "<script>alert(1)</script>"})
    sign_in(client, people.tokens["alice"])
    page = client.get("/approvals").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_request_past_its_deadline_says_so_and_is_still_decidable(
    client: TestClient, people: People, store: ApprovalStore
) -> None:
    record = ask(store, timeout=0)
    csrf = sign_in(client, people.tokens["alice"])
    assert "the waiting call has given up or will at once" in text(client.get(f"/approvals/{record.id}").text)
    client.post(f"/approvals/{record.id}/decide", data={"csrf_token": csrf, "decision": "approve"})
    assert store.get(record.id).status == "approved"
