"""The databases every run log, approval and console test can run on, in one table."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proctor.db.base import Database
from proctor.db.postgres import PostgresDatabase
from tests import postgres_server

ALL_DATABASES: dict[str, Callable[[Path], Path | str]] = {
    "sqlite": lambda folder: folder / "proctor.db",
    # A new database, with proctor's schema, on the session's PostgreSQL server.
    "postgresql": lambda folder: postgres_server.shared().new_database(),
}
"""Each database by name: where a test's database is, given its folder (a SQLite path or a URL)."""

on_all_databases = pytest.mark.parametrize("db", list(ALL_DATABASES), indirect=True)
"""Runs a test taking the ``db`` fixture (tests/conftest.py) once on each database of ``ALL_DATABASES``."""


def execute(where: Database | Path | str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` placeholders) on a proctor database, bypassing proctor; its rows, committed.

    ``where`` is a ``Database`` or a location of ``ALL_DATABASES`` (a SQLite path or a PostgreSQL URL).
    """
    if isinstance(where, PostgresDatabase):
        where = where.url
    elif isinstance(where, Database):
        where = where.path
    if str(where).startswith("postgresql://"):
        with psycopg.connect(str(where), autocommit=True) as connection:
            cursor = connection.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []
    with closing(sqlite3.connect(where)) as connection, connection:
        return connection.execute(sql, params).fetchall()
