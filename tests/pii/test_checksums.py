from __future__ import annotations

import pytest

from proctor.pii._checksums import iban_checksum_ok, luhn_ok


@pytest.mark.parametrize(
    "number",
    ["4111111111111111", "378282246310005", "5555555555554444", "6011111111111117", "0", "18", "79927398713"],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn_ok(number)


@pytest.mark.parametrize("number", ["4111111111111112", "378282246310006", "1", "79927398710", "12"])
def test_luhn_rejects_a_wrong_check_digit(number: str) -> None:
    assert not luhn_ok(number)


@pytest.mark.parametrize(
    "iban",
    ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NO9386011117947"],
)
def test_iban_checksum_accepts_valid_ibans(iban: str) -> None:
    assert iban_checksum_ok(iban)


@pytest.mark.parametrize(
    "iban",
    ["DE89370400440532013001", "GB82WEST12345698765433", "DE98370400440532013000", "GB28WEST12345698765432"],
)
def test_iban_checksum_rejects_one_changed_character(iban: str) -> None:
    assert not iban_checksum_ok(iban)
