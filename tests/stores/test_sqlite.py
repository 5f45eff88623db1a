"""What only the SQLite store promises: a file shared by processes, kept across restarts, never busy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proctor import BudgetPolicy, ConfigurationError, RatePolicy, StoreError, Task, set_store, store_from_url
from proctor.stores import SQLiteStore


def test_url_names_a_file(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/a.db?busy_timeout=2")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/a.db"
    assert store.busy_timeout == 2.0
    store.close()
    for bad in ("sqlite://", "sqlite:///", f"sqlite:///{tmp_path}/a.db?nosuch=1"):
        with pytest.raises(ConfigurationError):
            store_from_url(bad)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/spend.db"
    policy = BudgetPolicy(default_limit=5.0, store=store_from_url(url))
    policy.record_spend("a", 4.0)
    held = policy.admit("a", Task(cost=0.5))
    assert held.reservation is not None
    again = BudgetPolicy(default_limit=5.0, store=store_from_url(url))
    assert (again.spent("a"), again.reserved("a")) == (4.0, 0.5)


def test_two_budgets_on_one_store_do_not_collide(tmp_path: Path) -> None:
    set_store(f"sqlite:///{tmp_path}/shared.db")
    try:
        daily = BudgetPolicy(default_limit=10.0, period="day", namespace="daily")
        monthly = BudgetPolicy(default_limit=100.0, period="month", namespace="monthly")
        rate = RatePolicy(default_limit=2.0)
    finally:
        set_store(None)
    daily.record_spend("a", 3.0)
    assert (daily.spent("a"), monthly.spent("a")) == (3.0, 0.0)
    assert daily._store is monthly._store is rate._store


def test_proctor_store_names_the_process_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_STORE", f"sqlite:///{tmp_path}/env.db")
    assert isinstance(BudgetPolicy()._store, SQLiteStore)
    monkeypatch.delenv("PROCTOR_STORE")
    assert type(BudgetPolicy()._store).__name__ == "MemoryStore"
    with pytest.raises(ConfigurationError, match="takes a Store or a URL"):
        set_store(42)  # type: ignore[arg-type]


def test_a_busy_file_raises_store_error_only_after_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock, and keeps it
    try:
        with pytest.raises(StoreError, match=r"stayed busy for 0\.2s") as info:
            store.spend("k", 1, 0)
        assert isinstance(info.value.store_error, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.spend("k", 1, 0)
    assert store.get("k", 0, 0.0) == (1, 0)
    store.close()


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    # In a fresh interpreter: this test process may run threads, and forking it would warn.
    script = textwrap.dedent(
        f"""
        import os
        from proctor.stores import SQLiteStore
        store = SQLiteStore({str(tmp_path / "fork.db")!r})
        store.spend("k", 1, 0)
        parent = store._conn
        pid = os.fork()
        if pid == 0:
            store.spend("k", 2, 0)
            os._exit(0 if store._conn is not parent else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        store.spend("k", 4, 0)
        print(store.get("k", 0, 0.0)[0])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"


OLD_SCHEMA = """
CREATE TABLE proctor_ledgers (key TEXT PRIMARY KEY, spent INTEGER NOT NULL, reserved INTEGER NOT NULL,
    period INTEGER NOT NULL, next_expiry REAL, last_lease INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE proctor_leases (key TEXT NOT NULL, id INTEGER NOT NULL, amount INTEGER NOT NULL,
    expires REAL NOT NULL, expired INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (key, id)) WITHOUT ROWID;
INSERT INTO proctor_ledgers VALUES ('k', 40, 7, 3, 100.0, 2);
INSERT INTO proctor_leases VALUES ('k', 1, 5, 100.0, 1);
INSERT INTO proctor_leases VALUES ('k', 2, 7, 200.0, 0);
"""


def test_a_file_of_the_earlier_two_table_layout_keeps_its_spend_and_leases(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_SCHEMA)
    store = SQLiteStore(path)
    assert store.get("k", 3, 150.0) == (40, 7)  # lease 1 was given back already; lease 2 still holds 7
    assert store.settle("k", 2, 6, 3) is True
    assert store.settle("k", 1, 1, 3) is True  # an expired lease's late settle still counts, once
    assert store.settle("k", 1, 1, 3) is False
    assert store.get("k", 3, 150.0) == (47, 0)
    store.close()
    with sqlite3.connect(path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "proctor_ledgers" not in tables
    assert "proctor_leases" not in tables
