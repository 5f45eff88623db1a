"""The runs pages: a filterable list, and a run's action timeline with its decisions and approvals."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from proctor import DurableChannel, runlog
from proctor.approvals.store import ApprovalStore
from proctor.runs import recording_into
from proctor.runs.describe import seconds
from proctor.runs.log import RunLog
from proctor.web.app import create_app
from tests.approvals.helpers import in_thread, pending_one
from tests.databases import on_all_databases
from tests.web.conftest import NOW, People, ask, record_run, sign_in
from tests.web.test_approvals import text

pytestmark = on_all_databases

DENY = {"phase": "before", "rule": "no_big_refunds", "action": "deny", "decided": True}
CLAMP = {"phase": "before", "rule": "cap_tokens", "action": "modify", "decided": True}
ALSO = {"phase": "before", "rule": "audit", "action": "log", "decided": False}


@pytest.fixture
def runs(log: RunLog) -> None:
    record_run(log, "run-old", started=NOW - 3 * 86_400, service="billing")
    record_run(
        log,
        "run-denied",
        started=NOW - 7200,
        service="billing",
        agent="refund-bot",
        tool="handle_ticket",
        status="denied",
        actions=[
            {"tool": "lookup", "args": {"customer": 42}, "result": {"plan": "pro"}},
            {
                "tool": "refund",
                "args": {"amount": 900},
                "status": "denied",
                "duration": None,
                "decisions": [DENY],
            },
        ],
    )
    record_run(
        log,
        "run-new",
        started=NOW - 60,
        actions=[
            {
                "tool": "llm",
                "args": {"max_tokens": 1000},
                "requested_args": {"max_tokens": 5000},
                "decisions": [CLAMP, ALSO],
                "approval": {
                    "rule": "drop_needs_dba",
                    "approved": True,
                    "approver": "alice",
                    "comment": "ok",
                },
                "estimated_cost": 0.02,
                "actual_cost": 0.015,
            },
        ],
    )


def listed(client: TestClient, query: str = "") -> list[str]:
    page = client.get(f"/runs{query}").text
    return [run for run in ("run-new", "run-denied", "run-old") if f">{run}</code>" in page]


@pytest.mark.usefixtures("runs")
def test_the_list_shows_runs_newest_first_with_their_facts(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["bob"])
    page = client.get("/runs")
    assert page.status_code == 200
    assert listed(client) == ["run-new", "run-denied", "run-old"]
    shown = text(page.text)
    assert "run-denied" in shown
    assert "billing refund-bot handle_ticket denied 2" in shown  # service, agent, tool, status, actions
    assert '<option value="billing">' in page.text  # known services to pick from


@pytest.mark.usefixtures("runs")
def test_the_console_serves_a_database_given_by_url(
    db: Path | str, people: People, policy_file: Path
) -> None:
    url = db if isinstance(db, str) else f"sqlite:///{db}"  # a PostgreSQL database is always a URL
    app = create_app(db=url, approvers=people.path, policies=[policy_file], secret="s")
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, people.tokens["bob"])
        assert listed(client) == ["run-new", "run-denied", "run-old"]
        assert '<option value="billing">' in client.get("/runs").text
        assert client.get("/policies").status_code == 200


@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?service=billing", ["run-denied", "run-old"]),
        ("?status=denied", ["run-denied"]),
        ("?since=1d", ["run-new", "run-denied"]),
        ("?since=10m&service=billing", []),
        ("?service=&status=&since=", ["run-new", "run-denied", "run-old"]),
    ],
)
def test_the_list_filters_by_service_status_and_age(
    client: TestClient, people: People, query: str, expected: list[str]
) -> None:
    sign_in(client, people.tokens["bob"])
    assert listed(client, query) == expected


@pytest.mark.usefixtures("runs")
def test_bad_filters_say_what_is_wrong(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["bob"])
    bad_age = client.get("/runs?since=yesterday")
    assert bad_age.status_code == 400
    assert "yesterday" in text(bad_age.text)
    bad_status = client.get("/runs?status=happy")
    assert bad_status.status_code == 400
    assert "unknown status 'happy'" in text(bad_status.text)


@pytest.mark.usefixtures("runs")
def test_a_run_shows_its_timeline_with_decisions_and_approvals(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["bob"])
    page = client.get("/runs/run-new")
    assert page.status_code == 200
    shown = text(page.text)
    assert "Run run-new succeeded" in shown
    assert "warehouse / ops-bot" in shown
    assert "cap_tokens: modify*" in shown  # the decision that took effect
    assert "audit: log" in shown  # matched, did not decide
    assert "approved by alice: ok" in shown
    assert "0.0200 / 0.0150" in shown
    assert "(modified)" in shown
    assert '"max_tokens": 5000' in shown  # as requested
    assert '"max_tokens": 1000' in shown  # as called


@pytest.mark.usefixtures("runs")
def test_a_denied_run(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["bob"])
    shown = text(client.get("/runs/run-denied").text)
    assert "Run run-denied denied" in shown
    assert "no_big_refunds: deny*" in shown
    assert "did not run" in shown
    assert '"amount": 900' in shown


def test_a_run_lists_its_approval_requests(
    client: TestClient, people: People, store: ApprovalStore, log: RunLog
) -> None:
    record_run(log, "run-waiting", status=None, actions=[{"tool": "list_tables"}])
    record = ask(store)
    sign_in(client, people.tokens["bob"])
    page = client.get("/runs/run-waiting")
    shown = text(page.text)
    assert "still running" in shown
    assert "Approval requests" in shown
    assert f"/approvals/{record.id}" in page.text
    assert "drop_table drop_needs_dba pending" in shown


def test_an_unknown_run_is_404(client: TestClient, people: People) -> None:
    sign_in(client, people.tokens["bob"])
    response = client.get("/runs/nope")
    assert response.status_code == 404
    assert "no run 'nope'" in text(response.text)


def test_an_action_that_waited_for_approval_shows_the_wait(
    client: TestClient, people: People, store: ApprovalStore, log: RunLog
) -> None:
    # A real run: its tool call waits in the durable queue until alice approves it from another thread.
    rules = {
        "policies": [
            {"id": "drop_needs_dba", "when": {"tool": "drop_table"}, "action": "require_approval"},
            {"id": "cleanup_needs_ops", "when": {"tool": "cleanup"}, "action": "require_approval"},
        ]
    }

    @runlog(service="warehouse", name="drop_table", policies=rules, approvals=DurableChannel(store))
    def drop_table(table: str) -> str:
        return f"dropped {table}"

    @runlog(service="warehouse", name="cleanup", policies=rules, approvals=DurableChannel(store))
    def cleanup() -> str:
        return drop_table("orders_2019")

    def recorded() -> str:
        with recording_into(log):
            return cleanup()

    done = in_thread(recorded)
    own = store.decide(pending_one(store).id, "carol", True)  # the run's own call asks first
    asked = pending_one(store)
    decided = store.decide(asked.id, "alice", True, "archived")
    assert done() == "dropped orders_2019"
    assert log.flush(10)
    [run] = log.runs()
    [action] = log.actions(run.run_id)
    assert decided.decided is not None
    assert own.decided is not None
    sign_in(client, people.tokens["bob"])
    shown = text(client.get(f"/runs/{run.run_id}").text)
    # Asked at its start; ran once approved, after the wait: both show, with the wait itself.
    assert f"+{seconds(action.started - run.started)}" in shown
    assert f"waited {seconds(decided.decided - action.started)} for approval" in shown
    assert f"ran at +{seconds(decided.decided - run.started)}" in shown
    assert "approved by alice: archived" in shown
    assert f"approval approved by carol (waited {seconds(own.decided - run.started)} for approval" in shown
