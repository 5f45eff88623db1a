"""Account: spend on the virtual clock of what-if, as a live ledger keeps it (holds and charges)."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, time, timedelta, tzinfo
from operator import itemgetter
from typing import Protocol

from proctor._numbers import from_units, to_units

__all__ = ["Account", "Spender", "day_of"]

_WHEN = itemgetter(0)


class Spender(Protocol):
    """Whose charge it is: a run on its walk, which spends nothing after it is stopped."""

    stop: float | None
    """When the run was stopped, on the recorded clock; None while it goes on."""


class Account:
    """What one ledger spent in its current period on the virtual clock, with the estimates of the
    calls running then (as live calls see them); its charges not counted yet.

    ``bounds`` gives the period that holds a moment: for ``cost_today``, the day in the rules'
    time zone; for a budget, its period.
    """

    __slots__ = ("bounds", "day", "due", "held", "next_day", "spent")

    def __init__(self, bounds: Callable[[float], tuple[float, float]]) -> None:
        self.bounds = bounds
        self.day = math.inf  # the current day runs from ``day`` to ``next_day``: none yet
        self.next_day = -math.inf
        self.spent = 0  # in units, as live ledgers keep it: sums do not depend on their order
        self.held = 0  # estimates of the calls running, in units: they count whatever the day
        # (at, amount, walk, held) by ``at``, then in the order charged: the order a heap would give them
        self.due: deque[tuple[float, float, Spender | None, bool]] = deque()

    def charge(self, at: float, amount: float, walk: Spender | None = None, held: bool = False) -> None:
        """Spend ``amount`` at ``at``, by ``walk`` unless it is stopped before ``at``; ``held``: a change
        of the estimates held (in units), which counts whatever the day and however the walk ends."""
        due = self.due
        entry = (at, amount, walk, held)
        if due and at < due[-1][0]:
            due.insert(bisect.bisect_right(due, at, key=_WHEN), entry)
        else:
            due.append(entry)

    def hold(self, start: float, end: float, estimate: float) -> None:
        """A call that began at ``start`` and ended at ``end`` held ``estimate`` in between."""
        units = to_units(estimate)
        self.charge(start, units, None, True)
        self.charge(end, -units, None, True)

    def spent_at(self, at: float) -> float:
        """What was spent from the start of the period holding ``at`` up to ``at``, with the holds then."""
        day = self.day
        if not day <= at < self.next_day:
            day, self.next_day = self.bounds(at)
            self.day = day
            self.spent = 0
        due = self.due
        spent = self.spent
        while due and due[0][0] <= at:
            when, amount, walk, held = due.popleft()
            if held:
                self.held += int(amount)
            elif when >= day and (walk is None or walk.stop is None or when <= walk.stop):
                spent += to_units(amount)
        self.spent = spent
        return from_units(spent + self.held)


def day_of(at: float, zone: tzinfo | None) -> tuple[float, float]:
    """The midnight before ``at`` and the one after, as Unix seconds, in ``zone``."""
    date = datetime.fromtimestamp(at, zone).date()
    start = datetime.combine(date, time(), zone).timestamp()
    return start, datetime.combine(date + timedelta(days=1), time(), zone).timestamp()
