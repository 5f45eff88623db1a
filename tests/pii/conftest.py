from __future__ import annotations

from collections.abc import Callable

import pytest

from proctor.pii import PIIDetector

Found = Callable[[object], list[tuple[str, str]]]


@pytest.fixture(scope="session")
def detector() -> PIIDetector:
    return PIIDetector()


@pytest.fixture(scope="session")
def found(detector: PIIDetector) -> Found:
    """``found(value)``: the (kind, matched text) pairs the default detector reports."""

    def pairs(value: object) -> list[tuple[str, str]]:
        return [(match.kind.value, match.text) for match in detector.find(value)]

    return pairs
