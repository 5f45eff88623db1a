"""Where decorated calls keep their spend: the ``cost_today`` ledgers and a policy file's limits.

Both live on the process's store (``set_store()``, ``PROCTOR_STORE``), else in
the SQLite file of the process's run log (shared by the host's processes, kept
across restarts), else (recording off) in this process's memory. A run log in
PostgreSQL holds no spend: such a process must name its store.
"""

from __future__ import annotations

import threading
import weakref

from proctor.db.sqlite import SQLiteDatabase
from proctor.errors import ConfigurationError
from proctor.policy.daily import DailySpend
from proctor.rules.limits import FileLimits
from proctor.rules.ruleset import RuleSet
from proctor.runs.default import process_run_log
from proctor.stores._default import resolve_store, shared_store
from proctor.stores.base import Store
from proctor.stores.memory import MemoryStore

__all__ = ["daily_spend", "limits_of", "note_rules", "reads_daily"]

reads_daily = False
"""Whether rules of this process read ``cost_today``: from then on every call's spend is kept for it
(a process whose rules never read it makes no store write per call)."""

_dailies: dict[Store, DailySpend] = {}  # the cost_today ledgers, per store they live in
_private = MemoryStore()  # where they live when there is neither a store nor a run log
_file_limits: weakref.WeakKeyDictionary[RuleSet, FileLimits] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def daily_spend() -> DailySpend:
    """The ``cost_today`` ledgers, on the store described above."""
    store = resolve_store(None)
    if store is None:
        log = process_run_log()
        if log is None:
            store = _private
        elif isinstance(log.database, SQLiteDatabase):
            store = shared_store(f"sqlite:///{log.path.resolve()}")
        else:
            raise ConfigurationError(
                f"cost_today and a policy file's budgets and rate limits keep their spend in a store, and "
                f"the run log's database {log.database} is not one: set PROCTOR_STORE (redis://host:6379/0 "
                "for several hosts, sqlite:///path for the processes of one host) or call proctor.set_store()"
            )
    daily = _dailies.get(store)
    if daily is None:
        daily = _dailies.setdefault(store, DailySpend(store))
    return daily


def limits_of(rules: RuleSet) -> FileLimits:
    """The budgets and rate limits of ``rules``, on the store of the ``cost_today`` ledgers."""
    store = daily_spend().store
    limits = _file_limits.get(rules)
    if limits is None or limits.store is not store:
        with _lock:
            limits = _file_limits.get(rules)
            if limits is None or limits.store is not store:
                limits = _file_limits[rules] = FileLimits(rules, store)
    return limits


def note_rules(rules: RuleSet) -> None:
    """Rules in force in this process: keep spend for ``cost_today`` from now on if they read it."""
    global reads_daily
    if not reads_daily and "cost_today" in rules.uses:
        reads_daily = True
