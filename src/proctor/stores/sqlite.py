"""SQLiteStore: ledgers and token buckets in one SQLite file, shared by the processes of one host.

Every check-and-change is one ``BEGIN IMMEDIATE`` transaction, so it is atomic
across threads and processes; the file is in WAL mode with
``synchronous=NORMAL`` (a committed change survives the process, not
necessarily a power cut). Each process opens its own connection (again after
a fork). A busy database is waited for, then retried, up to ``busy_timeout``
seconds; only then does a caller see a ``StoreError``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar
from urllib.parse import parse_qs

from proctor.errors import ConfigurationError, StoreError
from proctor.stores.base import EXPIRED_KEPT, LedgerSupport, Store, TokenBucketSupport

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_EPSILON = 1e-9  # as in MemoryStore: a refill of exactly one token may land just under 1.0
_CLOCK_BACK = 1.0  # a bucket updated this far in the future was written before the clock restarted (a reboot)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proctor_ledgers (
    key TEXT PRIMARY KEY,
    spent INTEGER NOT NULL,
    reserved INTEGER NOT NULL,  -- the sum of the live leases' amounts
    period INTEGER NOT NULL,
    next_expiry REAL,           -- at most the earliest expiry of a live lease; NULL: none
    -- The ledger's last lease id: ids only grow and ledger rows are never deleted,
    -- so a second settle of an old lease cannot hit a new one.
    last_lease INTEGER NOT NULL
) WITHOUT ROWID;
-- Keyed by (key, id), with no other index: a reserve or settle writes the ledger's page and one page here.
CREATE TABLE IF NOT EXISTS proctor_leases (
    key TEXT NOT NULL,
    id INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    expires REAL NOT NULL,
    expired INTEGER NOT NULL DEFAULT 0, -- 1: given back, kept so that a late settle still counts
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS proctor_buckets (
    key TEXT PRIMARY KEY,
    level REAL NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
"""

# The SQL texts stay constant, so sqlite3's statement cache prepares each once per connection.
# No UPDATE or DELETE ... RETURNING: in SQLite it costs about a whole extra transaction; a SELECT
# of the same row inside the same BEGIN IMMEDIATE is as atomic and much cheaper.
_SELECT_LEDGER = "SELECT spent, reserved, period, next_expiry, last_lease FROM proctor_ledgers WHERE key = ?"
_INSERT_LEDGER = (
    "INSERT INTO proctor_ledgers (spent, reserved, period, next_expiry, last_lease, key) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPDATE_LEDGER = (
    "UPDATE proctor_ledgers SET spent = ?, reserved = ?, period = ?, next_expiry = ?, last_lease = ? "
    "WHERE key = ?"
)
# One statement, so one snapshot; leases past their expiry count as given back. While the
# earliest expiry is still ahead, the ledger's reserved column is that sum already.
_SELECT_LEDGER_NOW = (
    "SELECT spent, period, CASE WHEN next_expiry IS NULL OR next_expiry > ? THEN reserved ELSE "
    "(SELECT COALESCE(SUM(amount), 0) FROM proctor_leases "
    "WHERE key = ? AND expired = 0 AND expires > ?) END FROM proctor_ledgers WHERE key = ?"
)
_INSERT_LEASE = "INSERT INTO proctor_leases (key, id, amount, expires) VALUES (?, ?, ?, ?)"
_SELECT_LEASE = "SELECT amount, expired FROM proctor_leases WHERE key = ? AND id = ?"
_DELETE_LEASE = "DELETE FROM proctor_leases WHERE key = ? AND id = ?"
# One statement reads the lease and moves it from reserved to spent (an expired lease was given
# back already, so only its actual spend counts); it changes no row when the lease is gone.
_SETTLE_LEDGER = (
    "UPDATE proctor_ledgers SET reserved = reserved - COALESCE((SELECT amount FROM proctor_leases "
    "WHERE key = ?1 AND id = ?2 AND expired = 0), 0), "
    "spent = CASE WHEN period < ?3 THEN 0 ELSE spent END + ?4, period = MAX(period, ?3) "
    "WHERE key = ?1 AND EXISTS (SELECT 1 FROM proctor_leases WHERE key = ?1 AND id = ?2)"
)
_UPSERT_BUCKET = (
    "INSERT INTO proctor_buckets (key, level, updated) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET level = excluded.level, updated = excluded.updated"
)

_open_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


