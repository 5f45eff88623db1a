"""The run log's SQLite schema, as numbered migrations applied in order."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

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
            redacted INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
)
"""Migration ``n`` (counting from 1) brings a database from version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)
