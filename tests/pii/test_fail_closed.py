"""``contains`` fails closed: PII anywhere is found, or the value counts as containing PII.

Whatever the offset of PII in a long string or the depth it is nested at, ``contains`` is True:
found when within the limits, and counted (with a warning saying why) when a limit kept part of
the value from being scanned. Cycles and shared containers are scanned in full, once.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.pii import MAX_DEPTH_LIMIT, PIIDetector, PIIKind

EMAIL = "bob@example.com"
CARD = "4111 1111 1111 1111"
FILLERS = ["a ", "lorem ipsum dolor sit amet ", "2024-10-15 v1.2.3 ", "x" * 300 + " ", "é "]


def nested(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


def test_the_defaults_scan_what_the_issue_measured(detector: PIIDetector) -> None:
    # Before: each of these was False (cut at max_chars=262,144 or skipped past max_depth=32).
    email_after_256_kb = "a " * 300_000 + " " + EMAIL
    card_after_3_mb = "a " * 1_500_000 + " " + CARD
    assert [m.text for m in detector.find(email_after_256_kb)] == [EMAIL]
    assert [m.text for m in detector.find(card_after_3_mb)] == [CARD]
    assert [m.path for m in detector.find(nested(EMAIL, 40))] == ["[0]" * 40]
    for value in (email_after_256_kb, card_after_3_mb, nested(EMAIL, 40), nested(EMAIL, MAX_DEPTH_LIMIT)):
        assert detector.contains(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    filler=st.sampled_from(FILLERS),
    size=st.integers(min_value=0, max_value=600_000),
    pii=st.sampled_from([EMAIL, CARD]),
    max_chars=st.sampled_from([1_000, 100_000, 262_144, None]),
)
def test_pii_at_any_offset_is_found_or_fails_closed(
    filler: str, size: int, pii: str, max_chars: int | None
) -> None:
    detector = PIIDetector() if max_chars is None else PIIDetector(max_chars=max_chars)
    text = (filler * (size // len(filler) + 1))[:size] + " to: " + pii + " and more"
    assert detector.contains(text)
    assert detector.contains({"body": [text]})
    if max_chars is None or len(text) <= max_chars:
        assert pii in [m.text for m in detector.find(text)]


@settings(max_examples=40, deadline=None)
@given(
    depth=st.integers(min_value=0, max_value=300),
    max_depth=st.sampled_from([0, 1, 5, 32, MAX_DEPTH_LIMIT]),
    wrap=st.sampled_from(["list", "dict", "tuple"]),
)
def test_pii_at_any_depth_is_found_or_fails_closed(depth: int, max_depth: int, wrap: str) -> None:
    value: object = EMAIL
    for _ in range(depth):
        value = [value] if wrap == "list" else {"k": value} if wrap == "dict" else (value,)
    detector = PIIDetector(max_depth=max_depth)
    assert detector.contains(value)
    assert detector.contains(["clean", value, "clean"])
    assert bool(detector.find(value)) is (depth <= max_depth)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * 30, "a string of 30 characters runs past max_chars=25"),
        (["x" * 20, "y" * 10], "a string of 10 characters runs past max_chars=25"),
        (b"x" * 30, "a string of 30 bytes runs past max_chars=25"),
        ({"a": {"b": ["clean"]}}, "nested deeper than max_depth=2"),
        ({"a": {"b": [[]], "c": ["clean"]}}, "nested deeper than max_depth=2"),
    ],
)
def test_what_is_not_scanned_counts_as_pii_and_is_logged(
    value: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    limited = PIIDetector(max_chars=25, max_depth=2)
    with caplog.at_level(logging.WARNING, logger="proctor.pii"):
        assert limited.contains(value)
    assert "not scanned in full" in caplog.text
    assert reason in caplog.text
    assert "clean" not in caplog.text  # the log names sizes and limits, never the text


def test_a_model_that_cannot_be_read_counts_as_pii(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def model_dump(self) -> dict[str, object]:
            raise RuntimeError("cannot dump")

    with caplog.at_level(logging.WARNING, logger="proctor.pii"):
        assert PIIDetector().contains({"user": Broken()})
    assert "model_dump()" in caplog.text


def test_what_fits_the_limits_exactly_is_scanned_in_full(caplog: pytest.LogCaptureFixture) -> None:
    limited = PIIDetector(max_chars=25, max_depth=2)
    with caplog.at_level(logging.WARNING, logger="proctor.pii"):
        assert not limited.contains(["x" * 20, "y" * 5, "", 7, None])  # 25 characters: all of it
        assert not limited.contains({"a": {"b": "c", "d": 1.5}, "e": [[]]})  # nothing past depth 2 to scan
        assert not limited.contains({"a": {"b": [7, None, ""]}})  # past depth 2, but no text
    assert caplog.text == ""


def test_cycles_and_shared_containers_are_scanned_once() -> None:
    loop: list[object] = ["clean"]
    loop.append(loop)
    assert not PIIDetector().contains(loop)
    # 2**60 paths to one list: scanned once, so this ends (and nothing is over a limit).
    shared: object = ["clean", 7]
    for _ in range(60):
        shared = [shared, shared]
    assert not PIIDetector().contains(shared)
    assert PIIDetector().contains([shared, {"to": EMAIL}])


def test_kinds_asked_for_do_not_change_failing_closed() -> None:
    limited = PIIDetector(max_chars=10)
    assert limited.contains("x" * 11, kinds=[PIIKind.IBAN])
    assert not limited.contains("x" * 10, kinds=[PIIKind.IBAN])
