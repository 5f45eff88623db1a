"""PostgresDatabase on a real server (tests/postgres_server.py): URLs, migrations, the writer, approvals,
LISTEN/NOTIFY wake-ups across processes, several writers at once, and what-if equal to SQLite's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proctor import (
    ApprovalError,
    ApprovalStore,
    BudgetExceededError,
    ConfigurationError,
    PolicyViolationError,
    RunLog,
    StoreError,
)
from proctor import runlog as runlog_decorator
from proctor.approvals.base import ApprovalRequest
from proctor.approvals.durable import DurableChannel
from proctor.db import Database, PostgresDatabase, SQLiteDatabase, database_from_url
from proctor.db.postgres.schema import SCHEMA_VERSION
from proctor.runs import recording_into, set_run_log
from proctor.runs.default import process_run_log
from proctor.runs.result import ImpactReport
from proctor.runs.whatif import what_if
from proctor.stores import MemoryStore, set_store
from tests import postgres_server
from tests.postgres_server import PASSWORD
from tests.runs.test_writer_process import wait_for_writer_process

REPO = Path(__file__).resolve().parents[2]

REQUEST = ApprovalRequest(
    rule_id="big_refund", message="refund over 100", approvers=("finance",), timeout=60.0,
    service="shop", agent="bot", tool="refund", run_id="r1", args={"amount": 500}, seq=1,
)  # fmt: skip


def python(code: str) -> subprocess.Popen[str]:
    """A child interpreter running ``code``, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err
    return out


# -- URLs


def test_a_postgresql_url_names_a_postgres_database_and_keeps_its_password() -> None:
    url = "postgresql://me:p%40ss%3Aw@db.example.com:5433/proctor?sslmode=require"
    database = database_from_url(url)
    assert isinstance(database, PostgresDatabase)
    assert database.url == url
    assert database_from_url(database.url).url == url
    assert str(database) == "postgresql://me:***@db.example.com:5433/proctor?sslmode=require"
    assert "p%40ss" not in repr(database)
    alias = database_from_url("postgres://me@db/proctor")
    assert type(alias) is PostgresDatabase
    with pytest.raises(ConfigurationError, match=r"the database .* is not a file"):
        _ = database.path


@pytest.mark.parametrize("url", ["postgresql://", "postgresql://?host=x", "postgresql://me:secret@db:port/x"])
def test_a_postgresql_url_without_a_database_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a PostgreSQL database URL") as info:
        database_from_url(url)
    assert "secret" not in str(info.value)


def test_without_psycopg_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigurationError) as info:
        database_from_url("postgresql://me@db/proctor")
    assert "needs proctor's 'postgres' extra (psycopg is missing)" in str(info.value)
    assert "pip install -e '.[postgres]'" in str(info.value)


def test_a_refused_password_is_not_shown() -> None:
    server = postgres_server.shared()
    assert PASSWORD != "Wr0ngSecret"
    database = database_from_url(f"postgresql://proctor:Wr0ngSecret@127.0.0.1:{server.port}/postgres")
    with pytest.raises(StoreError) as info:
        database.prepare()
    assert "Wr0ngSecret" not in str(info.value)
    assert "proctor:***@" in str(info.value)
    assert database.missing() is not None
    database.close()


# -- migrations


def test_an_empty_database_is_migrated_and_missing_until_then() -> None:
    url = postgres_server.shared().new_database(empty=True)
    database = PostgresDatabase(url)
    try:
        assert database.missing() == "it has no proctor tables"
        database.prepare()
        database.prepare()  # a current schema is only read
        assert database.missing() is None
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
    finally:
        database.close()


def test_migrators_racing_from_four_processes_all_succeed() -> None:
    url = postgres_server.shared().new_database(empty=True)
    code = f"""
        from proctor.db import database_from_url
        database = database_from_url({url!r})
        database.prepare()
        database.close()
        print("ok")
    """
    children = [python(code) for _ in range(4)]
    assert [finish(child).strip() for child in children] == ["ok"] * 4
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]


