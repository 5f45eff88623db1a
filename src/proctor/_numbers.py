"""Amounts: the one check for those users pass in (costs, limits, periods, weights), and the exact
units that sums of costs are kept in."""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["UNIT", "from_units", "is_amount", "to_units"]

UNIT = 1_000_000_000
"""Billionths: a cost kept in units adds and subtracts exactly."""


def is_amount(value: object, *, minimum: float = 0.0, inclusive: bool = True) -> TypeGuard[int | float]:
    """Whether ``value`` is a finite int or float (not a bool) at or above ``minimum``.

    With ``inclusive=False`` it must be above ``minimum``. NaN is never an amount.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if inclusive:
        return minimum <= value < math.inf
    return minimum < value < math.inf


def to_units(amount: float) -> int:
    """``amount`` in billionths, rounded to the nearest."""
    return round(amount * UNIT)


def from_units(units: int) -> float:
    """Billionths back to an amount."""
    return units / UNIT
