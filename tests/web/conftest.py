"""Fixtures of the console's tests: a database, approvers with tokens, a policy file, a signed-in client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from proctor.approvals.approvers import Approvers
from proctor.approvals.base import ApprovalRequest
from proctor.approvals.store import ApprovalRecord, ApprovalStore
from proctor.runs.log import NO_RESULT, RunLog
from proctor.web.app import create_app

NOW = time.time()

POLICIES = """\
defaults: {approval_timeout: 120}
policies:
  - id: drop_needs_dba
    name: Dropping a table
    when: {tool: drop_table}
    action: require_approval
    approvers: [dba]
    message: A DBA must approve dropping a table
  - id: no_big_refunds
    when: {tool: refund, args.amount: {gt: 500}}
    action: deny
    message: Refunds above 500 need a manager
  - id: cap_tokens
    when: {tool: llm}
    action: modify
    clamp: {args.max_tokens: {max: 1000}}
  - id: audit
    when: {tool: export}
    action: log
"""


@dataclass(frozen=True)
class People:
    """The approvers file and each person's token: alice (dba), bob (web), carol (dba, oncall)."""

    path: Path
    tokens: dict[str, str]


@pytest.fixture
def people(tmp_path: Path) -> People:
    approvers = Approvers(path=tmp_path / "approvers.yaml")
    tokens = {
        "alice": approvers.add("alice", ["dba"]),
        "bob": approvers.add("bob", ["web"]),
        "carol": approvers.add("carol", ["dba", "oncall"]),
    }
    return People(tmp_path / "approvers.yaml", tokens)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return path


@pytest.fixture
def log(db: Path) -> Iterator[RunLog]:
    with RunLog(db, pii=False) as log:
        yield log


@pytest.fixture
def store(db: Path) -> Iterator[ApprovalStore]:
    with ApprovalStore(db, pii=False) as store:
        yield store


@pytest.fixture
def app(db: Path, people: People, policy_file: Path) -> Starlette:
    return create_app(db=db, approvers=people.path, policies=[policy_file], secret="test secret")


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign ``client`` in with ``token``; returns the new session's CSRF token."""
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": csrf_of(page.text), "next": "/"})
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/approvals").text)


def record_run(
    log: RunLog,
    run_id: str,
    *,
    started: float = NOW - 60,
    status: str | None = "succeeded",
    service: str = "warehouse",
    agent: str = "ops-bot",
    tool: str = "nightly_cleanup",
    actions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    decisions: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> None:
    """One run and its actions (dicts of ``RunLog.action`` fields), each a second after the last.

    ``status`` None leaves the run running.
    """
    log.run_started(
        run_id,
        service=service,
        agent=agent,
        tool=tool,
        function="app.jobs:nightly_cleanup",
        started=started,
        input={"day": "monday"},
    )
    for seq, fields in enumerate(actions, start=1):
        values: dict[str, Any] = {
            "service": service,
            "agent": agent,
            "started": started + seq,
            "duration": 0.25,
            "status": "succeeded",
            "args": {},
        }
        values.update(fields)
        log.action(run_id, seq, **values)
    if status is not None:
        log.run_finished(
            run_id,
            status=status,
            ended=started + len(actions) + 1.5,
            output={"ok": True} if status == "succeeded" else NO_RESULT,
            cost=0.25,
            decisions=decisions,
        )
    assert log.flush(10)


def ask(
    store: ApprovalStore,
    run_id: str = "run-waiting",
    *,
    tool: str = "drop_table",
    args: dict[str, Any] | None = None,
    approvers: tuple[str, ...] = ("dba",),
    quorum: int = 1,
    seq: int = 3,
    timeout: float = 120,
) -> ApprovalRecord:
    """A pending request, as a require_approval rule makes it."""
    request = ApprovalRequest(
        rule_id="drop_needs_dba",
        message="A DBA must approve dropping a table",
        approvers=approvers,
        timeout=timeout,
        service="warehouse",
        agent="ops-bot",
        tool=tool,
        run_id=run_id,
        args=args if args is not None else {"table": "orders_2019"},
        rule_name="Dropping a table",
        quorum=quorum,
        seq=seq,
    )
    return store.create(request)