def test_a_database_of_a_newer_proctor_is_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="has schema version 99, newer than this proctor"):
        PostgresDatabase(postgres_url).prepare()


# -- the writer

RUN = ("r1", "svc", "bot", "handle", "app:handle", 1.0, "null", None, False)


def plain_action(seq: int, cost: object = 0.5) -> tuple[object, ...]:
    return ("r1", seq, "search", "svc", "bot", 2.0, 0.1, "succeeded", "{}", "[]", None, cost)


def test_a_batch_is_written_whole_or_not_at_all(postgres_url: str) -> None:
    database = PostgresDatabase(postgres_url)
    writer = database.run_writer()
    try:
        full = ("r1", 1, "search", "svc", "bot", 2.0, 0.1, "failed", "{}", '{"a":1}', None, '"x"', "{}", 0.1,
                0.2, '[{"rule":"r"}]', "{}", "[]", True)  # fmt: skip
        writer.write(
            [("run", [RUN]), ("action", [full]), ("plain_action", [plain_action(1), plain_action(2)])]
        )
        with pytest.raises(StoreError) as info:
            writer.write([("plain_action", [plain_action(3)]), ("plain_action", [plain_action(4, "many")])])
        assert isinstance(info.value.store_error, psycopg.Error)
        end = (3.0, "succeeded", '"ok"', None, None, 0.2, 1.2, "[]", None, None, True, "r1")
        writer.write([("end", [end])])  # the writer goes on after a refused batch
    finally:
        writer.close()
    try:
        run = database.run("r1")
        assert run is not None
        assert (run.status, run.output, run.cost, run.redacted) == ("succeeded", '"ok"', 1.2, True)
        actions = database.actions("r1")
        assert [action.seq for action in actions] == [1, 2]
        # A plain action replaced the full one of the same seq entirely, as SQLite's INSERT OR REPLACE.
        assert (actions[0].requested_args, actions[0].decisions, actions[0].redacted) == (None, "[]", False)
        assert database.actions_cost("r1") == 1.0
    finally:
        database.close()


def record_by_hand(log: RunLog, prefix: str, runs: int) -> None:
    for number in range(runs):
        run_id = f"{prefix}-{number}"
        log.run_started(
            run_id, service="svc", agent="bot", tool="job", function="app:job", started=1000.0 + number,
            input={"n": number, "text": "ünïcødé"},
        )  # fmt: skip
        for seq in (1, 2):
            log.action(run_id, seq, "t", "svc", "bot", 1000.0 + number, 0.01, "succeeded", {"seq": seq},
                       result={"ok": seq}, actual_cost=0.25)  # fmt: skip
        log.run_finished(run_id, status="succeeded", ended=1001.0 + number, output=[number], cost=0.5)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_the_run_log_round_trips_runs_and_actions(postgres_url: str, writer: Any) -> None:
    with RunLog(postgres_url, pii=False, writer=writer) as log:
        if writer == "process":  # it rebuilds the database from the URL, password included
            wait_for_writer_process(log, "warm-up")
        record_by_hand(log, "r", 20)
        assert log.flush(60)
        assert log.failed == 0
        runs = log.runs(limit=None, oldest_first=True)
        assert [run.run_id for run in runs] == [f"r-{n}" for n in range(20)]
        assert runs[3].input == '{"n":3,"text":"ünïcødé"}'
        assert (runs[3].status, runs[3].cost, runs[3].output) == ("succeeded", 0.5, "[3]")
        assert [action.result for action in log.actions("r-3")] == ['{"ok":1}', '{"ok":2}']
        assert log.spent("svc", "bot", 1000.0, 1010.0) == 20 * 0.25 + 9 * 0.0  # actions only: no own cost
        assert sum(len(rows) for rows in log.action_rows(["r-1", "r-2", "nope"], ["seq"])) == 4


