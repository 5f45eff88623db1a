"""proctor's database, chosen by URL: ``database_from_url("sqlite:///.proctor/runs.db")``,
``database_from_url("postgresql://user:password@host/dbname")``.

The run log, the approval store and the console reach it only through ``Database``.
Every backend module is imported here, so ``known_schemes()`` is complete; a
backend whose driver is a third-party package imports it only when built.
"""

from __future__ import annotations

import os

from proctor.db.base import ApprovalChanges, Database, RowKind, RunWriter, known_schemes, scheme_class
from proctor.db.postgres import PostgresDatabase
from proctor.db.sqlite import SQLiteDatabase
from proctor.errors import ConfigurationError

__all__ = [
    "DEFAULT_PATH",
    "ApprovalChanges",
    "Database",
    "PostgresDatabase",
    "RowKind",
    "RunWriter",
    "SQLiteDatabase",
    "database_from_url",
    "known_schemes",
]

DEFAULT_PATH = ".proctor/runs.db"
"""Where the database lives when neither the caller nor ``PROCTOR_DB`` says."""


def database_from_url(url_or_path: str | os.PathLike[str] | None = None) -> Database:
    """The database a URL such as ``"sqlite:///runs.db"`` names, or the SQLite file at a plain path.

    None means ``$PROCTOR_DB`` (a URL or a path), else ``DEFAULT_PATH``. Nothing is opened
    yet. Raises ``ConfigurationError`` for a scheme no backend serves, or a URL its backend
    cannot use.
    """
    if url_or_path is None:
        url_or_path = os.environ.get("PROCTOR_DB") or DEFAULT_PATH
    if not isinstance(url_or_path, str) or "://" not in url_or_path:
        return SQLiteDatabase(url_or_path)
    scheme = url_or_path.partition("://")[0]
    cls = scheme_class(scheme)
    if cls is None:
        raise ConfigurationError(
            f"no database backend serves {url_or_path!r}; known schemes: "
            + ", ".join(f"{known}://" for known in known_schemes())
            + " (or give a plain path for a SQLite file)"
        )
    return cls.from_url(url_or_path)
