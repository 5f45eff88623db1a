"""DailySpend: what each service and agent spent since midnight, for the ``cost_today`` fact.

Spend counts twice over a call's life: its estimate is held while it runs (so that calls
running at the same time see each other), then replaced by what it really cost.
"""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

from proctor.policy.budget import BudgetPolicy

__all__ = ["DailySpend", "Hold"]


class DailySpend:
    """Spend since local midnight per key, in every time zone that rules have asked about.

    Each zone keeps its own ledger (a ``BudgetPolicy`` with a daily period and
    no limit); spend is recorded in all of them. A zone first asked about in
    the middle of a day starts that day at what was recorded since.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str | None, BudgetPolicy] = {None: BudgetPolicy(period="day")}
        self._held: dict[str, float] = {}
        self.deciding = threading.RLock()
        """Held by a caller from reading ``spent`` to its ``hold``, so that no other call slips between."""

    def spent(self, key: str, zone: str | None = None) -> float:
        """Spend of ``key`` since midnight in ``zone`` (an IANA name; None: the local zone)."""
        ledger = self._ledgers.get(zone)
        if ledger is None:
            with self._lock:
                ledger = self._ledgers.get(zone)
                if ledger is None:
                    ledger = BudgetPolicy(period="day", timezone=ZoneInfo(zone) if zone else None)
                    self._ledgers = {**self._ledgers, zone: ledger}
        return ledger.spent(key) + self._held.get(key, 0.0)

    def hold(self, key: str, estimate: float) -> Hold:
        """Count ``estimate`` as spent by ``key`` until the returned hold is settled."""
        with self._lock:
            self._held[key] = self._held.get(key, 0.0) + estimate
        return Hold(self, key, estimate)

    def _let_go(self, key: str, estimate: float) -> None:
        with self._lock:
            left = self._held.get(key, 0.0) - estimate
            if left > 1e-12:
                self._held[key] = left
            else:
                self._held.pop(key, None)

    def record(self, key: str, amount: float) -> None:
        """Add spend of ``key`` now."""
        for ledger in self._ledgers.values():
            ledger.record_spend(key, amount)


class Hold:
    """A running call's estimate, counted in ``cost_today`` until the call ends."""

    __slots__ = ("_daily", "_estimate", "_key")

    def __init__(self, daily: DailySpend, key: str, estimate: float) -> None:
        self._daily: DailySpend | None = daily
        self._key = key
        self._estimate = estimate

    def settle(self, actual: float) -> None:
        """The call ended having cost ``actual``: that replaces the estimate. Later calls do nothing."""
        daily, self._daily = self._daily, None
        if daily is None:
            return
        daily._let_go(self._key, self._estimate)
        if actual:
            daily.record(self._key, actual)
