"""DailySpend: what each service and agent spent since midnight, for the ``cost_today`` fact."""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

from proctor.policy.budget import BudgetPolicy

__all__ = ["DailySpend"]


class DailySpend:
    """Spend since local midnight per key, in every time zone that rules have asked about.

    Each zone keeps its own ledger (a ``BudgetPolicy`` with a daily period and
    no limit); spend is recorded in all of them. A zone first asked about in
    the middle of a day starts that day at what was recorded since.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str | None, BudgetPolicy] = {None: BudgetPolicy(period="day")}

    def spent(self, key: str, zone: str | None = None) -> float:
        """Spend of ``key`` since midnight in ``zone`` (an IANA name; None: the local zone)."""
        ledger = self._ledgers.get(zone)
        if ledger is None:
            with self._lock:
                ledger = self._ledgers.get(zone)
                if ledger is None:
                    ledger = BudgetPolicy(period="day", timezone=ZoneInfo(zone) if zone else None)
                    self._ledgers = {**self._ledgers, zone: ledger}
        return ledger.spent(key)

    def record(self, key: str, amount: float) -> None:
        """Add spend of ``key`` now."""
        for ledger in self._ledgers.values():
            ledger.record_spend(key, amount)
