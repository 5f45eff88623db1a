"""Adversarial inputs: every pattern is linear time, so 100 KB strings finish.

No timing is asserted: a pattern that backtracked catastrophically would make
these tests run into pytest-timeout (120 s) instead of finishing in seconds.
Results are checked for consistency (and, where known, for exact content).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.pii import PIIDetector, PIIKind

SIZE = 100_000

ATOMS = [
    *"0123456789",
    *"@.-:+()/_= \n\t",
    *"aAfFzZé",
    "eyJ",
    "AKIA",
    "sk-",
    "ghp_",
    "SG.",
    "DE89",
    "::",
    "com/services/",
    "https://hooks.slack.",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "-----END",
]


def repeated(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def check_consistent(detector: PIIDetector, text: str) -> None:
    matches = detector.find(text)
    end = 0
    for match in matches:
        assert end <= match.start < match.end <= len(text)
        assert text[match.start : match.end] == match.text
        end = match.end
    assert detector.contains(text) == bool(matches)
    redacted, kinds = detector.redact(text)
    assert kinds == {match.kind for match in matches}
    expected: list[str] = []
    position = 0
    for match in matches:
        expected += (text[position : match.start], match.kind.marker)
        position = match.end
    expected.append(text[position:])
    assert redacted == "".join(expected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6).map("".join))
def test_repeated_adversarial_units_finish_consistently(detector: PIIDetector, unit: str) -> None:
    check_consistent(detector, repeated(unit))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alphabet=st.lists(st.sampled_from("0123456789 .-()+@:abcdefABCDEF_/\n"), min_size=2, unique=True),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_random_adversarial_text_finishes_consistently(
    detector: PIIDetector, alphabet: list[str], seed: int
) -> None:
    # Hypothesis draws the alphabet; 100 KB is too long for it to draw, so a seeded RNG fills it in.
    check_consistent(detector, "".join(random.Random(seed).choices(alphabet, k=SIZE)))


@pytest.mark.parametrize(
    "unit",
    [
        "1",  # one 100 KB number
        "1 ",  # single digits: no phone numbers
        "12 ",
        "4111 ",  # card-like groups, run on too far
        "(1",
        "@",
        "a@",
        "a.",
        "a@b.",  # one-letter TLDs
        ".",
        "1.",  # one long dotted run
        "1:",
        "f:",
        "ff::",  # too long for an address
        "a",
        "deadbeef",  # hex, single case
        "-",
        "eyJa.",
        "AKIA",
        "/ghp_",
        "-----BEGIN CERTIFICATE-----\n",
        "-----END",
        " ",
    ],
)
def test_long_runs_with_nothing_to_find(detector: PIIDetector, unit: str) -> None:
    text = repeated(unit)
    assert detector.find(text) == []
    assert not detector.contains(text)
    assert detector.redact(text) == (text, frozenset())


@pytest.mark.parametrize(
    ("unit", "kind", "match"),
    [
        ("jane@example.com ", PIIKind.EMAIL, "jane@example.com"),
        ("call 415-555-2671 ", PIIKind.PHONE, "415-555-2671"),
        ("4111 1111 1111 1111, ", PIIKind.CREDIT_CARD, "4111 1111 1111 1111"),
        ("10.1.2.3 ", PIIKind.IP_ADDRESS, "10.1.2.3"),
        ("Zx9Qw2Er5Ty8Ui1Op4As ", PIIKind.SECRET, "Zx9Qw2Er5Ty8Ui1Op4As"),
    ],
)
def test_long_runs_of_one_kind_are_all_found(
    detector: PIIDetector, unit: str, kind: PIIKind, match: str
) -> None:
    text = repeated(unit)
    matches = detector.find(text)
    assert len(matches) == text.count(match)
    assert {(m.kind, m.text) for m in matches} == {(kind, match)}


def test_an_unterminated_private_key_takes_the_rest(detector: PIIDetector) -> None:
    text = repeated("-----BEGIN RSA PRIVATE KEY-----\n")
    assert [(m.kind, m.start, m.end) for m in detector.find(text)] == [(PIIKind.SECRET, 0, SIZE)]