def test_four_processes_write_one_log_at_once(postgres_url: str) -> None:
    code = """
        import sys
        from proctor import RunLog
        from tests.db.test_postgres import record_by_hand
        with RunLog(sys.argv[1], pii=False, writer="thread") as log:
            record_by_hand(log, sys.argv[2], 200)
            assert log.flush(60) and log.failed == 0
    """
    children = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), postgres_url, f"p{n}"], cwd=REPO)
        for n in range(4)
    ]
    assert [child.wait(120) for child in children] == [0] * 4
    database = PostgresDatabase(postgres_url)
    try:
        runs = database.runs(
            service=None,
            agent=None,
            status="succeeded",
            since=None,
            until=None,
            limit=None,
            oldest_first=True,
        )
        assert len(runs) == 800
        assert sum(len(rows) for rows in database.action_rows([run.run_id for run in runs], ["seq"])) == 1600
    finally:
        database.close()


def test_claim_prune_and_the_console_summaries(postgres_url: str) -> None:
    with RunLog(postgres_url, pii=False, writer="thread") as log:
        record_by_hand(log, "r", 3)
        log.run_started("live", service="other", agent="bot", tool="job", function="f", started=time.time(),
                        input=None)  # fmt: skip
        decisions = [{"rule": "big", "action": "deny", "decided": True}, {"rule": "log", "action": "log"}]
        log.action("live", 1, "t", "other", "bot", time.time(), 0.01, "denied", {}, decisions=decisions)
        assert log.flush(60)
        database = log.database
        assert database.services() == ["other", "svc"]
        counts = database.decision_counts(time.time())
        assert (counts.hour, counts.day, counts.by_rule) == (2, 2, {("big", "deny"): (1, 1)})
        assert log.claim("live", RuntimeError("gone"))
        assert not log.claim("live", RuntimeError("again"))
        log.unclaim("live")
        assert log.run("live").status == "running"  # type: ignore[union-attr]
        assert log.prune(1002.0) == 2
        assert [run.run_id for run in log.runs(limit=None)] == ["live", "r-2"]


# -- approvals


def test_approvals_with_a_quorum_and_an_audit_trail_that_never_changes(postgres_url: str) -> None:
    with ApprovalStore(postgres_url) as store:
        record = store.create(replace(REQUEST, quorum=2))
        assert store.resolve(record.id[:6]) == record.id
        assert store.decide(record.id, "alice", True, "fine").pending
        with pytest.raises(ApprovalError, match="each person decides once"):
            store.decide(record.id, "alice", True)
        assert store.decide(record.id, "bob", True).status == "approved"
        with pytest.raises(ApprovalError, match="already approved"):
            store.decide(record.id, "carol", False)
        assert [(d.approver, d.approved, d.comment) for d in store.decisions(record.id)] == [
            ("alice", True, "fine"),
            ("bob", True, None),
        ]
        assert [r.id for r in store.list(status="approved")] == [record.id]
        assert store.finished([record.id, "unknown"])[0].status == "approved"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for statement in (
            "UPDATE approval_decisions SET approved = false",
            "DELETE FROM approval_decisions",
            "TRUNCATE approval_decisions CASCADE",
        ):
            with pytest.raises(psycopg.errors.RestrictViolation, match="audit record and cannot be changed"):
                connection.execute(statement)


def test_concurrent_approvers_reach_the_quorum(postgres_url: str) -> None:
    with ApprovalStore(postgres_url) as store:
        records = [store.create(replace(REQUEST, quorum=4)) for _ in range(5)]
    stores = [ApprovalStore(postgres_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: [stores[n].decide(r.id, f"p{n}", True) for r in records], range(4)))
        assert {stores[0].get(r.id).status for r in records} == {"approved"}
    finally:
        for each in stores:
            each.close()


