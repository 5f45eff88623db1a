"""The databases every run log, approval and console test can run on, in one table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import postgres_server

ALL_DATABASES: dict[str, Callable[[Path], Path | str]] = {
    "sqlite": lambda folder: folder / "proctor.db",
    # A new database, with proctor's schema, on the session's PostgreSQL server.
    "postgresql": lambda folder: postgres_server.shared().new_database(),
}
"""Each database by name: where a test's database is, given its folder (a SQLite path or a URL)."""

on_all_databases = pytest.mark.parametrize("db", list(ALL_DATABASES), indirect=True)
"""Runs a test taking the ``db`` fixture (tests/conftest.py) once on each database of ``ALL_DATABASES``."""
