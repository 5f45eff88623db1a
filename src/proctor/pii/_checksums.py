"""Check digits of identifiers: Luhn (payment cards) and ISO 7064 mod 97-10 (IBAN)."""

from __future__ import annotations

__all__ = ["iban_checksum_ok", "luhn_ok"]


def luhn_ok(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_checksum_ok(iban: str) -> bool:
    """Whether a compact IBAN (capitals and digits, no spaces) has a valid mod-97 checksum."""
    rearranged = iban[4:] + iban[:4]
    # Letters count as two digits each: A=10 ... Z=35.
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1
