"""Security labels: how sensitive the data an action touches is."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SecurityLabel"]


class SecurityLabel(StrEnum):
    """Sensitivity of a task's data, ordered ``PUBLIC < INTERNAL < CONFIDENTIAL``.

    The values are plain strings (``"public"``, ...), so labels serialise as
    themselves and compare equal to their string value.
    """

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"

    @property
    def rank(self) -> int:
        """Position in the order: 0 for PUBLIC, 2 for CONFIDENTIAL."""
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SecurityLabel):
            return NotImplemented
        return _RANK[self] < _RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, SecurityLabel):
            return NotImplemented
        return _RANK[self] <= _RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, SecurityLabel):
            return NotImplemented
        return _RANK[self] > _RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, SecurityLabel):
            return NotImplemented
        return _RANK[self] >= _RANK[other]

    # str's __hash__ is lost when comparison methods are defined.
    __hash__ = str.__hash__


_RANK = {SecurityLabel.PUBLIC: 0, SecurityLabel.INTERNAL: 1, SecurityLabel.CONFIDENTIAL: 2}
