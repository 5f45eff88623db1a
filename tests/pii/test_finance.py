"""Payment card numbers and IBANs: true positives and realistic near-misses."""

from __future__ import annotations

import pytest

from tests.pii.conftest import Found


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",  # Visa
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",  # Mastercard
        "2223 0031 2200 3222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "3782 822463 10005",
        "6011 1111 1111 1117",  # Discover
        "3056 930902 5904",  # Diners, 14 digits
        "4222222222222",  # Visa, 13 digits
        "6250 9410 0652 8599 123",  # 19 digits
    ],
)
def test_luhn_valid_card_numbers(found: Found, card: str) -> None:
    assert found(f"card: {card}, exp 12/29") == [("credit_card", card)]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111 1111-1111 1111",  # mixed separators
        "0000 0000 0000 0000",  # not a card range, and all one digit
        "1234567812345670",  # Luhn-valid, but starts with 1 (no card network)
        "4111111111111111111111",  # 22 digits
        "order 12-4111111111111111",  # part of a dashed identifier
        "pi is 3.4111111111111111",  # a decimal fraction
        "ts 1705312345678 ms",  # a millisecond timestamp
        "4111 11 1111 1111 111",  # not grouped like a card
        "id 550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_near_misses_are_not_cards(found: Found, text: str) -> None:
    assert [pair for pair in found(text) if pair[0] == "credit_card"] == []


def test_a_card_followed_by_other_numbers(found: Found) -> None:
    assert found("4111 1111 1111 1111 2024") == [("credit_card", "4111 1111 1111 1111")]


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "ES91 2100 0418 4502 0005 1332",
        "IT60X0542811101000000123456",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
        "PL61109010140000071219812874",
        "AT611904300234573201",
    ],
)
def test_ibans_with_a_valid_checksum(found: Found, iban: str) -> None:
    assert found(f"pay to {iban}.") == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # checksum fails
        "DE89370400440532013001",
        "GB82WEST12345698765433",
        "DE89 3704 0044 0532 0130",  # too short for DE
        "XX89370400440532013000",  # no such country
        "de89370400440532013000",  # IBANs are written in capitals
        "DE89370400440532013000123",  # run on into more characters
        "SKU AB12CDEF34567890",
    ],
)
def test_near_misses_are_not_ibans(found: Found, text: str) -> None:
    assert found(text) == []


def test_an_iban_followed_by_another_group(found: Found) -> None:
    assert found("DE89 3704 0044 0532 0130 00 1234") == [("iban", "DE89 3704 0044 0532 0130 00")]
