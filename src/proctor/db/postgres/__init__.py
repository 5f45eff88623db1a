"""PostgresDatabase: proctor's database in PostgreSQL, shared by every process and host connected to it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from proctor.db.base import Database
from proctor.db.postgres.approvals import PostgresApprovals
from proctor.db.postgres.connection import SharedConnection, connect, driver_missing, shown
from proctor.db.postgres.console import PostgresConsole
from proctor.db.postgres.listener import ApprovalListener
from proctor.db.postgres.runs import PostgresRuns
from proctor.db.postgres.schema import migrate, schema_version
from proctor.errors import ConfigurationError

__all__ = ["PostgresDatabase"]


class PostgresDatabase(PostgresRuns, PostgresApprovals, PostgresConsole, Database):
    """The database a libpq URL names: ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``).

    Query parameters go to libpq (``?sslmode=require``, ``?host=/run/postgresql``). Needs the
    ``postgres`` extra (psycopg 3). Nothing is opened until used; reads and approval transactions
    share one connection, the run log's writer has its own. ``url`` keeps the password, so that a
    writer process can connect with it; messages and ``str()`` show ``***`` instead.
    """

    SCHEME = "postgresql"

    def __init__(self, url: str) -> None:
        error = driver_missing()
        if error is not None:
            raise error
        self.url = url
        self._shared = SharedConnection(url)
        self._listener = ApprovalListener(url)

    @classmethod
    def from_url(cls, url: str) -> PostgresDatabase:
        scheme, _, rest = url.partition("://")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  # raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if scheme not in ("postgresql", "postgres") or parts is None or not rest or rest.startswith("?"):
            raise ConfigurationError(
                f"{shown(url)!r} is not a PostgreSQL database URL: write "
                "postgresql://user:password@host:5432/dbname"
            )
        return PostgresDatabase(url)

    def missing(self) -> str | None:
        import psycopg

        try:  # a connection of its own: a caller that only asks this need not close the database
            with connect(self.url) as connection:
                version = schema_version(connection)
        except psycopg.Error as exc:
            return f"cannot connect to {self}: {exc}"
        return "it has no proctor tables" if version is None else None

    def prepare(self) -> None:
        migrate(self.url)

    def close(self) -> None:
        self._listener.close()
        self._shared.close()

    def on_approval_change(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        return self._listener.subscribe(wake)

    def __str__(self) -> str:
        return shown(self.url)

    def __repr__(self) -> str:
        return f"PostgresDatabase({shown(self.url)!r})"


class _PostgresAlias(PostgresDatabase):
    """Registers ``postgres://``, which libpq reads as ``postgresql://``; builds a ``PostgresDatabase``."""

    SCHEME = "postgres"
