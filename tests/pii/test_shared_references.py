"""Shared references cannot make a walk explode: find and redact stay linear, and fail closed."""

from __future__ import annotations

from typing import Any

from proctor.pii import PIIDetector


def doubled(leaf: Any, times: int = 60) -> Any:
    """A list that reaches ``leaf`` along 2**times paths, in ``times`` + 1 objects."""
    value = leaf
    for _ in range(times):
        value = [value, value]
    return value


def test_redact_copies_a_shared_container_once() -> None:
    detector = PIIDetector(max_depth=100)
    redacted, found = detector.redact(doubled(["mail bob@example.com"]))
    leaf = redacted
    for _ in range(60):
        assert leaf[0] is leaf[1]  # the copy keeps the sharing of the original
        leaf = leaf[0]
    assert "bob@example.com" not in leaf[0]
    assert found


def test_find_on_a_value_with_more_paths_than_it_can_walk_ends() -> None:
    detector = PIIDetector(max_depth=100, max_chars=100_000)  # it walks 100,000 containers at most
    matches = detector.find(doubled(["mail bob@example.com"]))
    assert matches  # the first paths were walked before the limit
    # contains looks at each container once, so it sees the whole value, and says no PII is in it.
    assert not detector.contains(doubled([]))