class SQLiteStore(Store, LedgerSupport, TokenBucketSupport):
    """Ledgers and token buckets in a SQLite file: exact across one host's processes, kept across restarts.

    Parameters:
        path: the database file; created with its tables when missing.
        busy_timeout: the most seconds an operation waits for other processes
            before it raises ``StoreError``.
    """

    SCHEME = "sqlite"
    base_exceptions = (sqlite3.Error,)

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if not busy_timeout > 0:
            raise ConfigurationError(f"busy_timeout must be > 0 seconds, got {busy_timeout!r}")
        self.path = os.fspath(path)
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        # Connections inherited across a fork: the child must neither use nor close them.
        self._inherited: list[sqlite3.Connection] = []
        _open_stores.add(self)
        self._run(lambda conn: None)  # create the file and tables now, so a bad path fails here

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``, optionally ``?busy_timeout=5``."""
        rest = url.partition("://")[2]
        path, _, query = rest.partition("?")
        if not path.startswith("/") or len(path) < 2:
            raise ConfigurationError(
                "a SQLite store URL names a file, as sqlite:///relative.db or "
                f"sqlite:////abs/path.db; got {url!r}"
            )
        options = {name: values[-1] for name, values in parse_qs(query).items()}
        unknown = set(options) - {"busy_timeout"}
        if unknown:
            raise ConfigurationError(f"unknown option(s) in {url!r}: {', '.join(sorted(unknown))}")
        try:
            busy_timeout = float(options.get("busy_timeout", 30.0))
        except ValueError:
            raise ConfigurationError(f"busy_timeout in {url!r} must be a number of seconds") from None
        return cls(path[1:], busy_timeout=busy_timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # Connections and transactions.

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:
            self._inherited.append(self._conn)
            self._conn = None
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _run(self, body: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """``body`` in one transaction (``BEGIN IMMEDIATE`` if it writes), retried while the file is busy."""
        deadline = time.monotonic() + self.busy_timeout  # the connection's own busy wait counts too
        pause = 0.001
        with self._lock:
            while True:
                conn: sqlite3.Connection | None = None
                try:
                    conn = self._connection()
                    if not write:
                        return body(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = body(conn)
                        conn.execute("COMMIT")
                    finally:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                    return result
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY_CODES:
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"{self.path} stayed busy for {self.busy_timeout:g}s (other processes hold it); "
                            "raise busy_timeout or spread the load",
                            exc,
                        ) from exc
                    time.sleep(random.uniform(0, pause))  # jitter: waiters do not retry in lockstep
                    pause = min(pause * 2, 0.05)

    # Ledgers.

    def reserve(
        self, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
    ) -> tuple[int | None, int, int]:
        return self._run(lambda conn: _reserve(conn, key, amount, limit, window, now, lease))

    def reserve_if(
        self,
        ledgers: Sequence[tuple[str, int]],
        amount: int,
        now: float,
        lease: float,
        admit: Callable[[int, int], bool],
    ) -> list[int] | None:
        def body(conn: sqlite3.Connection) -> list[int] | None:
            key, window = ledgers[0]
            spent, reserved = _ledger_now(conn, key, window, now)
            if not admit(spent, reserved):
                return None
            if not amount:
                return []
            ids = [_reserve(conn, key, amount, None, window, now, lease)[0] for key, window in ledgers]
            return [lease_id for lease_id in ids if lease_id is not None]

        return self._run(body)

    def settle(self, key: str, lease_id: int, actual: int, window: int) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            if not conn.execute(_SETTLE_LEDGER, (key, lease_id, window, actual)).rowcount:
                return False  # settled or released already
            conn.execute(_DELETE_LEASE, (key, lease_id))
            return True

        return self._run(body)

    def release(self, key: str, lease_id: int) -> None:
        def body(conn: sqlite3.Connection) -> None:
            row = conn.execute(_SELECT_LEASE, (key, lease_id)).fetchone()
            if row is None:
                return
            conn.execute(_DELETE_LEASE, (key, lease_id))
            if not row[1]:
                conn.execute(
                    "UPDATE proctor_ledgers SET reserved = reserved - ? WHERE key = ?", (row[0], key)
                )

        self._run(body)

    def spend(self, key: str, amount: int, window: int) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO proctor_ledgers (key, spent, reserved, period, next_expiry, last_lease) "
                "VALUES (?, ?, 0, ?, NULL, 0) ON CONFLICT (key) DO UPDATE SET "
                "spent = CASE WHEN period < excluded.period THEN 0 ELSE spent END + excluded.spent, "
                "period = MAX(period, excluded.period)",
                (key, amount, window),
            )
        )

    def get(self, key: str, window: int, now: float) -> tuple[int, int]:
        return self._run(lambda conn: _ledger_now(conn, key, window, now), write=False)

    def clear(self, key: str) -> None:
        self._run(lambda conn: conn.execute("UPDATE proctor_ledgers SET spent = 0 WHERE key = ?", (key,)))

    def keys(self, prefix: str) -> Iterator[str]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT key FROM proctor_ledgers WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall(),
            write=False,
        )
        return iter([key for (key,) in rows])

    # Token buckets.

    def take(self, key: str, tokens: float, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        def body(conn: sqlite3.Connection) -> tuple[bool, float]:
            level, updated = _level(conn, key, capacity, rate, now)
            ok = level + _EPSILON >= tokens
            if ok:
                level = max(level - tokens, 0.0)
            conn.execute(_UPSERT_BUCKET, (key, level, updated))
            return ok, level

        return self._run(body)

    def refund(self, key: str, tokens: float, capacity: float) -> None:
        self._run(
            lambda conn: conn.execute(
                "UPDATE proctor_buckets SET level = MIN(?, level + ?) WHERE key = ?", (capacity, tokens, key)
            )
        )

    def peek(self, key: str, capacity: float, rate: float, now: float) -> float:
        return self._run(lambda conn: _level(conn, key, capacity, rate, now)[0], write=False)


def _reserve(
    conn: sqlite3.Connection, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
) -> tuple[int | None, int, int]:
    """``LedgerSupport.reserve`` inside a transaction already begun."""
    row = conn.execute(_SELECT_LEDGER, (key,)).fetchone()
    if row is None:
        spent, reserved, period, next_expiry, last_lease = 0, 0, window, None, 0
    else:
        spent, reserved, period, next_expiry, last_lease = row
        if period < window:
            spent, period = 0, window
        # Leases are reaped only once the earliest one may have expired, not on every call.
        if next_expiry is not None and next_expiry <= now:
            reserved, next_expiry = _reap(conn, key, reserved, now)
    if limit is not None and spent + reserved + amount > limit:
        if row is not None and (spent, reserved, period, next_expiry) != tuple(row[:4]):
            conn.execute(_UPDATE_LEDGER, (spent, reserved, period, next_expiry, last_lease, key))
        return None, spent, reserved
    expires = now + lease
    lease_id = last_lease + 1
    conn.execute(_INSERT_LEASE, (key, lease_id, amount, expires))
    next_expiry = expires if next_expiry is None else min(next_expiry, expires)
    values = (spent, reserved + amount, period, next_expiry, lease_id, key)
    conn.execute(_INSERT_LEDGER if row is None else _UPDATE_LEDGER, values)
    return lease_id, spent, reserved


def _ledger_now(conn: sqlite3.Connection, key: str, window: int, now: float) -> tuple[int, int]:
    """The spent amount of ``key`` in ``window`` and what its leases live at ``now`` hold."""
    row = conn.execute(_SELECT_LEDGER_NOW, (now, key, now, key)).fetchone()
    if row is None:
        return 0, 0
    spent, period, reserved = row
    return (spent if period >= window else 0), reserved


def _reap(conn: sqlite3.Connection, key: str, reserved: int, now: float) -> tuple[int, float | None]:
    """Give back the leases of ``key`` expired by ``now``; the reserved amount and next expiry after."""
    (given_back,) = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM proctor_leases WHERE key = ? AND expired = 0 AND expires <= ?",
        (key, now),
    ).fetchone()
    conn.execute(
        "UPDATE proctor_leases SET expired = 1 WHERE key = ? AND expired = 0 AND expires <= ?", (key, now)
    )
    conn.execute(
        "DELETE FROM proctor_leases WHERE key = ? AND expired = 1 AND expires < ?", (key, now - EXPIRED_KEPT)
    )
    (next_expiry,) = conn.execute(
        "SELECT MIN(expires) FROM proctor_leases WHERE key = ? AND expired = 0", (key,)
    ).fetchone()
    return reserved - given_back, next_expiry


def _level(
    conn: sqlite3.Connection, key: str, capacity: float, rate: float, now: float
) -> tuple[float, float]:
    """Bucket ``key``'s level at ``now`` and the time it is counted from; a new bucket is full."""
    row = conn.execute("SELECT level, updated FROM proctor_buckets WHERE key = ?", (key,)).fetchone()
    if row is None:
        return capacity, now
    level, updated = row
    if now > updated:
        return min(capacity, level + (now - updated) * rate), now
    if now < updated - _CLOCK_BACK:
        return level, now  # the clock restarted (a monotonic clock after a reboot): count from now on
    return level, updated  # another process read the clock a moment later and got here first


def _after_fork_in_child() -> None:
    # A lock held by another thread at the fork stays held in the child for ever; and the
    # parent's connection must not be used here. Give each store a fresh lock; the
    # connection is reopened at first use (see _connection).
    for store in list(_open_stores):
        store._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
