"""The PostgreSQL schema of proctor's database: SQLite's tables and migrations, in PostgreSQL's types.

Migration ``n`` here does what migration ``n`` of ``proctor.db.sqlite.schema`` does, so both
databases carry the same ``schema_version`` in ``meta``. Text that is sorted or compared (ids,
services, agents) uses the "C" collation: byte order, as SQLite sorts. Besides SQLite's tables,
migration 2 adds what PostgreSQL enforces or announces itself: the audit trail refuses UPDATE,
DELETE and TRUNCATE, and every change of a request's status notifies ``NOTIFY_CHANNEL``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proctor.db.postgres.connection import connect, shown
from proctor.db.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from proctor.errors import StoreError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["MIGRATIONS", "NOTIFY_CHANNEL", "SCHEMA_VERSION", "migrate", "schema_version"]

NOTIFY_CHANNEL = "proctor_approvals"
"""Where the database announces a request whose status changed; the payload is its id."""

MIGRATION_LOCK = 0x70726F63746F72  # "proctor": the advisory lock that migrators take in turn
APPROVALS_LOCK = MIGRATION_LOCK + 1  # the advisory lock of approval transactions (db/postgres/approvals.py)

_TEXT = 'TEXT COLLATE "C"'
_REAL = "DOUBLE PRECISION"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # One row per run: the top-level call. JSON columns hold encode() text.
        f"""CREATE TABLE runs (
            run_id {_TEXT} PRIMARY KEY,
            service {_TEXT} NOT NULL,
            agent {_TEXT} NOT NULL,
            tool {_TEXT} NOT NULL,
            function TEXT NOT NULL,
            started {_REAL} NOT NULL,
            ended {_REAL},
            status {_TEXT} NOT NULL,
            input TEXT,
            output TEXT,
            error TEXT,
            labels TEXT,
            estimated_cost {_REAL},
            actual_cost {_REAL},
            cost {_REAL} NOT NULL DEFAULT 0,
            decisions TEXT,
            approval TEXT,
            effects TEXT,
            redacted BOOLEAN NOT NULL DEFAULT false
        )""",
        "CREATE INDEX runs_by_start ON runs (started)",
        "CREATE INDEX runs_by_service ON runs (service, started)",
        "CREATE INDEX runs_by_status ON runs (status, started)",
        # One row per decorated call inside a run, numbered from 1 in the order they began.
        f"""CREATE TABLE actions (
            run_id {_TEXT} NOT NULL,
            seq BIGINT NOT NULL,
            tool {_TEXT} NOT NULL,
            service {_TEXT} NOT NULL,
            agent {_TEXT} NOT NULL,
            started {_REAL} NOT NULL,
            duration {_REAL},
            status {_TEXT} NOT NULL,
            args TEXT,
            requested_args TEXT,
            result TEXT,
            error TEXT,
            labels TEXT,
            estimated_cost {_REAL},
            actual_cost {_REAL},
            decisions TEXT NOT NULL DEFAULT '[]',
            approval TEXT,
            effects TEXT,
            redacted BOOLEAN NOT NULL DEFAULT false,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
    (
        # One row per approval request; its status changes only in the transaction of a decision.
        # ``position`` is the order of insertion, as SQLite's rowid.
        f"""CREATE TABLE approvals (
            id {_TEXT} PRIMARY KEY,
            run_id {_TEXT} NOT NULL,
            seq BIGINT NOT NULL,
            service {_TEXT} NOT NULL,
            agent {_TEXT} NOT NULL,
            tool {_TEXT} NOT NULL,
            args TEXT NOT NULL,
            rule_id {_TEXT} NOT NULL,
            rule_name TEXT,
            message TEXT NOT NULL,
            approvers TEXT NOT NULL,
            quorum INTEGER NOT NULL,
            created {_REAL} NOT NULL,
            deadline {_REAL} NOT NULL,
            status {_TEXT} NOT NULL
                CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
            decided {_REAL},
            position BIGINT GENERATED ALWAYS AS IDENTITY
        )""",
        "CREATE INDEX approvals_by_status ON approvals (status, created)",
        "CREATE INDEX approvals_by_run ON approvals (run_id)",
        # The audit trail: one row per person's decision, never changed (the triggers refuse it).
        f"""CREATE TABLE approval_decisions (
            approval_id {_TEXT} NOT NULL REFERENCES approvals (id),
            approver {_TEXT} NOT NULL,
            approved BOOLEAN NOT NULL,
            comment TEXT,
            at {_REAL} NOT NULL,
            position BIGINT GENERATED ALWAYS AS IDENTITY,
            UNIQUE (approval_id, approver)
        )""",
        """CREATE FUNCTION proctor_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'approval decisions are an audit record and cannot be changed'
                USING ERRCODE = 'restrict_violation';
        END $$""",
        """CREATE TRIGGER approval_decisions_no_update BEFORE UPDATE OR DELETE ON approval_decisions
        FOR EACH ROW EXECUTE FUNCTION proctor_audit_is_append_only()""",
        """CREATE TRIGGER approval_decisions_no_truncate BEFORE TRUNCATE ON approval_decisions
        FOR EACH STATEMENT EXECUTE FUNCTION proctor_audit_is_append_only()""",
        # Waiting calls LISTEN: the notice goes out when the deciding transaction commits.
        f"""CREATE FUNCTION proctor_approval_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.id);
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER approvals_status_changed AFTER UPDATE OF status ON approvals
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION proctor_approval_changed()""",
    ),
    (
        # A run made by proctor.resume names the run it continues: together they are one logical run.
        f"ALTER TABLE runs ADD COLUMN resumed_from {_TEXT}",
        "CREATE INDEX runs_by_resumed_from ON runs (resumed_from)",
    ),
)
"""Migration ``n`` (counting from 1) brings a database from version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)
assert SCHEMA_VERSION == SQLITE_SCHEMA_VERSION, "a migration of one backend is missing in the other"


def schema_version(connection: Connection[tuple[Any, ...]]) -> int | None:
    """The schema version of the database; None when it has no ``meta`` table (nothing of proctor's)."""
    (table,) = connection.execute("SELECT to_regclass('meta')").fetchone() or (None,)
    if table is None:
        return None
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(url: str) -> None:
    """Bring the database ``url`` to ``SCHEMA_VERSION``; ``StoreError`` if it cannot.

    One transaction under an advisory lock: processes migrating at once take turns, and each after
    the first finds the schema current. A database at the current version is only read.
    """
    import psycopg

    try:
        with connect(url) as connection:
            if schema_version(connection) == SCHEMA_VERSION:
                return
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                version = schema_version(connection) or 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database {shown(url)} has schema version {version}, newer than this proctor "
                        f"({SCHEMA_VERSION}); upgrade proctor to read it"
                    )
                for statements in MIGRATIONS[version:]:
                    for statement in statements:
                        connection.execute(statement)
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(SCHEMA_VERSION),),
                )
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot prepare the database {shown(url)}: {exc} (is it proctor's database?)", exc
        ) from exc
