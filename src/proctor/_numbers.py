"""The one check for amounts users pass in: costs, limits, periods, weights."""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["is_amount"]


def is_amount(value: object, *, minimum: float = 0.0, inclusive: bool = True) -> TypeGuard[int | float]:
    """Whether ``value`` is a finite int or float (not a bool) at or above ``minimum``.

    With ``inclusive=False`` it must be above ``minimum``. NaN is never an amount.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if inclusive:
        return minimum <= value < math.inf
    return minimum < value < math.inf
