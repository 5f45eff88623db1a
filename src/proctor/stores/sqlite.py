"""SQLiteStore: ledgers and token buckets in one SQLite file, shared by the processes of one host.

Every check-and-change is atomic across threads and processes: one statement
(a common reserve, every settle and release; triggers keep the ledger's sums)
or one ``BEGIN IMMEDIATE`` transaction; the file is in WAL mode with
``synchronous=NORMAL`` (a committed change survives the process, not
necessarily a power cut). Each process opens its own connection (again after
a fork). A busy database is waited for, then retried, up to ``busy_timeout``
seconds; only then does a caller see a ``StoreError``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

from proctor.errors import ConfigurationError, StoreError
from proctor.stores.base import EXPIRED_KEPT, LedgerSupport, Store, TokenBucketSupport

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_EPSILON = 1e-9  # as in MemoryStore: a refill of exactly one token may land just under 1.0
_CLOCK_BACK = 1.0  # a bucket updated this far in the future was written before the clock restarted (a reboot)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

_SCHEMA = """
-- A ledger and its leases share one table, keyed (key, id): the ledger is row 0 and its leases sit
-- beside it, on the same page, so a reserve or a settle writes one page. Triggers keep the
-- ledger's sums, so that the common reserve and every settle are a single statement each.
CREATE TABLE IF NOT EXISTS proctor_ledger (
    key TEXT NOT NULL,
    id INTEGER NOT NULL,      -- 0: the ledger; else one of its leases
    amount INTEGER NOT NULL,  -- the ledger: the sum of its live leases; a lease: what it holds
    spent INTEGER,     -- the ledger: committed spend in its period
    period INTEGER,    -- the ledger: the period that spend is of
    expires REAL,      -- a lease: its expiry; the ledger: at most its earliest live lease's (NULL: none)
    expired INTEGER NOT NULL DEFAULT 0, -- a lease: 1 once given back, kept so that a late settle counts
    done INTEGER,      -- the ledger: the lease its last settle or release ended (a trigger deletes it)
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS proctor_lease_taken
AFTER INSERT ON proctor_ledger WHEN new.id <> 0 AND new.expired = 0 BEGIN
    UPDATE proctor_ledger
    SET amount = amount + new.amount, expires = MIN(COALESCE(expires, new.expires), new.expires)
    WHERE key = new.key AND id = 0;
END;
CREATE TRIGGER IF NOT EXISTS proctor_lease_done
AFTER UPDATE OF done ON proctor_ledger WHEN new.done IS NOT NULL BEGIN
    DELETE FROM proctor_ledger WHERE key = new.key AND id = new.done;
END;
CREATE TABLE IF NOT EXISTS proctor_buckets (
    key TEXT PRIMARY KEY,
    level REAL NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
"""

# The SQL texts stay constant, so sqlite3's statement cache prepares each once per connection.
# No ... RETURNING: in SQLite it costs about a whole extra transaction.

# The common reserve, one statement: the ledger exists, is in this period, no lease of it may have
# expired, and the amount fits. It changes nothing otherwise, and the full path (a transaction) runs.
_RESERVE = (
    "INSERT INTO proctor_ledger (key, id, amount, expires) SELECT ?1, ?2, ?3, ?4 FROM proctor_ledger "
    "WHERE key = ?1 AND id = 0 AND period = ?5 AND (expires IS NULL OR expires > ?6) "
    "AND spent + amount + ?3 <= ?7"
)
_SELECT_LEDGER = "SELECT spent, amount, period, expires FROM proctor_ledger WHERE key = ? AND id = 0"
_INSERT_LEDGER = (
    "INSERT INTO proctor_ledger (key, id, amount, spent, period, expires) VALUES (?, 0, 0, ?, ?, NULL)"
)
_UPDATE_LEDGER = (
    "UPDATE proctor_ledger SET spent = ?, amount = ?, period = ?, expires = ? WHERE key = ? AND id = 0"
)
_INSERT_LEASE = "INSERT INTO proctor_ledger (key, id, amount, expires) VALUES (?, ?, ?, ?)"
# One statement, so one snapshot; leases past their expiry count as given back. While the
# earliest expiry is still ahead, the ledger's amount is that sum already.
_SELECT_LEDGER_NOW = (
    "SELECT spent, period, CASE WHEN expires IS NULL OR expires > ?1 THEN amount ELSE "
    "(SELECT COALESCE(SUM(amount), 0) FROM proctor_ledger "
    "WHERE key = ?2 AND id <> 0 AND expired = 0 AND expires > ?1) END "
    "FROM proctor_ledger WHERE key = ?2 AND id = 0"
)
# Settle and release, one statement each: the ledger row reads the lease, takes it off its sum
# (an expired lease was given back already) and names it in ``done``, which a trigger deletes.
# Neither changes a row when the lease is gone (settled, released, or forgotten).
_SETTLE = (
    "UPDATE proctor_ledger SET amount = amount - (SELECT CASE WHEN l.expired THEN 0 ELSE l.amount END "
    "FROM proctor_ledger l WHERE l.key = ?1 AND l.id = ?2), "
    "spent = CASE WHEN period < ?3 THEN 0 ELSE spent END + ?4, period = MAX(period, ?3), done = ?2 "
    "WHERE key = ?1 AND id = 0 AND EXISTS (SELECT 1 FROM proctor_ledger l WHERE l.key = ?1 AND l.id = ?2)"
)
_RELEASE = (
    "UPDATE proctor_ledger SET amount = amount - (SELECT CASE WHEN l.expired THEN 0 ELSE l.amount END "
    "FROM proctor_ledger l WHERE l.key = ?1 AND l.id = ?2), done = ?2 "
    "WHERE key = ?1 AND id = 0 AND EXISTS (SELECT 1 FROM proctor_ledger l WHERE l.key = ?1 AND l.id = ?2)"
)
_UPSERT_BUCKET = (
    "INSERT INTO proctor_buckets (key, level, updated) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET level = excluded.level, updated = excluded.updated"
)
# Files written by proctor before the ledgers and their leases shared one table: moved over once.
_OLD_TABLES = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'proctor_ledgers'"
_MOVE_OLD_TABLES = """
INSERT INTO proctor_ledger (key, id, amount, spent, period, expires)
    SELECT key, 0, 0, spent, period, NULL FROM proctor_ledgers WHERE true
    ON CONFLICT (key, id) DO NOTHING;
INSERT INTO proctor_ledger (key, id, amount, expires, expired)
    SELECT key, id, amount, expires, expired FROM proctor_leases WHERE true
    ON CONFLICT (key, id) DO NOTHING;
DROP TABLE proctor_leases;
DROP TABLE proctor_ledgers;
"""

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
            if conn.execute(_OLD_TABLES).fetchone()[0]:
                _move_old_tables(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _changes(self, sql: str, values: tuple[Any, ...]) -> int:
        """Run one statement (its own transaction); the rows it changed. The hot path of ``_run``."""
        started = time.monotonic()
        with self._lock:
            conn = self._conn
            if conn is not None and self._pid == os.getpid():
                try:
                    return conn.execute(sql, values).rowcount
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY_CODES:
                        raise
        return self._run(lambda conn: conn.execute(sql, values).rowcount, transaction=False, started=started)

    def _run(
        self,
        body: Callable[[sqlite3.Connection], T],
        *,
        transaction: bool = True,
        started: float | None = None,
    ) -> T:
        """``body`` in one ``BEGIN IMMEDIATE`` transaction, or with none (one statement is then its own
        transaction, or reads), retried while the file is busy, up to ``busy_timeout`` after ``started``."""
        # The connection's own busy wait counts too.
        deadline = (time.monotonic() if started is None else started) + self.busy_timeout
        pause = 0.001
        with self._lock:
            while True:
                conn: sqlite3.Connection | None = None
                try:
                    conn = self._connection()
                    if not transaction:
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
        """``LedgerSupport.reserve``; a reservation that fits under ``limit`` reports (0, 0) for the
        amounts before it: the common case is one statement that does not read them."""
        if limit is not None:
            lease_id = _lease_id()
            with contextlib.suppress(sqlite3.IntegrityError):  # the id is taken: the full path draws another
                if self._changes(_RESERVE, (key, lease_id, amount, now + lease, window, now, limit)):
                    return lease_id, 0, 0
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
        return self._changes(_SETTLE, (key, lease_id, window, actual)) > 0

    def release(self, key: str, lease_id: int) -> None:
        self._changes(_RELEASE, (key, lease_id))

    def spend(self, key: str, amount: int, window: int) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO proctor_ledger (key, id, amount, spent, period) VALUES (?, 0, 0, ?, ?) "
                "ON CONFLICT (key, id) DO UPDATE SET "
                "spent = CASE WHEN period < excluded.period THEN 0 ELSE spent END + excluded.spent, "
                "period = MAX(period, excluded.period)",
                (key, amount, window),
            ),
            transaction=False,
        )

    def get(self, key: str, window: int, now: float) -> tuple[int, int]:
        return self._run(lambda conn: _ledger_now(conn, key, window, now), transaction=False)

    def clear(self, key: str) -> None:
        self._run(
            lambda conn: conn.execute("UPDATE proctor_ledger SET spent = 0 WHERE key = ? AND id = 0", (key,)),
            transaction=False,
        )

    def keys(self, prefix: str) -> Iterator[str]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT key FROM proctor_ledger WHERE id = 0 AND substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall(),
            transaction=False,
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
        return self._run(lambda conn: _level(conn, key, capacity, rate, now)[0], transaction=False)


def _move_old_tables(conn: sqlite3.Connection) -> None:
    """Move the ledgers and leases of the tables of earlier versions into ``proctor_ledger``, once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute(_OLD_TABLES).fetchone()[0]:  # another process may have moved them meanwhile
            for statement in filter(str.strip, _MOVE_OLD_TABLES.split(";")):
                conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _lease_id() -> int:
    """A new lease id: random, so that processes need no shared counter (a taken one is drawn again)."""
    return random.getrandbits(63) or 1  # 0 is the ledger's own row


def _reserve(
    conn: sqlite3.Connection, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
) -> tuple[int | None, int, int]:
    """``LedgerSupport.reserve`` inside a transaction already begun: a new ledger, a new period and
    expired leases are taken care of here."""
    row = conn.execute(_SELECT_LEDGER, (key,)).fetchone()
    if row is None:
        conn.execute(_INSERT_LEDGER, (key, 0, window))
        spent, reserved = 0, 0
    else:
        spent, reserved, period, expires = row
        if period < window:
            spent, period = 0, window
        # Leases are reaped only once the earliest one may have expired, not on every call.
        if expires is not None and expires <= now:
            reserved, expires = _reap(conn, key, reserved, now)
        if (spent, reserved, period, expires) != tuple(row):
            conn.execute(_UPDATE_LEDGER, (spent, reserved, period, expires, key))
    if limit is not None and spent + reserved + amount > limit:
        return None, spent, reserved
    while True:
        lease_id = _lease_id()
        try:  # a trigger adds the lease to the ledger's sum and expiry
            conn.execute(_INSERT_LEASE, (key, lease_id, amount, now + lease))
        except sqlite3.IntegrityError:
            continue
        return lease_id, spent, reserved


def _ledger_now(conn: sqlite3.Connection, key: str, window: int, now: float) -> tuple[int, int]:
    """The spent amount of ``key`` in ``window`` and what its leases live at ``now`` hold."""
    row = conn.execute(_SELECT_LEDGER_NOW, (now, key)).fetchone()
    if row is None:
        return 0, 0
    spent, period, reserved = row
    return (spent if period >= window else 0), reserved


def _reap(conn: sqlite3.Connection, key: str, reserved: int, now: float) -> tuple[int, float | None]:
    """Give back the leases of ``key`` expired by ``now``; the reserved amount and next expiry after."""
    (given_back,) = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM proctor_ledger "
        "WHERE key = ? AND id <> 0 AND expired = 0 AND expires <= ?",
        (key, now),
    ).fetchone()
    conn.execute(
        "UPDATE proctor_ledger SET expired = 1 WHERE key = ? AND id <> 0 AND expired = 0 AND expires <= ?",
        (key, now),
    )
    conn.execute(
        "DELETE FROM proctor_ledger WHERE key = ? AND id <> 0 AND expired = 1 AND expires < ?",
        (key, now - EXPIRED_KEPT),
    )
    (next_expiry,) = conn.execute(
        "SELECT MIN(expires) FROM proctor_ledger WHERE key = ? AND id <> 0 AND expired = 0", (key,)
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
