"""ApprovalStore on a real SQLite file and on PostgreSQL: requests, decisions, quorum, the audit trail."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from proctor import ApprovalError, ApprovalStore, Approvers, RunLog
from proctor.approvals import Person
from proctor.db.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.approvals.helpers import REQUEST, request
from tests.databases import execute

APPROVERS = Approvers(
    {"finance": None, "dba": None},
    [
        Person("alice", frozenset({"finance"})),
        Person("bob", frozenset({"finance", "dba"})),
        Person("carol", frozenset({"dba"})),
    ],
)


def test_a_request_is_stored_pending_with_its_arguments_redacted(store: ApprovalStore, db: Path) -> None:
    record = store.create(REQUEST)
    assert record.pending
    assert (record.run_id, record.seq, record.tool, record.rule_id) == ("run-1", 3, "refund", "big_refund")
    assert record.rule_name == "Big refunds"
    assert record.approvers == ("finance",)
    assert record.quorum == 1
    assert record.deadline == pytest.approx(record.created + 30.0)
    assert record.args == {"amount": 250, "customer": "[REDACTED:email]"}
    assert store.get(record.id) == record
    assert store.list() == [record]
    assert store.list(status="pending") == [record]
    assert store.list(status="approved") == []
    assert store.decisions(record.id) == []
    # The database itself never held the address.
    [(raw,)] = execute(db, "SELECT args FROM approvals")
    assert "jane.doe" not in str(raw)


def test_the_store_can_keep_arguments_as_given(db: Path) -> None:
    with ApprovalStore(db, pii=False) as store:
        assert store.create(REQUEST).args["customer"] == "jane.doe@example.com"


def test_approve_and_deny(store: ApprovalStore) -> None:
    first = store.create(REQUEST)
    approved = store.decide(first.id, "alice", True, "fine", APPROVERS)
    assert approved.status == "approved"
    assert approved.decided is not None
    [decision] = store.decisions(first.id)
    assert (decision.approver, decision.approved, decision.comment) == ("alice", True, "fine")

    second = store.create(request(seq=4))
    denied = store.decide(second.id, "bob", False, "  ", APPROVERS)
    assert denied.status == "denied"
    assert store.decisions(second.id)[0].comment is None  # a blank comment is no comment
    assert [r.id for r in store.list()] == [second.id, first.id]  # newest first
    assert [r.id for r in store.list(status="denied")] == [second.id]


def test_a_decided_request_takes_no_more_decisions(store: ApprovalStore) -> None:
    record = store.create(REQUEST)
    store.decide(record.id, "alice", True)
    with pytest.raises(ApprovalError, match=f"approval {record.id} is already approved") as caught:
        store.decide(record.id, "bob", False)
    assert caught.value.approval_id == record.id
    assert len(store.decisions(record.id)) == 1


def test_quorum_needs_distinct_approvers_and_a_deny_ends_it(store: ApprovalStore) -> None:
    record = store.create(request(quorum=2))
    assert store.decide(record.id, "alice", True, approvers=APPROVERS).status == "pending"
    with pytest.raises(ApprovalError, match=r"alice already approved .*; each person decides once"):
        store.decide(record.id, "alice", True, approvers=APPROVERS)
    assert store.get(record.id).pending
    assert store.decide(record.id, "bob", True, approvers=APPROVERS).status == "approved"
    assert [d.approver for d in store.decisions(record.id)] == ["alice", "bob"]

    other = store.create(request(quorum=2, seq=9))
    store.decide(other.id, "alice", True, approvers=APPROVERS)
    assert store.decide(other.id, "bob", False, "no", approvers=APPROVERS).status == "denied"


def test_only_people_of_the_request_groups_may_decide(store: ApprovalStore) -> None:
    record = store.create(REQUEST)  # finance
    with pytest.raises(ApprovalError, match="carol is not in group finance, so they may not decide"):
        store.decide(record.id, "carol", True, approvers=APPROVERS)
    with pytest.raises(ApprovalError, match="mallory is not a listed approver"):
        store.decide(record.id, "mallory", True, approvers=APPROVERS)
    assert store.decisions(record.id) == []
    assert store.get(record.id).pending

    either = store.create(request(approvers=("finance", "dba"), seq=5))
    assert store.decide(either.id, "carol", True, approvers=APPROVERS).status == "approved"
    anyone = store.create(request(approvers=(), seq=6))
    with pytest.raises(ApprovalError, match="mallory is not a listed approver"):
        store.decide(anyone.id, "mallory", True, approvers=APPROVERS)
    assert store.decide(anyone.id, "carol", True, approvers=APPROVERS).status == "approved"
    # Without approvers (a local, single-user setup) the name is taken as given.
    open_mode = store.create(request(seq=7))
    assert store.decide(open_mode.id, "mallory", True).status == "approved"


def test_unknown_ids_and_empty_names_are_refused(store: ApprovalStore) -> None:
    for call in (
        lambda: store.get("nope"),
        lambda: store.decisions("nope"),
        lambda: store.decide("nope", "alice", True),
        lambda: store.expire("nope"),
        lambda: store.cancel("nope"),
    ):
        with pytest.raises(ApprovalError, match="unknown approval id 'nope'; `proctor approvals list`"):
            call()
    record = store.create(REQUEST)
    with pytest.raises(ApprovalError, match="the approver's name is empty"):
        store.decide(record.id, " ", True)
    with pytest.raises(ApprovalError, match="unknown status 'open'"):
        store.list(status="open")


def test_expire_and_cancel(store: ApprovalStore) -> None:
    record = store.create(REQUEST)
    assert store.expire(record.id).status == "expired"
    with pytest.raises(ApprovalError, match="already expired"):
        store.decide(record.id, "alice", True)
    approved = store.create(request(seq=4))
    store.decide(approved.id, "alice", True)
    assert store.expire(approved.id).status == "approved"  # a decision that came first wins
    with pytest.raises(ApprovalError, match="already approved; only a pending one is cancelled"):
        store.cancel(approved.id)
    assert store.cancel(store.create(request(seq=5)).id).status == "cancelled"


def test_find_gives_the_newest_request_of_an_action_and_rule(store: ApprovalStore) -> None:
    assert store.find("run-1", 3, "refund", "big_refund") is None
    old = store.create(REQUEST)
    store.expire(old.id)
    new = store.create(REQUEST)
    store.create(request(seq=4))
    store.create(request(rule_id="other"))
    store.create(request(run_id="run-2"))
    assert store.find("run-1", 3, "refund", "big_refund") == new
    assert store.find("run-1", 3, "refund", "nope") is None


def test_extend_moves_a_pending_deadline_later_only(store: ApprovalStore) -> None:
    record = store.create(REQUEST)
    assert store.extend(record.id, record.deadline - 10).deadline == record.deadline
    assert store.extend(record.id, record.deadline + 10).deadline == record.deadline + 10
    store.expire(record.id)
    assert store.extend(record.id, record.deadline + 100).deadline == record.deadline + 10


def test_finished_reports_only_the_requests_no_longer_pending(store: ApprovalStore) -> None:
    records = [store.create(REQUEST) for _ in range(3)]
    ids = [record.id for record in records]
    assert store.finished(ids) == []
    store.decide(ids[0], "alice", True)
    store.expire(ids[2])
    assert {(record.id, record.status) for record in store.finished(ids)} == {
        (ids[0], "approved"),
        (ids[2], "expired"),
    }
    assert store.finished([]) == []
    many = [store.create(REQUEST).id for _ in range(1200)]  # more ids than one query binds
    for id in many:
        store.expire(id)
    assert len(store.finished(many + ids)) == 1202


def test_concurrent_deciders_reach_exactly_one_outcome(db: Path) -> None:
    with ApprovalStore(db) as setup:
        record = setup.create(request(quorum=3))
    names = [f"p{n}" for n in range(8)]
    stores = [ApprovalStore(db) for _ in names]
    barrier = threading.Barrier(len(names))
    outcomes: list[str] = []

    def decide(store: ApprovalStore, name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(store.decide(record.id, name, True).status)
        except ApprovalError:
            outcomes.append("refused")

    threads = [threading.Thread(target=decide, args=pair) for pair in zip(stores, names, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(outcomes) == ["approved"] + ["pending"] * 2 + ["refused"] * 5
    with ApprovalStore(db) as check:
        assert len(check.decisions(record.id)) == 3


def test_the_audit_trail_cannot_be_changed(sqlite_db: Path) -> None:
    """SQLite's triggers; tests/db/test_postgres.py checks PostgreSQL's."""
    store = ApprovalStore(sqlite_db)
    record = store.create(REQUEST)
    store.decide(record.id, "alice", True, "fine")
    connection = sqlite3.connect(store.path)
    for statement in (
        "UPDATE approval_decisions SET approved = 0",
        "UPDATE approval_decisions SET comment = 'changed' WHERE approver = 'alice'",
        "DELETE FROM approval_decisions",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="approval decisions are an audit record"):
            connection.execute(statement)
    connection.close()
    [decision] = store.decisions(record.id)
    assert (decision.approved, decision.comment) == (True, "fine")
    store.close()


def test_approvals_share_the_run_log_database(db: Path) -> None:
    with RunLog(db) as log:
        log.run_started(
            "run-1", service="s", agent="a", tool="t", function="m:f", started=1.0, input={"x": 1}
        )
    with ApprovalStore(db) as store:
        store.create(REQUEST)
    assert execute(db, "SELECT value FROM meta") == [(str(SCHEMA_VERSION),)]
    assert execute(db, "SELECT run_id FROM runs") == [("run-1",)]
    assert execute(db, "SELECT run_id FROM approvals") == [("run-1",)]


def test_a_database_of_the_first_schema_is_upgraded_in_place(sqlite_db: Path) -> None:
    db = sqlite_db
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    for statement in MIGRATIONS[0]:
        connection.execute(statement)
    connection.execute(
        "INSERT INTO runs (run_id, service, agent, tool, function, started, status)"
        " VALUES ('old', 's', 'a', 't', 'm:f', 1.0, 'succeeded')"
    )
    connection.commit()
    with ApprovalStore(db) as store:
        assert store.create(REQUEST).pending
    assert connection.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert connection.execute("SELECT run_id FROM runs").fetchall() == [("old",)]
    connection.close()
