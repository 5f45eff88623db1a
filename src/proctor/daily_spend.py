"""DailySpend: what each service and agent spent since midnight, for the ``cost_today`` fact.

Spend counts twice over a call's life: its estimate is held while it runs (so that calls
running at the same time see each other), then replaced by what it really cost.
"""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

from proctor._numbers import from_units, to_units
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
        self._ledgers: dict[str | None, BudgetPolicy] = {None: _ledger(None)}
        self._held: dict[str, int] = {}  # in units, so that holding and letting go leave no residue
        self.deciding = threading.RLock()
        """Held by a caller from reading ``spent`` to its ``hold``, so that no other call slips between."""

    def spent(self, key: str, zone: str | None = None) -> float:
        """Spend of ``key`` since midnight in ``zone`` (an IANA name; None: the local zone)."""
        ledger = self._ledgers.get(zone)
        if ledger is None:
            with self._lock:
                ledger = self._ledgers.get(zone)
                if ledger is None:
                    ledger = _ledger(zone)
                    self._ledgers = {**self._ledgers, zone: ledger}
        held = self._held.get(key)
        spent = ledger.spent(key)
        return spent if held is None else from_units(to_units(spent) + held)  # exact, as what-if sums

    def hold(self, key: str, estimate: float) -> Hold:
        """Count ``estimate`` as spent by ``key`` until the returned hold is settled."""
        units = to_units(estimate)
        with self._lock:
            self._held[key] = self._held.get(key, 0) + units
        return Hold(self, key, units)

    def _let_go(self, key: str, units: int) -> None:
        with self._lock:
            left = self._held.get(key, 0) - units
            if left:
                self._held[key] = left
            else:
                del self._held[key]

    def record(self, key: str, amount: float) -> None:
        """Add spend of ``key`` now."""
        for ledger in self._ledgers.values():
            ledger.record_spend(key, amount)


def _ledger(zone: str | None) -> BudgetPolicy:
    """The day's spend in ``zone``, under a namespace of its own: on a shared store it can meet
    neither a user's budget nor the ledger of another zone (each records every spend)."""
    return BudgetPolicy(
        period="day",
        timezone=ZoneInfo(zone) if zone else None,
        namespace=f"proctor.cost_today:{zone or 'local'}",
    )


class Hold:
    """A running call's estimate, counted in ``cost_today`` until the call ends."""

    __slots__ = ("_daily", "_estimate", "_key")

    def __init__(self, daily: DailySpend, key: str, units: int) -> None:
        self._daily: DailySpend | None = daily
        self._key = key
        self._estimate = units

    def settle(self, actual: float) -> None:
        """The call ended having cost ``actual``: that replaces the estimate. Later calls do nothing."""
        daily, self._daily = self._daily, None
        if daily is None:
            return
        daily._let_go(self._key, self._estimate)
        if actual:
            daily.record(self._key, actual)
