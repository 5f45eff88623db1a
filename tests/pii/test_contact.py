"""E-mail addresses and phone numbers: true positives and realistic near-misses."""

from __future__ import annotations

import pytest

from proctor.pii import PIIDetector
from tests.pii.conftest import Found


@pytest.mark.parametrize(
    ("text", "email"),
    [
        ("write to jane.doe@example.com today", "jane.doe@example.com"),
        ('{"to": "jane.doe@example.com"}', "jane.doe@example.com"),
        ("'bob@example.org'", "bob@example.org"),
        ("Jane <jane@mail.example.co.uk>", "jane@mail.example.co.uk"),
        ("mailto:bob+alerts@example.io?subject=hi", "bob+alerts@example.io"),
        ("first_last-99@sub-domain.example.museum.", "first_last-99@sub-domain.example.museum"),
        ("cc: A.B@EXAMPLE.COM, c@d.de", "A.B@EXAMPLE.COM"),
    ],
)
def test_emails_are_found_without_surrounding_punctuation(found: Found, text: str, email: str) -> None:
    assert ("email", email) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost",  # no dotted domain
        "ping @alice and @bob",
        "foo@bar.c",  # one-letter TLD
        "a@@example.com",
        "name@example",
        "x@y.z1",
        "decorators like @dataclass(frozen=True)",
        "npm install @types/node@20.1.0",
    ],
)
def test_things_with_an_at_sign_that_are_not_emails(found: Found, text: str) -> None:
    assert [kind for kind, _ in found(text)] == []


def test_two_emails_in_one_string(found: Found) -> None:
    assert found("from a@example.com to b@example.com") == [
        ("email", "a@example.com"),
        ("email", "b@example.com"),
    ]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("call (415) 555-2671 now", "(415) 555-2671"),
        ("415-555-2671", "415-555-2671"),
        ("415.555.2671", "415.555.2671"),
        ("+1 415 555 2671", "+1 415 555 2671"),
        ("+1 (415) 555-2671", "+1 (415) 555-2671"),
        ("tel:+14155552671", "+14155552671"),
        ("call +1-415-555-2671.", "+1-415-555-2671"),
        ("London +44 20 7946 0958", "+44 20 7946 0958"),
        ("(+44) 20 7946 0958", "(+44) 20 7946 0958"),
        ("020 7946 0958", "020 7946 0958"),  # GB national
        ("Berlin 030 901820", "030 901820"),  # DE national
        ("+49 30 901820", "+49 30 901820"),
        ("Paris 01 23 45 67 89", "01 23 45 67 89"),  # FR national
        ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ("+91 98765 43210", "+91 98765 43210"),  # IN mobile
        ("+81 3-1234-5678", "+81 3-1234-5678"),  # JP: any region when written with +
    ],
)
def test_phone_numbers_in_several_formats_and_regions(found: Found, text: str, number: str) -> None:
    assert found(text) == [("phone", number)]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("415-555-2671 415-555-2672", ["415-555-2671", "415-555-2672"]),
        ("(415) 555-2671 415-555-2672", ["(415) 555-2671", "415-555-2672"]),
        ("call 415-555-2671 24 hours a day", ["415-555-2671"]),  # a number running on into others
        ("call 415-555-2671, 24 hours a day", ["415-555-2671"]),
    ],
)
def test_phone_numbers_among_other_figures(found: Found, text: str, numbers: list[str]) -> None:
    assert found(text) == [("phone", number) for number in numbers]


@pytest.mark.parametrize(
    "text",
    [
        "4155552671",  # bare digits: order numbers look the same
        "order 12345678901",
        "2024-01-15",
        "15/01/2024",
        "01.15.2024",
        "range=2024-07-01..2024-09-30",
        "ORD-2024-001234",
        "ticket #123 456 789",
        "1 000 000 users",
        "1,234,567",
        "12:30:45",
        "12 34 56 78",
        "v1.2.3",
        "555-0100",  # too short
        "+1 555 555 55555 5555",
        "1 2 3 4 5 6 7 8",  # single digits
        "5+3+2=10 1234567",
    ],
)
def test_things_with_digits_that_are_not_phone_numbers(found: Found, text: str) -> None:
    assert [pair for pair in found(text) if pair[0] == "phone"] == []


@pytest.mark.parametrize(
    "text", ["4111 1111 1111 1111", "123-45-6789", "192.168.1.10", "DE89 3704 0044 0532 0130 00"]
)
def test_other_kinds_are_not_phone_numbers(detector: PIIDetector, text: str) -> None:
    assert not detector.contains(text, kinds=["phone"])


def test_regions_decide_national_numbers() -> None:
    us_only = PIIDetector(phone_regions=["US"])
    assert us_only.contains("(415) 555-2671")
    assert not us_only.contains("Berlin 030 901820")
    assert us_only.contains("+49 30 901820")  # international format: any region
    assert PIIDetector(phone_regions=["DE"]).contains("Berlin 030 901820")
