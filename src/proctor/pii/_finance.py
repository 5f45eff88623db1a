"""Recognizers of financial identifiers: payment card numbers and IBANs.

Both patterns are bounded (at most 19 digits, at most 34 characters), so each
attempt costs a constant and a scan is linear in the text. Card numbers are
looked for only inside the text's numeric runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from proctor.pii._checksums import iban_checksum_ok, luhn_ok
from proctor.pii._scan import Needs, ScanText

__all__ = ["CARD_NEEDS", "IBAN_NEEDS", "find_credit_cards", "find_ibans"]

_DIGITS = frozenset("0123456789")
# How card numbers are printed when grouped: fours (the last group of 13-, 15-
# and 19-digit numbers shorter), or 4-6-5 (Amex) and 4-6-4 (Diners).
_CARD_GROUPS = frozenset({(4, 4, 4, 1), (4, 4, 4, 3), (4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)})

# 13 to 19 digits starting with 2-6 (the card networks), single spaces or
# dashes between them, not part of a longer number, a dashed identifier or a
# decimal fraction.
_CARD = re.compile(r"(?<![\w\-.])[2-6](?:[ \-]?\d){12,18}(?![\w\-]|\.\d)", re.ASCII)

CARD_NEEDS = Needs(shortest=13, digit=True)  # 13 digits or more

# Country code, check digits, then 11 to 30 capitals or digits, optionally in
# groups separated by single spaces.
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])", re.ASCII)

IBAN_NEEDS = Needs(shortest=15, digit=True)  # the pattern's least, and Norway's length

# IBAN length by country (SWIFT IBAN registry).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def find_credit_cards(scan: ScanText) -> Iterator[tuple[int, int]]:
    """Spans of Luhn-valid payment card numbers."""
    for pos, endpos, size in scan.numeric_runs:
        if size < 13:
            continue
        for match in _CARD.finditer(scan.text, pos, endpos):
            raw = match.group()
            separators = set(raw) - _DIGITS
            if len(separators) > 1:
                continue  # "4111 1111-1111 1111": mixed separators are not a card
            if separators and tuple(map(len, raw.split(separators.pop()))) not in _CARD_GROUPS:
                continue  # "3704 0044 0532 0130 01" (part of an IBAN) is not grouped like a card
            digits = raw.replace(" ", "").replace("-", "")
            if len(set(digits)) > 1 and luhn_ok(digits):
                yield match.span()


def find_ibans(scan: ScanText) -> Iterator[tuple[int, int]]:
    """Spans of IBANs with their country's length and a valid checksum."""
    for match in _IBAN.finditer(scan.text):
        raw = match.group()
        length = _IBAN_LENGTH.get(raw[:2])
        if length is None:
            continue
        # The candidate may run on into the next group of digits: cut it at the
        # country's length, which must end a group.
        compact: list[str] = []
        end = 0
        while end < len(raw) and len(compact) < length:
            if raw[end] != " ":
                compact.append(raw[end])
            end += 1
        if len(compact) < length or raw[end : end + 1] not in ("", " "):
            continue
        if iban_checksum_ok("".join(compact)):
            yield match.start(), match.start() + end