def test_a_decision_in_one_process_wakes_a_call_waiting_in_another(postgres_url: str) -> None:
    waiter = python(
        """
        import sys, time
        from proctor import ApprovalStore
        from proctor.approvals.durable import DurableChannel
        from tests.db.test_postgres import REQUEST
        channel = DurableChannel(ApprovalStore(sys.argv[1]))
        channel.poll_interval = 600.0  # only a notification can end the wait before the test's timeout
        decision = channel.request(REQUEST)
        print(decision.approved, decision.approver, flush=True)
        """.replace("sys.argv[1]", repr(postgres_url))
    )
    with ApprovalStore(postgres_url) as store:
        deadline = time.monotonic() + 60
        while not store.list(status="pending"):
            assert time.monotonic() < deadline, "the waiter never asked"
            time.sleep(0.02)
        [pending] = store.list(status="pending")
        store.decide(pending.id, "alice", True)
    assert finish(waiter).split() == ["True", "alice"]


def test_async_waiters_are_woken_by_the_database(postgres_url: str) -> None:
    channel = DurableChannel(ApprovalStore(postgres_url))
    channel.poll_interval = 600.0

    async def ask_then_decide() -> list[Any]:
        waits = [asyncio.ensure_future(channel.arequest(REQUEST)) for _ in range(3)]
        with ApprovalStore(postgres_url) as store:
            while len(store.list(status="pending")) < 3:
                await asyncio.sleep(0.02)
            for record in store.list(status="pending"):
                store.decide(record.id, "bob", False, "no")
        return await asyncio.wait_for(asyncio.gather(*waits), 60)

    try:
        answers = asyncio.run(ask_then_decide())
    finally:
        channel.store().close()
    assert [(answer.approved, answer.approver, answer.comment) for answer in answers] == [
        (False, "bob", "no")
    ] * 3


# -- what-if over the same traffic in SQLite and PostgreSQL

POLICIES: dict[str, Any] = {
    "policies": [{"id": "huge", "when": {"args.amount": {"gt": 900}}, "action": "deny"}]
}
STRICTER: dict[str, Any] = {
    "policies": [
        {"id": "big", "when": {"args.amount": {"gt": 300}}, "action": "deny"},
        {"id": "spendy", "when": {"cost_today": {"gt": 2.0}}, "action": "deny"},
    ],
    "budgets": [{"id": "spend", "per": "service", "limit": 3.0}],
}


def record_traffic(log: RunLog) -> None:
    @runlog_decorator(service="shop", name="refund", cost=0.4, policies=POLICIES)
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    @runlog_decorator(service="shop", name="job", policies=POLICIES)
    def job(amounts: list[int]) -> int:
        done = 0
        for amount in amounts:
            try:
                refund(amount)
                done += 1
            except PolicyViolationError:
                pass
        return done

    set_store(MemoryStore())
    try:
        with recording_into(log):
            for amounts in ([50, 400], [1000, 20, 700], [310], [5, 5, 5, 950]):
                job(amounts)
        assert log.flush(60)
    finally:
        set_store(None)


def copy_log(source: Database, target: Database) -> None:
    """Every run and action of ``source`` written to ``target`` as the run log's writer writes them."""
    runs = source.runs(
        service=None, agent=None, status=None, since=None, until=None, limit=None, oldest_first=True
    )
    writer = target.run_writer()
    try:
        for run in runs:
            start = (run.run_id, run.service, run.agent, run.tool, run.function, run.started, run.input,
                     run.labels, run.redacted)  # fmt: skip
            end = (run.ended, run.status, run.output, run.error, run.estimated_cost, run.actual_cost,
                   run.cost, run.decisions, run.approval, run.effects, run.redacted, run.run_id)  # fmt: skip
            actions = [tuple(action) for action in source.actions(run.run_id)]
            writer.write([("run", [start]), ("action", actions), ("end", [end])])
    finally:
        writer.close()


