"""SQLiteDatabase: proctor's database in one SQLite file (WAL), shared by every process that opens it."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote, unquote

from proctor.db.base import Database
from proctor.db.sqlite.approvals import SQLiteApprovals
from proctor.db.sqlite.console import SQLiteConsole
from proctor.db.sqlite.runs import SQLiteRuns
from proctor.db.sqlite.schema import migrate
from proctor.errors import ConfigurationError, StoreError

__all__ = ["SQLiteDatabase"]

_PREFIX = "sqlite://"


class SQLiteDatabase(SQLiteRuns, SQLiteApprovals, SQLiteConsole, Database):
    """The database in the file ``path``, created with its folder when missing.

    Its URL is ``sqlite:///`` and the path: ``sqlite:///runs.db`` is relative to the
    working folder, ``sqlite:////var/proctor/runs.db`` absolute.
    """

    SCHEME = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = Path(path)
        if str(self._file) == ":memory:":
            raise ConfigurationError(
                "proctor's database must be a file that several connections share, not ':memory:'"
            )
        self.url = _PREFIX + "/" + quote(os.fspath(path))
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteDatabase:
        rest = url.removeprefix(_PREFIX)
        if rest == url or not rest.startswith("/") or rest == "/":
            raise ConfigurationError(
                f"{url!r} is not a SQLite database URL: write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        return cls(unquote(rest[1:]))

    @property
    def path(self) -> Path:
        return self._file

    def missing(self) -> str | None:
        if self._file.is_dir():
            return "the file is a folder, not a database"
        return None if self._file.is_file() else "the file does not exist"

    def prepare(self) -> None:
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the database {self._file}: {exc}", exc) from exc
        migrate(self._file)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __str__(self) -> str:
        return str(self._file)

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.url!r})"
