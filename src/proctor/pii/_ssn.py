"""Recognizer of US Social Security numbers.

The pattern is fixed-width, so a scan is linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from proctor.pii._scan import Needs, ScanText

__all__ = ["SSN_NEEDS", "find_us_ssns"]

# AAA-GG-SSSS or AAA GG SSSS, the same separator twice, not inside a longer
# number or dashed identifier.
_SSN = re.compile(r"(?<![\w\-.])\d{3}([- ])\d{2}\1\d{4}(?![\w\-]|\.\d)", re.ASCII)
SSN_NEEDS = Needs(shortest=11, digit=True)  # AAA-GG-SSSS

# Numbers the SSA voided after they were printed and widely misused.
_VOIDED = frozenset({"078051120", "219099999"})


def find_us_ssns(scan: ScanText) -> Iterator[tuple[int, int]]:
    """Spans of US SSNs whose area, group and serial the SSA issues."""
    for pos, endpos, size in scan.numeric_runs:
        if size < 11:
            continue
        for match in _SSN.finditer(scan.text, pos, endpos):
            number = match.group()
            area, group, serial = number[:3], number[4:6], number[7:]
            if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
                continue
            if area + group + serial not in _VOIDED:
                yield match.span()