def test_what_if_over_postgresql_reports_what_it_reports_over_sqlite(
    tmp_path: Path, postgres_url: str
) -> None:
    with RunLog(tmp_path / "runs.db", pii=False, writer="thread") as sqlite_log:
        record_traffic(sqlite_log)
        copy_log(sqlite_log.database, PostgresDatabase(postgres_url))
        with RunLog(postgres_url, pii=False) as postgres_log:
            runs = {name: log.runs(limit=None, oldest_first=True) for name, log in
                    (("sqlite", sqlite_log), ("postgres", postgres_log))}  # fmt: skip
            assert len(runs["sqlite"]) == 4
            assert runs["postgres"] == runs["sqlite"]
            ids = [run.run_id for run in runs["sqlite"]]
            assert list(postgres_log.actions_of(ids)) == list(sqlite_log.actions_of(ids))
            reports = {}
            for name, log in (("sqlite", sqlite_log), ("postgres", postgres_log)):
                set_store(MemoryStore())
                try:
                    reports[name] = ImpactReport.of(what_if(log, runs[name], STRICTER))
                finally:
                    set_store(None)
    assert reports["postgres"] == reports["sqlite"]
    assert reports["sqlite"].actions_changed > 0


def test_a_plain_path_is_still_sqlite() -> None:
    assert isinstance(database_from_url("runs.db"), SQLiteDatabase)


# -- the command line and the console, unchanged


def test_the_command_line_and_the_console_work_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    from click.testing import CliRunner
    from starlette.testclient import TestClient

    from proctor.approvals.approvers import Approvers
    from proctor.cli.main import cli
    from proctor.web.app import create_app

    with RunLog(postgres_url, pii=False, writer="thread") as log:
        record_traffic(log)
    with ApprovalStore(postgres_url) as store:
        record = store.create(REQUEST)
    policy_file = tmp_path / "stricter.yaml"
    policy_file.write_text(json.dumps(STRICTER))
    env = {"PROCTOR_DB": postgres_url, "COLUMNS": "200"}
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--service", "shop"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("job") == 4
    replayed = runner.invoke(cli, ["replay", "--policies", str(policy_file)], env=env)
    assert replayed.exit_code == 0, replayed.output
    pending = runner.invoke(cli, ["approvals", "list"], env=env)
    assert pending.exit_code == 0, pending.output
    assert record.id[:8] in pending.output
    approved = runner.invoke(cli, ["approvals", "approve", record.id[:8], "--as", "alice"], env=env)
    assert approved.exit_code == 0, approved.output
    assert PASSWORD not in listed.output + replayed.output + pending.output + approved.output

    approvers = Approvers(path=tmp_path / "approvers.yaml")
    token = approvers.add("alice", ["finance"])
    app = create_app(db=postgres_url, approvers=approvers.path, secret="s")
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/login")
        form = {"token": token, "csrf_token": page.text.split('name="csrf_token" value="')[1].split('"')[0]}
        assert client.post("/login", data={**form, "next": "/"}).status_code == 303
        for path in ("/approvals", "/runs", f"/approvals/{record.id}"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
        assert "shop" in client.get("/runs").text


def test_spend_with_a_postgresql_run_log_needs_a_store_and_says_so(postgres_url: str) -> None:
    """A run log in PostgreSQL holds no spend (a SQLite one doubles as the host's store): a budget or
    cost_today there must name its store, and is told how, instead of failing on 'not a file'."""
    limited = {"budgets": [{"id": "spend", "limit": 2.0}]}

    @runlog_decorator(service=f"pg-{uuid.uuid4().hex[:8]}", cost=1.0, policies=limited)
    def paid() -> str:
        return "ok"

    before = process_run_log()
    with RunLog(postgres_url) as log:
        set_run_log(log)  # the process's log, as PROCTOR_DB=postgresql://... makes it
        try:
            with pytest.raises(ConfigurationError, match=r"set PROCTOR_STORE \(redis://.*set_store\(\)"):
                paid()
            set_store(MemoryStore())
            assert [paid(), paid()] == ["ok", "ok"]
            with pytest.raises(BudgetExceededError):
                paid()
        finally:
            set_store(None)
            set_run_log(before)
