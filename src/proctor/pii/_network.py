"""Recognizer of IP addresses (IPv4 and IPv6).

Linear time: IPv4 candidates are bounded and looked for only inside numeric
runs; an IPv6 candidate is the run of address characters around a
``:hex:`` hint (the walk back is bounded by the longest address), and the
scan resumes after that run. ``ipaddress`` validates.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from proctor.pii._scan import Needs, ScanText

__all__ = ["IP_NEEDS", "find_ip_addresses"]

# Four groups of 1-3 digits, not preceded by a letter (v1.2.3.4), digit or
# dot, and not followed by another ".digit" (1.2.3.4.5). ipaddress rejects
# octets over 255 and leading zeros.
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)", re.ASCII)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:", re.ASCII)
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_IPV6_MAX = 45  # the longest textual IPv6 address, with an embedded IPv4
_DIGIT = re.compile(r"\d", re.ASCII)
# The shortest addresses are IPv6 ones such as "::2" and "1::" (IPv4 ones have 7
# characters or more); every address found has a digit (checked for IPv6).
IP_NEEDS = Needs(shortest=3, digit=True)


def find_ip_addresses(scan: ScanText) -> Iterator[tuple[int, int]]:
    """Spans of IPv4 and IPv6 addresses, except loopback and unspecified ones."""
    text = scan.text
    if "." in text:  # in every IPv4 address
        for pos, endpos, _ in scan.numeric_runs:
            if text.find(".", pos, endpos) < 0:
                continue
            for match in _IPV4.finditer(text, pos, endpos):
                try:
                    address = ipaddress.IPv4Address(match.group())
                except ValueError:
                    continue
                if _personal(address):
                    yield match.span()
    if ":" in text:  # in every IPv6 hint
        yield from _ipv6_addresses(text)


def _ipv6_addresses(text: str) -> Iterator[tuple[int, int]]:
    position = 0
    while hint := _IPV6_HINT.search(text, position):
        start = hint.start()
        # An address has "::" or 7 colons: times (14:30:01) are passed over cheaply.
        near, far = max(position, start - _IPV6_MAX), start + _IPV6_MAX
        if text.count(":", near, far) < 7 and text.find("::", near, far) < 0:
            position = hint.end()
            continue
        # Walk back to where the run starts (no further than an address is long).
        limit = max(0, start - _IPV6_MAX - 1)
        while start > limit and text[start - 1] in _IPV6_CHARS:
            start -= 1
        end = hint.end()
        while end < len(text) and text[end] in _IPV6_CHARS:
            end += 1
        position = end
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue  # inside a word: std::vector, a::b
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        raw = text[start:end].rstrip(".")
        # Scopes such as Bad::Cafe are hex too; addresses have digits.
        if len(raw) > _IPV6_MAX or not _DIGIT.search(raw):
            continue
        try:
            address = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if _personal(address):
            yield start, start + len(raw)


def _personal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (address.is_loopback or address.is_unspecified)
