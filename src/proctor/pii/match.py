"""What PII detection reports: a span in one text, and a match in a nested value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from proctor.pii.kinds import PIIKind

__all__ = ["PIIMatch", "PIISpan"]


class PIISpan(NamedTuple):
    """A kind found at ``text[start:end]`` of one text (what a backend returns)."""

    kind: PIIKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PIIMatch:
    """A kind found in a string somewhere inside a nested value.

    Parameters:
        kind: what was found.
        path: where the string is, such as ``args.query``, ``[2].email`` or
            ``headers['X-Api-Key']``; ``""`` for the value itself. Mapping keys
            that are identifiers read ``.key``, other keys ``[repr(key)]``,
            sequence items ``[index]``, set members ``[*]``, dataclass and
            model fields ``.field``.
        start, end: the match is ``string[start:end]``; for bytes, positions
            are in the text decoded as UTF-8 with replacement.
        text: the matched text. It is left out of ``repr()`` so that logging a
            match does not log the PII.
        in_key: True when the string is a mapping key (``path`` then leads to
            the entry that key names).
    """

    kind: PIIKind
    path: str
    start: int
    end: int
    text: str = field(repr=False)
    in_key: bool = False
