"""Apply ``modify`` rules to a call's arguments without touching the caller's objects."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proctor.rules.facts import MISSING
from proctor.rules.schema import Clamp

__all__ = ["REDACTED", "Change", "Patch", "apply_patches"]

REDACTED = "[REDACTED]"
"""What ``redact`` puts in place of a value."""


class Patch(Protocol):
    """What changes arguments: a ``modify`` rule, or a ``downgrade`` budget."""

    @property
    def id(self) -> str: ...
    @property
    def set(self) -> dict[str, Any]: ...
    @property
    def redact(self) -> tuple[str, ...]: ...
    @property
    def clamp(self) -> dict[str, Clamp]: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One argument changed by a rule: where, from what (``MISSING`` if it was not there), to what."""

    rule_id: str
    target: str
    before: Any
    after: Any


def apply_patches(args: Mapping[str, Any], rules: Sequence[Patch]) -> tuple[dict[str, Any], list[Change]]:
    """The arguments after each rule's ``set``, ``redact`` and ``clamp``, in rule order.

    Containers on a patched path are copied before they change, so the
    caller's arguments stay as they were. A target that does not exist is
    created by ``set`` and skipped by ``redact`` and ``clamp``; ``redact``
    leaves None and empty text alone (nothing to hide), ``clamp`` values that
    are not numbers. Targets may index lists (``args.messages.0.content``); a
    tuple on a patched path is passed on as a list.
    """
    patched: dict[str, Any] = dict(args)
    changes: list[Change] = []
    for rule in rules:
        for target, value in rule.set.items():
            before = _replace(patched, target, lambda _old, value=value: value, create=True)
            changes.append(Change(rule.id, target, before, value))
        for target in rule.redact:
            before = _replace(patched, target, lambda old: REDACTED if _hides(old) else old, create=False)
            if _hides(before):
                changes.append(Change(rule.id, target, before, REDACTED))
        for target, bounds in rule.clamp.items():

            def clamp(old: Any, low: float | None = bounds.min, high: float | None = bounds.max) -> Any:
                if isinstance(old, bool) or not isinstance(old, (int, float)) or math.isnan(old):
                    return old
                new = old
                if high is not None and new > high:
                    new = type(old)(high) if isinstance(old, int) and float(high).is_integer() else high
                if low is not None and new < low:
                    new = type(old)(low) if isinstance(old, int) and float(low).is_integer() else low
                return new

            before = _replace(patched, target, clamp, create=False)
            if before is not MISSING:
                after = _get(patched, target)
                if after != before:
                    changes.append(Change(rule.id, target, before, after))
    return patched, changes


def _hides(value: Any) -> bool:
    """Whether redacting ``value`` hides something: it exists and is not None or empty text."""
    return value is not MISSING and value is not None and not (isinstance(value, str) and not value)


def _get(args: Mapping[str, Any], target: str) -> Any:
    value: Any = args
    for key in target.split(".")[1:]:
        value = _child(value, key)
        if value is MISSING:
            break
    return value


def _child(container: Any, key: str) -> Any:
    """The item ``key`` of a mapping, the index ``key`` of a list, or the attribute ``key``; else MISSING."""
    if isinstance(container, Mapping):
        return container.get(key, MISSING)
    if isinstance(container, (list, tuple)):
        return container[int(key)] if key.isdigit() and int(key) < len(container) else MISSING
    return getattr(container, key, MISSING) if not key.startswith("_") else MISSING


def _copy(value: Any) -> Any:
    """A shallow copy to change instead of the caller's object; tuples become lists."""
    if isinstance(value, tuple):
        return list(value)
    return copy.copy(value)


def _replace(args: dict[str, Any], target: str, new: Any, *, create: bool) -> Any:
    """Set the value at ``target`` to ``new(old)``, copying containers on the way; returns the old value."""
    keys = target.split(".")[1:]
    container: Any = args
    for key in keys[:-1]:
        child = _child(container, key)
        if child is MISSING or child is None:
            if not create or isinstance(container, list):
                return MISSING
            child = {}
        else:
            child = _copy(child)
        _assign(container, key, child)
        container = child
    last = keys[-1]
    old = _child(container, last)
    if old is MISSING and (not create or isinstance(container, list)):
        return MISSING
    _assign(container, last, new(old))
    return old


def _assign(container: Any, key: str, value: Any) -> None:
    """Set ``key`` on a container that is the patch's own copy (so a frozen object may be set too)."""
    if isinstance(container, MutableMapping):
        container[key] = value
    elif isinstance(container, list):
        container[int(key)] = value
    else:
        # Our own shallow copy: setting past a frozen dataclass or a pydantic model is safe here.
        object.__setattr__(container, key, value)
