"""A policy file's budgets and rate limits on what-if's virtual clock, as the live enforcer keeps them.

A call the rules let run passes the rate limits (one token each, in file order), then the
budgets (its estimate against spend plus the estimates held), as ``PolicyEnforcer`` checks
``FileLimits``: the first refusal gives back what the limits before it took. A call that passes
holds its estimate in each budget from its start to its end, and spends its recorded actual
cost at its end (unless its run was stopped before then).
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from proctor._numbers import to_units
from proctor.policy.budget import _Window
from proctor.rules.ruleset import RuleSet
from proctor.rules.schema import Budget, RateLimit
from proctor.runs.accounts import Account

if TYPE_CHECKING:
    from proctor.runs.accounts import Spender

__all__ = ["LimitBook"]

_EPSILON = 1e-9  # as the stores: a refill of exactly one token may land just under 1.0


class LimitBook:
    """The state of every budget and rate limit of ``rules``, per key, on the virtual clock."""

    def __init__(self, rules: RuleSet) -> None:
        zone = rules.defaults.timezone
        tz = ZoneInfo(zone) if zone else None
        self._rates: list[tuple[RateLimit, dict[str, list[float]]]] = [(r, {}) for r in rules.rate_limits]
        self._budgets: list[tuple[Budget, _Window, dict[str, Account]]] = [
            (b, _Window.parse(b.period, tz), {}) for b in rules.budgets
        ]
        # The tokens the log's other calls took, by time: taken in the order of the virtual clock,
        # before each check (a bucket only refills forward).
        self._others: list[tuple[float, int, tuple[str, str, str]]] = []
        self._order = itertools.count()

    def check(
        self,
        names: tuple[str, str, str],
        at: float,
        end: float,
        estimate: float,
        cost: float,
        walk: Spender | None,
    ) -> tuple[str, str] | None:
        """Pass a call of ``names`` (agent, service, tool) through the limits at ``at``.

        Returns ``("deny", id)`` for the limit that refused it, ``("log", id)`` or
        ``("modify", id)`` for the first budget that let it run over its limit (alert,
        downgrade), else None. A call that runs holds ``estimate`` until ``end`` and spends
        ``cost`` at ``end``, by ``walk``.
        """
        others = self._others
        while others and others[0][0] <= at:
            when, _, who = heapq.heappop(others)
            self._take(who, when)
        taken: list[list[float]] = []
        for rate, buckets in self._rates:
            key = _key(rate.per, names)
            limit = rate.limits.get(key, rate.limit)
            if limit is None:
                continue
            bucket = _refilled(buckets, key, limit, limit / rate.seconds, at)
            if bucket[0] + _EPSILON < 1.0:
                for given_back in taken:
                    given_back[0] += 1.0
                return "deny", rate.id
            bucket[0] = max(bucket[0] - 1.0, 0.0)
            taken.append(bucket)
        units = to_units(estimate)
        over: tuple[str, str] | None = None
        accounts: list[Account] = []
        for budget, window, ledgers in self._budgets:
            key = _key(budget.per, names)
            account = ledgers.get(key)
            if account is None:
                account = ledgers[key] = Account(window.bounds)
            accounts.append(account)
            limit = budget.limits.get(key, budget.limit)
            if limit is None or to_units(account.spent_at(at)) + units <= to_units(limit):
                continue
            if budget.mode == "reject":
                for given_back in taken:
                    given_back[0] += 1.0
                return "deny", budget.id
            if over is None:
                over = ("log" if budget.mode == "alert" else "modify", budget.id)
        for account in accounts:
            if estimate:
                account.hold(at, end, estimate)
            if cost:
                account.charge(end, cost, walk)
        return over

    def other(self, names: tuple[str, str, str], at: float, end: float, estimate: float, cost: float) -> None:
        """A recorded call of a run not walked: it ran, taking its tokens (when the clock gets
        there) and spending as recorded."""
        if self._rates:
            heapq.heappush(self._others, (at, next(self._order), names))
        for budget, window, ledgers in self._budgets:
            key = _key(budget.per, names)
            account = ledgers.get(key)
            if account is None:
                account = ledgers[key] = Account(window.bounds)
            if estimate:
                account.hold(at, end, estimate)
            if cost:
                account.charge(end, cost)

    def _take(self, names: tuple[str, str, str], at: float) -> None:
        for rate, buckets in self._rates:
            key = _key(rate.per, names)
            limit = rate.limits.get(key, rate.limit)
            if limit is not None:
                bucket = _refilled(buckets, key, limit, limit / rate.seconds, at)
                bucket[0] = max(bucket[0] - 1.0, 0.0)


def _key(per: str, names: tuple[str, str, str]) -> str:
    return names[0] if per == "agent" else names[1] if per == "service" else names[2]


def _refilled(buckets: dict[str, list[float]], key: str, limit: float, rate: float, at: float) -> list[float]:
    """Bucket ``key`` ([level, updated]) refilled up to ``at``; a new bucket starts full."""
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = [limit, at]
    elif at > bucket[1]:
        bucket[0] = min(limit, bucket[0] + (at - bucket[1]) * rate)
        bucket[1] = at
    return bucket
