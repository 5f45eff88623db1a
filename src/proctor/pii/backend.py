"""PIIBackend: the seam for detection beyond the built-in patterns (NER models)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from proctor.pii.kinds import PIIKind
from proctor.pii.match import PIISpan

__all__ = ["PIIBackend"]


class PIIBackend(Protocol):
    """Finds kinds of PII in one text; plugged into ``PIIDetector(backends=[...])``.

    A backend wrapping Presidio's NER recognizers, for instance, would declare
    ``kinds = frozenset({PIIKind.PERSON, PIIKind.LOCATION})``. The detector
    walks nested values, enforces its limits, resolves overlaps and redacts;
    a backend only looks at one string at a time. Exceptions a backend raises
    propagate to the caller of the detector.
    """

    @property
    def kinds(self) -> frozenset[PIIKind]:
        """The kinds this backend can find."""
        ...

    def scan(self, text: str, kinds: frozenset[PIIKind]) -> Iterable[PIISpan]:
        """Find the given kinds in ``text``.

        :param text: one string (a value, a mapping key, or decoded bytes),
            possibly cut short by the detector's ``max_chars``.
        :param kinds: the kinds wanted, never empty, a subset of ``self.kinds``.
        :returns: spans with ``0 <= start < end <= len(text)``, in any order,
            possibly lazily (``contains()`` stops at the first). Spans of other
            kinds or out of range are ignored.
        """
        ...
