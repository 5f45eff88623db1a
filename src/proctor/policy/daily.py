"""DailySpend: what each service and agent spent since midnight, for the ``cost_today`` fact.

Spend counts twice over a call's life: its estimate is held while it runs (a
lease, so that calls running at the same time, in any process on the store,
see each other), then replaced by what it really cost. The ledgers live in a
store with ``LedgerSupport``: a SQLite file shares them between the processes
of a host and keeps them across restarts.

While the store does not answer, ``cost_today`` fails closed: a call that must
hold its estimate raises ``StoreError`` (counted as ``("budget", "closed")`` in
``proctor.stores.fallback.fallbacks()``), and a hold settled meanwhile waits in
the process and is settled once when the store answers again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from proctor._numbers import from_units, to_units
from proctor.errors import ConfigurationError, StoreError
from proctor.policy.budget import DEFAULT_LEASE, _Window
from proctor.stores.base import LedgerSupport, Store, missing_capability
from proctor.stores.fallback import count_fallback, health_of

__all__ = ["DailySpend", "Hold"]

NAMESPACE = "proctor.cost_today"
"""The first part of every key of these ledgers: they meet no user's budget on a shared store."""


class DailySpend:
    """Spend since midnight per key, in every time zone that rules of this process asked about.

    Each zone keeps its own ledger per key (the day starts at a different
    moment in each); every spend and hold goes into all of them. A zone first
    asked about in the middle of a day starts that day at what was recorded
    since.

    Parameters:
        store: where the ledgers live.
        lease: seconds a running call's estimate is held; a call still running
            after that stops counting until it settles (its holder is taken
            for dead), and its settle still records the actual cost.
        clock: returns the current Unix time; for tests.
    """

    def __init__(
        self, store: Store, *, lease: float = DEFAULT_LEASE, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(store, LedgerSupport):
            raise missing_capability(store, LedgerSupport, "cost_today")
        if not lease > 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease!r}")
        self.store = store
        self._book: LedgerSupport = store
        self._health = health_of(store)
        self.lease = float(lease)
        self._clock = clock
        self._lock = threading.Lock()
        self._zones: dict[str | None, _Window] = {None: _day(None)}

    def _ledgers(self, key: str, zone: str | None, now: float) -> list[tuple[str | None, str, int]]:
        """``(zone, ledger key, window)`` of ``key`` in every zone, ``zone``'s first."""
        zones = self._zones
        if zone not in zones:
            with self._lock:
                zones = self._zones = {zone: _day(zone), **self._zones}
        first = (zone, _key(zone, key), zones[zone].index(now))
        return [first, *((z, _key(z, key), day.index(now)) for z, day in zones.items() if z != zone)]

    def spent(self, key: str, zone: str | None = None) -> float:
        """Spend of ``key`` since midnight in ``zone`` (IANA name; None: local), running calls included."""
        now = self._clock()
        _, ledger, window = self._ledgers(key, zone, now)[0]
        spent, held = self._book.get(ledger, window, now)
        return from_units(spent + held)

    def decide(
        self,
        key: str,
        zone: str | None,
        estimate: float,
        admit: Callable[[float], bool],
        lease: float | None = None,
    ) -> Hold | None:
        """Atomically ask ``admit`` about ``key``'s spend today and, if it says yes, hold ``estimate``.

        No other call on the same store reads that spend or holds in between,
        in any process: ``admit`` runs inside the store's transaction, so it
        must be quick. The hold is a lease of ``lease`` seconds (the default
        lease when None). Returns the hold, or None when ``admit`` said no.
        """
        now = self._clock()
        ledgers = self._ledgers(key, zone, now)
        health = self._health
        if health.down and not health.should_try():
            count_fallback("budget", "closed")
            raise StoreError(
                f"{health.name} is down, so cost_today cannot be read; it is tried again every "
                f"{health.probe_interval:g}s"
            )
        try:
            ids = self._book.reserve_if(
                [(ledger, window) for _, ledger, window in ledgers],
                to_units(estimate),
                now,
                self.lease if lease is None else lease,
                lambda spent, held: admit(from_units(spent + held)),
            )
        except StoreError as exc:
            health.failed(exc)
            count_fallback("budget", "closed")
            raise
        if health.down:
            health.answered()
        if ids is None:
            return None
        leases = [(z, ledger, lease_id) for (z, ledger, _), lease_id in zip(ledgers, ids, strict=False)]
        return Hold(self, key, leases)

    def hold(self, key: str, estimate: float, lease: float | None = None) -> Hold:
        """Count ``estimate`` as spent by ``key`` until the returned hold is settled (or its lease ends)."""
        hold = self.decide(key, None, estimate, _always, lease)
        assert hold is not None  # _always admits
        return hold

    def record(self, key: str, amount: float) -> None:
        """Add spend of ``key`` now, made without a hold."""
        units = to_units(amount)
        if units:
            for _, ledger, window in self._ledgers(key, None, self._clock()):
                self._book.spend(ledger, units, window)

    def _settle(self, key: str, leases: list[tuple[str | None, str, int]], actual: float) -> None:
        if not leases:  # nothing was held (a zero estimate)
            self.record(key, actual)
            return
        units = to_units(actual)

        def settle() -> None:  # idempotent on each lease: run again after a timeout, it counts once
            now = self._clock()
            for zone, ledger, lease_id in leases:
                self._book.settle(ledger, lease_id, units, self._zones[zone].index(now))

        self._health.settle(settle)


def _always(spent: float) -> bool:
    return True


def _key(zone: str | None, key: str) -> str:
    return f"{NAMESPACE}:{zone or 'local'}/{key}"


def _day(zone: str | None) -> _Window:
    return _Window.parse("day", ZoneInfo(zone) if zone else None)


class Hold:
    """A running call's estimate, counted in ``cost_today`` until the call ends."""

    __slots__ = ("_daily", "_key", "_leases")

    def __init__(self, daily: DailySpend, key: str, leases: list[tuple[str | None, str, int]]) -> None:
        self._daily: DailySpend | None = daily
        self._key = key
        self._leases = leases

    def settle(self, actual: float) -> None:
        """The call ended having cost ``actual``: that replaces the estimate. Later calls do nothing."""
        daily, self._daily = self._daily, None
        if daily is not None:
            daily._settle(self._key, self._leases, actual)
