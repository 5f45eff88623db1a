"""US Social Security numbers: issued ranges, voided numbers, formats."""

from __future__ import annotations

import pytest

from tests.pii.conftest import Found


@pytest.mark.parametrize("ssn", ["123-45-6789", "123 45 6789", "001-01-0001", "899-99-9999", "665-12-3456"])
def test_ssns_in_issued_ranges(found: Found, ssn: str) -> None:
    assert found(f"SSN: {ssn}.") == [("us_ssn", ssn)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # areas 900-999
        "987-65-4321",
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "078-05-1120",  # voided (the Woolworth wallet card)
        "219-09-9999",  # voided (an SSA advertisement)
        "123456789",  # bare digits
        "123-45 6789",  # mixed separators
        "ID 9123-45-6789",  # inside a longer number
        "ref A-123-45-6789",  # inside a dashed identifier
        "123-45-67890",
        "2024-01-15",
    ],
)
def test_near_misses_are_not_ssns(found: Found, text: str) -> None:
    assert [pair for pair in found(text) if pair[0] == "us_ssn"] == []
