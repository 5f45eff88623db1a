"""The policies page: the rules in force, and how many actions each decided in the last hour and day."""

from __future__ import annotations

import re
import time
from pathlib import Path

from starlette.testclient import TestClient

from proctor.runs.log import RunLog
from proctor.web.app import create_app
from tests.web.conftest import NOW, People, record_run, sign_in
from tests.web.test_approvals import text


def decided(rule: str | None, action: str, phase: str = "before") -> dict[str, object]:
    return {"phase": phase, "rule": rule, "action": action, "decided": True}


def row(page: str, rule: str) -> str:
    """The text of the table row of ``rule``."""
    found = re.search(rf"<tr>\s*<td><strong>{rule}</strong>.*?</tr>", page, flags=re.S)
    assert found is not None, rule
    return text(found.group(0))


def test_rules_in_force_with_their_counts_and_rates(client: TestClient, people: People, log: RunLog) -> None:
    # In the last hour: 4 actions (3 of run-a, and run-a's own call); in the day, 3 more of run-b's.
    record_run(
        log,
        "run-a",
        started=NOW - 600,
        actions=[
            {"tool": "refund", "status": "denied", "decisions": [decided("no_big_refunds", "deny")]},
            {"tool": "llm", "decisions": [decided("cap_tokens", "modify")]},
            {"tool": "lookup"},
        ],
    )
    record_run(
        log,
        "run-b",
        started=NOW - 5 * 3600,
        actions=[
            {"tool": "refund", "status": "denied", "decisions": [decided("no_big_refunds", "deny")]},
            {"tool": "refund", "status": "denied", "decisions": [decided("budget", "deny", "policy")]},
        ],
        decisions=[decided(None, "deny")],
    )
    record_run(log, "run-old", started=NOW - 3 * 86_400, actions=[{"tool": "refund"}])
    sign_in(client, people.tokens["alice"])
    page = client.get("/policies")
    assert page.status_code == 200
    shown = text(page.text)
    assert "of the 4 actions that began in the last hour and the 7 in the last day" in shown
    assert row(page.text, "no_big_refunds") == (
        'no_big_refunds deny {"tool": "refund", "args.amount": {"gt": 500}} '
        "Refunds above 500 need a manager 1 25.0% 2 28.6%"
    )
    assert row(page.text, "cap_tokens").endswith("1 25.0% 1 14.3%")
    assert row(page.text, "audit").endswith("0 0.0% 0 0.0%")
    approval = row(page.text, "drop_needs_dba")
    assert "Dropping a table" in approval
    assert "by dba" in approval
    assert "denied 1 25.0% 4 57.1%" in shown  # the summary: every deny, whoever decided it
    assert "Other deciders" in shown
    assert "budget deny 0 0.0% 1 14.3%" in shown  # a code policy
    assert "(default action) deny 0 0.0% 1 14.3%" in shown
    assert "no_big_refunds deny 0" not in shown  # rules in force are not "other"


def test_no_actions_yet(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["alice"])
    shown = text(client.get("/policies").text)
    assert "of the 0 actions" in shown
    assert row(client.get("/policies").text, "audit").endswith("0 - 0 -")


def test_without_policy_files_it_says_how_to_give_them(db: Path, people: People) -> None:
    with TestClient(create_app(db=db, approvers=people.path), follow_redirects=False) as client:
        sign_in(client, people.tokens["alice"])
        assert "proctor serve --policies FILE" in text(client.get("/policies").text)


def test_a_policy_file_that_changes_is_shown_anew_and_a_broken_change_is_not(
    client: TestClient, people: People, policy_file: Path
) -> None:
    sign_in(client, people.tokens["alice"])
    policy_file.write_text("policies:\n  - {id: only_rule, action: log}\n")
    time.sleep(0.6)  # PolicySource looks at the files at most every 0.5 s
    page = client.get("/policies").text
    assert "only_rule" in page
    assert "no_big_refunds" not in page
    policy_file.write_text("policies: [oops\n")
    time.sleep(0.6)
    assert "only_rule" in client.get("/policies").text


def test_an_approval_rule_shows_its_own_timeout(db: Path, people: People, tmp_path: Path) -> None:
    path = tmp_path / "approvals.yaml"
    path.write_text(
        "defaults: {approval_timeout: 120}\n"
        "policies:\n"
        "  - {id: slow_review, when: {tool: deploy}, action: require_approval, approvers: [dba],\n"
        "     timeout: 900}\n"
        "  - {id: quick_review, when: {tool: restart}, action: require_approval, approvers: [dba]}\n"
    )
    app = create_app(db=db, approvers=people.path, policies=[path], secret="test secret")
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, people.tokens["alice"])
        page = client.get("/policies").text
    assert "by dba, waits 15 min, then denies" in row(page, "slow_review")  # the rule's own timeout
    assert "by dba, waits 2 min (the default), then denies" in row(page, "quick_review")
