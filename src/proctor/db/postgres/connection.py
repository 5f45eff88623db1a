"""Connections to PostgreSQL: the driver loaded when needed, one shared connection, URLs without passwords.

psycopg (the ``postgres`` extra) is imported inside functions only, so proctor imports without it.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from proctor.errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["SharedConnection", "connect", "driver_missing", "shown"]

_CONNECT_TIMEOUT = 10  # seconds; libpq waits forever by default

_inherited: list[Any] = []
"""Connections a forked child inherited: never used nor closed there (closing would end the parent's
session), and kept referenced so that collecting them does not warn."""


def driver_missing() -> ConfigurationError | None:
    """The error to raise when psycopg is not installed, else None."""
    try:
        importlib.import_module("psycopg")
    except ImportError:
        return ConfigurationError(
            "the PostgreSQL database needs proctor's 'postgres' extra (psycopg is missing); in proctor's "
            "clone, pip install -e '.[postgres]' (proctor is not on PyPI)"
        )
    return None


def shown(url: str) -> str:
    """``url`` with its password replaced by ``***``: for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def connect(url: str, *, autocommit: bool = True) -> Connection[tuple[Any, ...]]:
    """A new connection to the database ``url``; psycopg's errors as they come."""
    import psycopg

    return psycopg.connect(url, autocommit=autocommit, connect_timeout=_CONNECT_TIMEOUT)


class SharedConnection:
    """One autocommit connection that a database's reads and approval transactions share, a thread at a time.

    Opened at first use; opened anew when the server dropped it, and in a forked child.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._connection: Connection[tuple[Any, ...]] | None = None
        self._pid = os.getpid()

    @contextmanager
    def use(self, doing: str) -> Iterator[Connection[tuple[Any, ...]]]:
        """The connection, held by this thread for the block; psycopg errors become ``StoreError``.

        ``doing`` says what failed in the error: ``read runs from``.
        """
        import psycopg

        with self._lock:
            try:
                connection = self._opened()
                yield connection
            except psycopg.Error as exc:
                self._drop_if_broken()
                raise StoreError(f"cannot {doing} {shown(self._url)}: {exc}", exc) from exc

    def _opened(self) -> Connection[tuple[Any, ...]]:
        if self._pid != os.getpid():  # a forked child: the socket is the parent's
            if self._connection is not None:
                _inherited.append(self._connection)
            self._connection, self._pid = None, os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = connect(self._url)
        return self._connection

    def _drop_if_broken(self) -> None:
        connection = self._connection
        if connection is not None and connection.broken:
            self._connection = None
            connection.close()

    def close(self) -> None:
        """Close the connection; a later ``use`` opens another."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and self._pid == os.getpid():
                connection.close()
            elif connection is not None:
                _inherited.append(connection)
