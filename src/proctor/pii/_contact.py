"""Recognizers of contact details: e-mail addresses and phone numbers.

Linear time: the e-mail pattern starts only where the previous character
cannot continue a local part and its loops are bounded; phone candidates are
bounded and looked for only inside numeric runs, and ``phonenumbers`` sees
only those candidates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

import phonenumbers

from proctor.pii._scan import Needs, ScanText

__all__ = ["EMAIL_NEEDS", "PhoneFinder", "find_emails"]

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9._%+\-]{1,64}"
    r"@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9_\-])"
)
EMAIL_NEEDS = Needs(shortest=6, at=True)  # the shortest address is "a@b.cc"

# Digits and the characters phone numbers are written with, starting with a
# digit, "+" or "(", not inside a word, a dashed identifier or a dotted number.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+\-.])[+(\d][\d ().\-+]{5,31}\d(?!\w)", re.ASCII)
_SEPARATED = re.compile(r"\d[ ().\-]+\d", re.ASCII)
_NOT_PHONE = re.compile(
    r"[ .\-]{2}"  # doubled separators: ranges such as 2024-07-01..2024-09-30
    r"|[0-9.\-)]\+"  # a plus sign that does not start a number
    r"|\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)"  # ISO dates
    r"|(?<!\d)\d{1,2}[-./]\d{1,2}[-./]\d{4}"  # day-month-year and month-day-year dates
    r"|^\d{1,3}(?:\.\d{1,3}){3}$",  # dotted quads (IPv4, versions)
    re.ASCII,
)
_MIN_DIGITS = 7
_MAX_DIGITS = 15  # E.164; a longer candidate holds several numbers
_DIGIT_GROUP = re.compile(r"[0-9]+")
_DASHED = re.compile(r"[0-9][.\-][0-9]")
_BETWEEN_NUMBERS = re.compile(r"(?<=[0-9]) (?=[0-9(+])")


def find_emails(scan: ScanText) -> Iterator[tuple[int, int]]:
    """Spans of e-mail addresses."""
    if "@" not in scan.text:
        return
    for match in _EMAIL.finditer(scan.text):
        yield match.span()


class PhoneFinder:
    """Finds phone numbers valid in any of the given regions (ISO 3166 codes).

    Numbers written with a leading ``+`` are valid or not whatever the region.
    A candidate needs a ``+`` or a separator between digits: bare digit runs
    (order numbers, timestamps) are never phone numbers, nor are runs of
    single digits (``1 2 3 4 5 6 7``). ``phonenumbers`` validates each
    candidate: a quick parse first, then its matcher at the VALID leniency
    (which also wants a national prefix where the region writes one). A run
    of more than 15 digits, or a dashed or dotted number that runs on into
    other figures (``415-555-2671 24``), is split where a space stands
    between two digits; numbers written with spaces and run together with
    single spaces (``020 7946 0958 020 7946 0959``) are then not found.
    """

    # A number lies in a numeric run (7 or more characters) and has 7 digits or more.
    needs = Needs(shortest=_MIN_DIGITS, digit=True)

    def __init__(self, regions: Sequence[str]) -> None:
        self._regions = tuple(regions)
        # Repetitive text repeats its candidates: each is judged once.
        self._numbers = functools.lru_cache(maxsize=4096)(self._numbers_in)

    def __call__(self, scan: ScanText) -> Iterator[tuple[int, int]]:
        for pos, endpos, _ in scan.numeric_runs:
            for candidate in _PHONE_CANDIDATE.finditer(scan.text, pos, endpos):
                raw = candidate.group()
                if raw.startswith(("+", "(+")) or _SEPARATED.search(raw):
                    offset = candidate.start()
                    for start, end in self._numbers(raw):
                        yield offset + start, offset + end

    def _numbers_in(self, raw: str) -> tuple[tuple[int, int], ...]:
        """Spans of the phone numbers in one candidate, relative to it."""
        groups = _DIGIT_GROUP.findall(raw)
        digits = sum(map(len, groups))
        if digits < _MIN_DIGITS or _NOT_PHONE.search(raw) or sum(len(g) == 1 for g in groups) > 2:
            return ()
        if digits <= _MAX_DIGITS:
            found = self._validated(raw)
            if found or not _DASHED.search(raw):
                return found
        spans: list[tuple[int, int]] = []
        start = 0
        for split in (*_BETWEEN_NUMBERS.finditer(raw), None):
            end = len(raw) if split is None else split.start()
            if _MIN_DIGITS <= sum(char.isdigit() for char in raw[start:end]) <= _MAX_DIGITS:
                spans += ((start + a, start + b) for a, b in self._validated(raw[start:end]))
            start = end + 1
        return tuple(spans)

    def _validated(self, raw: str) -> tuple[tuple[int, int], ...]:
        """Spans of the numbers in ``raw`` if it parses as a valid number in one of the regions."""
        regions = self._regions[:1] if raw.startswith(("+", "(+")) else self._regions
        for region in regions:
            try:
                valid = phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
            except phonenumbers.NumberParseException:
                valid = False
            if valid:
                matches = phonenumbers.PhoneNumberMatcher(raw, region, phonenumbers.Leniency.VALID)
                found = tuple((match.start, match.end) for match in matches)
                if found:
                    return found
        return ()
