"""The SQLite schema of proctor's database (runs, actions, approvals), as numbered migrations."""

from __future__ import annotations

import os
import random
import sqlite3
import time

from proctor.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "connect", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # One row per run: the top-level call. JSON columns hold encode() text.
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            service TEXT NOT NULL,
            agent TEXT NOT NULL,
            tool TEXT NOT NULL,
            function TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            status TEXT NOT NULL,
            input TEXT,
            output TEXT,
            error TEXT,
            labels TEXT,
            estimated_cost REAL,
            actual_cost REAL,
            cost REAL NOT NULL DEFAULT 0,
            decisions TEXT,
            approval TEXT,
            effects TEXT,
            redacted INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_by_start ON runs (started)",
        "CREATE INDEX runs_by_service ON runs (service, started)",
        "CREATE INDEX runs_by_status ON runs (status, started)",
        # One row per decorated call inside a run, numbered from 1 in the order they began.
        """CREATE TABLE actions (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            tool TEXT NOT NULL,
            service TEXT NOT NULL,
            agent TEXT NOT NULL,
            started REAL NOT NULL,
            duration REAL,
            status TEXT NOT NULL,
            args TEXT,
            requested_args TEXT,
            result TEXT,
            error TEXT,
            labels TEXT,
            estimated_cost REAL,
            actual_cost REAL,
            decisions TEXT NOT NULL DEFAULT '[]',
            approval TEXT,
            effects TEXT,
            redacted INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
    (
        # One row per approval request; its status changes only in the transaction of a decision.
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            service TEXT NOT NULL,
            agent TEXT NOT NULL,
            tool TEXT NOT NULL,
            args TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            rule_name TEXT,
            message TEXT NOT NULL,
            approvers TEXT NOT NULL,
            quorum INTEGER NOT NULL,
            created REAL NOT NULL,
            deadline REAL NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
            decided REAL
        )""",
        "CREATE INDEX approvals_by_status ON approvals (status, created)",
        "CREATE INDEX approvals_by_run ON approvals (run_id)",
        # The audit trail: one row per person's decision, never changed (the triggers refuse it).
        """CREATE TABLE approval_decisions (
            approval_id TEXT NOT NULL REFERENCES approvals (id),
            approver TEXT NOT NULL,
            approved INTEGER NOT NULL,
            comment TEXT,
            at REAL NOT NULL,
            UNIQUE (approval_id, approver)
        )""",
        """CREATE TRIGGER approval_decisions_no_update BEFORE UPDATE ON approval_decisions
        BEGIN
            SELECT RAISE(ABORT, 'approval decisions are an audit record and cannot be changed');
        END""",
        """CREATE TRIGGER approval_decisions_no_delete BEFORE DELETE ON approval_decisions
        BEGIN
            SELECT RAISE(ABORT, 'approval decisions are an audit record and cannot be changed');
        END""",
    ),
    (
        # A run made by proctor.resume names the run it continues: together they are one logical run.
        "ALTER TABLE runs ADD COLUMN resumed_from TEXT",
        "CREATE INDEX runs_by_resumed_from ON runs (resumed_from)",
    ),
)
"""Migration ``n`` (counting from 1) brings a database from version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)


_BUSY_WAIT = 30.0  # seconds a connection waits for other processes, as its busy timeout says
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, usable from any thread.

    Switching a new file to WAL takes an exclusive lock, and SQLite reports "database is locked"
    at once (without its busy wait) while another process holds the file, as several processes
    opening one new run log at the same moment do: that is retried for up to 30 seconds.
    """
    connection = sqlite3.connect(path, timeout=_BUSY_WAIT, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + _BUSY_WAIT
    pause = 0.001
    try:
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                )
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(random.uniform(0, pause))  # jitter: the processes do not retry in lockstep
                pause = min(pause * 2, 0.05)
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def migrate(path: str | os.PathLike[str]) -> None:
    """Bring the database at ``path`` to ``SCHEMA_VERSION`` (creating it); ``StoreError`` if it cannot."""
    try:
        connection = connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the run log {path}: {exc}", exc) from exc
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            connection.execute("ROLLBACK")
            raise StoreError(
                f"the run log {path} has schema version {version}, newer than this proctor "
                f"({SCHEMA_VERSION}); upgrade proctor to read it"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot prepare the run log {path}: {exc} (is it a proctor run log?)", exc) from exc
    finally:
        connection.close()
