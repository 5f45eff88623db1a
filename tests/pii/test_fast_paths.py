"""The pre-screens and fast paths change no result: each is checked against the full scan it skips.

- every match a recognizer finds meets the ``Needs`` it declares;
- the detector finds what running every recognizer on every string finds;
- plain dicts, lists, strings and scalars (walked on fast paths) come out as
  the same values do through the general paths (as a ``Mapping``, a list
  subclass, a str subclass);
- backends still see every string;
- ``clean_json`` says a value's JSON is clean only where ``redact`` changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.pii import CYCLE, DEFAULT_PHONE_REGIONS, UNSCANNED, PIIDetector, PIIKind, PIISpan
from proctor.pii._contact import EMAIL_NEEDS, PhoneFinder, find_emails
from proctor.pii._credentials import SecretFinder
from proctor.pii._finance import CARD_NEEDS, IBAN_NEEDS, find_credit_cards, find_ibans
from proctor.pii._network import IP_NEEDS, find_ip_addresses
from proctor.pii._scan import Needs, ScanText, has_digit
from proctor.pii._ssn import SSN_NEEDS, find_us_ssns
from proctor.pii._walk import Limits, rebuild, texts

# What the detector documents for overlaps: the earliest match, then the longest, then this order.
ORDER = ["email", "credit_card", "us_ssn", "iban", "ip_address", "secret", "phone"]

PII = [
    "jane.doe@example.com",
    "a@b.cc",
    "+1 415-555-2671",
    "(415) 555-2671",
    "020 7946 0958",
    "4111 1111 1111 1111",
    "4222222222222",
    "378282246310005",
    "123-45-6789",
    "123 45 6789",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "NO9386011117947",
    "203.0.113.7",
    "2001:db8::1",
    "::2",
    "::ffff:192.0.2.1",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "xoxb-123456789012-AbCdEfGhIjKl",
    "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
    "Zx9Qw2Er5Ty8Ui1Op4As",
    "Pe9NcrGh2sS-8qaW-lYfe0px6jD9LlGU",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1b2c3d4\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "-----BEGIN EC PRIVATE KEY-----\n",  # a cut-off key: no digit, and a secret
    "xoxp-abcdefghijKLMNOP",  # a provider key without digits
]
PIECES = [*PII, *"aZx09@.:-+()/_= \n", "é", "٣", "hello", "world", "2024-10-15", "v1.2.3", "::", "DE89"]

# Letters, digits, "@", ".", ":", "-" and spaces, and whole fixtures spliced into such text; some
# strings are longer than 128 characters, where has_digit changes how it looks.
text_strategy = st.one_of(
    st.text(alphabet="abzAZ019@.:- ", max_size=40),
    st.text(max_size=20),
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.lists(st.sampled_from(PIECES), min_size=30, max_size=60).map("".join),
)
token_lengths = st.sampled_from([1, 2, 3, 10, 15, 16, 20, 40, 256])
limits_strategy = st.builds(
    Limits, max_depth=st.sampled_from([0, 1, 2, 32]), max_chars=st.sampled_from([1, 2, 5, 12, 40, 262_144])
)

kinds_strategy = st.sets(st.sampled_from(ORDER))


def recognizers(min_token_length: int = 20) -> list[tuple[PIIKind, Any, Needs]]:
    secrets = SecretFinder(3.5, min_token_length)
    phones = PhoneFinder(DEFAULT_PHONE_REGIONS)
    return [
        (PIIKind.EMAIL, find_emails, EMAIL_NEEDS),
        (PIIKind.CREDIT_CARD, find_credit_cards, CARD_NEEDS),
        (PIIKind.US_SSN, find_us_ssns, SSN_NEEDS),
        (PIIKind.IBAN, find_ibans, IBAN_NEEDS),
        (PIIKind.IP_ADDRESS, find_ip_addresses, IP_NEEDS),
        (PIIKind.SECRET, secrets, secrets.needs),
        (PIIKind.PHONE, phones, phones.needs),
    ]


def full_scan(text: str, kinds: Iterable[str], min_token_length: int = 20) -> list[tuple[str, int, int]]:
    """Every recognizer of ``kinds`` run on ``text``, no pre-screen, overlaps resolved as documented."""
    wanted = set(kinds)
    scan = ScanText(text)
    spans = [
        (kind.value, start, end)
        for kind, find, _ in recognizers(min_token_length)
        if kind in wanted
        for start, end in find(scan)
    ]
    kept: list[tuple[str, int, int]] = []
    reach = 0
    for kind, start, end in sorted(spans, key=lambda s: (s[1], s[1] - s[2], ORDER.index(s[0]))):
        if start >= reach:
            kept.append((kind, start, end))
            reach = end
    return kept


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_strategy, min_token_length=token_lengths)
def test_every_match_meets_the_needs_of_its_recognizer(text: str, min_token_length: int) -> None:
    scan = ScanText(text)
    for kind, find, needs in recognizers(min_token_length):
        if any(True for _ in find(scan)):
            assert len(text) >= needs.shortest, kind
            assert has_digit(text) or not needs.digit, kind
            assert "@" in text or not needs.at, kind


@pytest.mark.parametrize(
    ("text", "kind", "needs"),
    [
        ("a@b.cc", "email", EMAIL_NEEDS),
        ("4222222222222", "credit_card", CARD_NEEDS),
        ("123-45-6789", "us_ssn", SSN_NEEDS),
        ("NO9386011117947", "iban", IBAN_NEEDS),
        ("::2", "ip_address", IP_NEEDS),
        ("1::", "ip_address", IP_NEEDS),
    ],
)
def test_the_shortest_text_is_the_shortest_match(
    detector: PIIDetector, text: str, kind: str, needs: Needs
) -> None:
    assert [(m.kind, m.text) for m in detector.find(text)] == [(kind, text)]
    assert len(text) == needs.shortest


def with_one_digit(filler: str, digit: str, position: int) -> str:
    return filler[:position] + digit + filler[position:]


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        text_strategy,
        st.text(max_size=300),
        st.text(alphabet="ab -@é٣", max_size=300),  # no ASCII digit: "٣" is an Arabic-Indic three
        st.builds(
            with_one_digit,
            st.text(alphabet="ab -@é٣", min_size=100, max_size=300),
            st.sampled_from("0123456789"),
            st.integers(0, 300),
        ),
    )
)
def test_has_digit_looks_for_ascii_digits_only(text: str) -> None:
    assert has_digit(text) == (re.search("[0-9]", text) is not None)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_strategy, min_token_length=token_lengths, kinds=st.none() | kinds_strategy)
def test_the_detector_finds_what_a_full_scan_finds(
    text: str, min_token_length: int, kinds: set[str] | None
) -> None:
    detector = PIIDetector(min_token_length=min_token_length)
    expected = full_scan(text, ORDER if kinds is None else kinds, min_token_length)
    assert [(m.kind.value, m.start, m.end) for m in detector.find(text, kinds)] == expected
    assert detector.contains(text, kinds) == bool(expected)
    redacted, found = detector.redact(text, kinds)
    position, parts = 0, list[str]()
    for kind, start, end in expected:
        parts += (text[position:start], PIIKind(kind).marker)
        position = end
    assert redacted == "".join(parts) + text[position:]
    assert found == {PIIKind(kind) for kind, _, _ in expected}


class Text(str):
    """A str subclass: walked by the general path, as plain strings are not."""

    __slots__ = ()


class Items(list[Any]):
    """A list subclass: walked by the general path."""


class Number(int):
    """An int subclass: looked at, and left alone, by the general path."""


def general(value: object) -> object:
    """``value`` with plain dicts, lists, strings and ints swapped for types that take the general path."""
    if type(value) is str:
        return Text(value)
    if type(value) is int:
        return Number(value)
    if type(value) is list:
        return Items(general(item) for item in value)
    if type(value) is tuple:
        return tuple(general(item) for item in value)
    if type(value) is dict:
        return MappingProxyType({general(key): general(item) for key, item in value.items()})
    return value


keys_strategy = st.one_of(
    text_strategy, st.integers(-5, 5), st.tuples(st.text(max_size=3), st.integers(0, 3))
)
leaves = st.one_of(
    text_strategy,
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    text_strategy.map(str.encode),
)
values_strategy = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys_strategy, inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values_strategy, limits=limits_strategy, kinds=st.none() | kinds_strategy)
def test_plain_values_come_out_as_through_the_general_path(
    value: object, limits: Limits, kinds: set[str] | None
) -> None:
    detector = PIIDetector(max_depth=limits.max_depth, max_chars=limits.max_chars)
    disguised = general(value)
    assert detector.contains(value, kinds) == detector.contains(disguised, kinds)
    assert detector.find(value, kinds) == detector.find(disguised, kinds)
    assert detector.redact(value, kinds) == detector.redact(disguised, kinds)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values_strategy, limits=limits_strategy, shortest=st.sampled_from([0, 1, 3, 7, 15]))
def test_short_strings_count_against_the_limit_but_are_not_passed_on(
    value: object, limits: Limits, shortest: int
) -> None:
    every = list(texts(value, limits))
    assert list(texts(value, limits, shortest)) == [text for text in every if len(text[1]) >= shortest]
    seen: list[str] = []

    def upper(text: str) -> str:
        seen.append(text)
        return text.upper()

    def upper_long(text: str) -> str:
        return text.upper() if len(text) >= shortest else text

    assert rebuild(value, limits, upper, shortest) == rebuild(value, limits, upper_long)
    assert all(len(text) >= shortest for text in seen)


class Recorder:
    """A backend that finds nothing and records each string it is given."""

    kinds = frozenset({PIIKind.PERSON})

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scan(self, text: str, kinds: frozenset[PIIKind]) -> Iterator[PIISpan]:
        self.seen.append(text)
        return iter(())


def test_backends_see_every_string_however_short() -> None:
    value = {"a": 1, "q": "hello world", "": ["x", "", b"ok", 7, None], "mail": "jane@example.com"}
    every = ["a", "q", "hello world", "", "x", "", "ok", "mail", "jane@example.com"]
    recorder = Recorder()
    detector = PIIDetector(backends=[recorder])
    detector.find(value)
    assert recorder.seen == every
    recorder.seen.clear()
    assert detector.redact(value)[0] == {**value, "mail": "[REDACTED:email]"}
    assert recorder.seen == every
    recorder.seen.clear()
    assert not detector.contains(value, kinds=["person"])
    assert recorder.seen == every


def test_a_dict_that_contains_itself_ends(detector: PIIDetector) -> None:
    loop: dict[str, object] = {"mail": "jane@example.com"}
    loop["self"] = loop
    loop["list"] = [loop, {"again": loop}]
    assert [m.path for m in detector.find(loop)] == ["mail"]
    assert detector.redact(loop) == (
        {"mail": "[REDACTED:email]", "self": CYCLE, "list": [CYCLE, {"again": CYCLE}]},
        frozenset({PIIKind.EMAIL}),
    )


def test_limits_apply_to_plain_values_as_before() -> None:
    detector = PIIDetector(max_chars=10, max_depth=1)
    value = {"ab": "cd", "list": ["deep"], "long": "x" * 10, "after": "y"}
    assert detector.redact(value)[0] == {
        "ab": "cd",
        "list": [UNSCANNED],  # too deep
        "lo" + UNSCANNED: UNSCANNED,  # the 10th character is the last scanned
        UNSCANNED: UNSCANNED,
    }
    assert detector.redact(["", "a" * 10, ""])[0] == ["", "a" * 10, UNSCANNED]


def test_asking_for_the_same_kinds_again_gives_the_same_answers(detector: PIIDetector) -> None:
    value = {"to": "jane@example.com", "call": "+1 415-555-2671"}
    for _ in range(2):
        assert [m.kind for m in detector.find(value, kinds=["phone", "email"])] == ["email", "phone"]
        assert [m.kind for m in detector.find(value, kinds={"phone"})] == ["phone"]
        assert not detector.contains(value, kinds=[])


json_leaves = st.one_of(text_strategy, st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(text_strategy, st.integers(-5, 5)), inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=12,
)


def as_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, limits=limits_strategy, min_token_length=token_lengths)
def test_a_value_whose_json_is_clean_is_left_alone(
    value: object, limits: Limits, min_token_length: int
) -> None:
    detector = PIIDetector(
        max_depth=limits.max_depth, max_chars=limits.max_chars, min_token_length=min_token_length
    )
    for separators in ((",", ":"), (", ", ": ")):
        if detector.clean_json(json.dumps(value, ensure_ascii=False, separators=separators)):
            redacted, kinds = detector.redact(value)
            assert kinds == frozenset()
            assert as_json(redacted) == as_json(value)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_strategy, min_token_length=token_lengths)
def test_a_string_with_a_match_never_has_clean_json(text: str, min_token_length: int) -> None:
    detector = PIIDetector(min_token_length=min_token_length)
    if detector.find(text):
        for value in (text, [text], {"key": text}, {text: 1}, {"a": [{"b": ("x", text)}]}):
            assert not detector.clean_json(as_json(value))


@pytest.mark.parametrize("text", PII)
def test_every_kind_makes_json_unclean(detector: PIIDetector, text: str) -> None:
    assert not detector.clean_json(as_json({"args": {"note": f"see {text}\n"}}))


def test_clean_json_is_never_true_past_the_limits_or_with_backends() -> None:
    value = {"a": {"b": "plain text"}}
    assert PIIDetector().clean_json(as_json(value))
    assert not PIIDetector(max_depth=1).clean_json(as_json(value))  # "plain text" is inside two
    assert PIIDetector(max_depth=2).clean_json(as_json(value))
    assert not PIIDetector(max_chars=len(as_json(value)) - 1).clean_json(as_json(value))
    assert not PIIDetector(backends=[Recorder()]).clean_json(as_json(value))
