"""SQLiteDatabase on a real file: the writer's all-or-nothing batches, approval transactions, closing."""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from proctor import ApprovalError, ApprovalStore, ConfigurationError, RunLog, StoreError
from proctor.db import Database, SQLiteDatabase
from proctor.db.records import ApprovalRecord
from proctor.db.sqlite.schema import connect

RUN = ("r1", "svc", "bot", "handle", "app:handle", 1.0, "null", None, False)


def plain_action(seq: int, cost: object = 0.5) -> tuple[object, ...]:
    return ("r1", seq, "search", "svc", "bot", 2.0, 0.1, "succeeded", "{}", "[]", None, cost)


def request(id: str = "a1") -> ApprovalRecord:
    return ApprovalRecord(
        id, "r1", 1, "svc", "bot", "refund", {"amount": 5}, "big", None, "ask", ("finance",), 1, 1.0, 9.0,
        "pending", None,
    )  # fmt: skip


@pytest.fixture
def database(tmp_path: Path) -> SQLiteDatabase:
    database = SQLiteDatabase(tmp_path / "nested" / "proctor.db")
    database.prepare()  # creates the folder too
    return database


def test_a_batch_is_written_whole_in_the_order_given(database: SQLiteDatabase) -> None:
    writer = database.run_writer()
    try:
        writer.write([("run", [RUN]), ("plain_action", [plain_action(1), plain_action(2)])])
        end = (3.0, "succeeded", '"ok"', None, None, 0.2, 1.2, "[]", None, None, False, "r1")
        writer.write([("end", [end])])
    finally:
        writer.close()
    [run] = database.runs(
        service=None, agent=None, status=None, since=None, until=None, limit=None, oldest_first=False
    )
    assert (run.status, run.output, run.cost) == ("succeeded", '"ok"', 1.2)
    assert [action.seq for action in database.actions("r1")] == [1, 2]
    assert database.actions_cost("r1") == 1.0


def test_a_batch_with_a_row_the_database_refuses_writes_nothing(database: SQLiteDatabase) -> None:
    writer = database.run_writer()
    try:
        with pytest.raises(StoreError) as info:
            writer.write([("run", [RUN]), ("plain_action", [plain_action(1), plain_action(2, Decimal(1))])])
        assert info.value.store_error is not None  # the driver's exception is kept
        writer.write([("plain_action", [plain_action(3)])])  # the writer goes on
    finally:
        writer.close()
    assert database.run("r1") is None
    assert [action.seq for action in database.actions("r1")] == [3]


def add_then_refuse(database: SQLiteDatabase) -> None:
    with database.approval_changes() as changes:
        changes.add(request())
        assert changes.get("a1") == request()
        raise ApprovalError("refused")


def test_an_approval_transaction_that_raises_is_rolled_back(database: SQLiteDatabase) -> None:
    with pytest.raises(ApprovalError, match="refused"):  # the caller's error, not a StoreError
        add_then_refuse(database)
    assert database.approval("a1") is None
    with database.approval_changes() as changes:
        changes.add(request())
    assert database.approval("a1") == request()


def test_a_closed_database_opens_again_when_used(database: SQLiteDatabase) -> None:
    with database.approval_changes() as changes:
        changes.add(request())
    database.close()
    database.close()
    assert database.approval("a1") == request()
    database.close()


def test_a_database_that_is_not_a_file_has_no_path() -> None:
    class Server(SQLiteDatabase):
        """A stand-in for a backend on a server: everything but ``path`` comes from SQLite."""

        path = Database.path

        def __str__(self) -> str:
            return "postgresql://db.example.com/proctor"

    with pytest.raises(
        ConfigurationError, match=r"the database postgresql://db\.example\.com/proctor is not a file"
    ):
        Server("x.db").path  # noqa: B018


def test_run_log_and_approval_store_take_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/proctor.db"
    with RunLog(url, pii=False) as log:
        log.run_started("r1", service="s", agent="a", tool="t", function="m:f", started=1.0, input=None)
    with ApprovalStore(url) as store:
        assert store.path == tmp_path / "proctor.db"
        assert store.database.url == url
    monkeypatch.setenv("PROCTOR_DB", url)
    with RunLog() as again:
        assert again.path == tmp_path / "proctor.db"
        assert [run.run_id for run in again.runs()] == ["r1"]
        assert repr(again) == f"<RunLog {str(tmp_path / 'proctor.db')!r}>"


def test_a_bad_url_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no database backend serves 'redis://"):
        RunLog("redis://localhost/0")
    with pytest.raises(ConfigurationError, match="no database backend serves 'redis://"):
        ApprovalStore("redis://localhost/0")


def test_a_new_file_another_process_holds_is_waited_for_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    # A rollback-journal file, as a new one is, that another process is still creating.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer: SQLite gives up at once rather than deadlock
    holder.execute("INSERT INTO t VALUES (1)")
    releasing = threading.Timer(0.2, holder.execute, ("COMMIT",))
    releasing.start()
    try:
        connection = connect(path)  # before: "database is locked" at once, and the run log was off
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.close()
    finally:
        releasing.join(30)
        holder.close()
