"""ScanText: one string under scan, with the views of it that recognizers share.

Needs: what a recognizer's matches require of the text, so that the detector
can pass over text in which a recognizer cannot find anything.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Needs", "ScanText", "has_digit"]

# Digits with the separators numbers are written with. Every card number, SSN,
# dotted quad and phone number lies inside such a run of at least 7 characters
# (give or take a leading "+" or "(").
_NUMERIC_RUN = re.compile(r"\d[\d .\-()+]{5,}\d", re.ASCII)
_DIGIT = re.compile(r"[0-9]")
# From this length on, ten str.__contains__ (memchr) beat one regex search.
_LONG = 128


class Needs(NamedTuple):
    """What every text in which a recognizer finds a match has; it finds none in other text.

    The detector does not run a recognizer on text shorter than ``shortest``,
    nor, if ``digit``, on text without an ASCII digit, nor, if ``at``, on text
    without an ``@``. Each recognizer states what its patterns imply, so that
    skipping it never changes a result.
    """

    shortest: int
    digit: bool = False
    at: bool = False


class ScanText:
    """A string being scanned; shared views are computed once, on first use."""

    __slots__ = ("_numeric_runs", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._numeric_runs: list[tuple[int, int, int]] | None = None

    @property
    def numeric_runs(self) -> list[tuple[int, int, int]]:
        """``(pos, endpos, size)`` for each run of 7 or more digits and separators.

        ``pos`` and ``endpos`` are for ``pattern.finditer(text, pos, endpos)``:
        the window starts 2 characters before the run (room for ``+`` or
        ``(+``) and ends 2 after it, so that lookbehinds and lookaheads see the
        characters around the number. ``size`` is the run's own length, so
        that a recognizer can pass over runs too short for what it looks for.
        """
        if self._numeric_runs is None:
            last = len(self.text)
            self._numeric_runs = [
                (max(0, start - 2), min(last, end + 2), end - start)
                for start, end in map(re.Match.span, _NUMERIC_RUN.finditer(self.text))
            ]
        return self._numeric_runs


def has_digit(text: str) -> bool:
    """Whether ``text`` has an ASCII digit."""
    if len(text) < _LONG:
        return _DIGIT.search(text) is not None
    return any(map(text.__contains__, "0123456789"))
