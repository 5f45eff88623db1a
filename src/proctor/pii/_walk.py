"""Walking nested values: the strings inside them, and copies with those strings replaced.

Both walks look into ``str``; ``bytes`` and ``bytearray`` (decoded as UTF-8,
invalid bytes replaced); ``Mapping`` keys and values; ``list``, ``tuple``,
``set`` and ``frozenset`` items; dataclass instances (their fields); and
objects with a callable ``model_dump()`` such as pydantic models (the mapping
it returns). Numbers and other objects are not looked into. Plain ``str``,
``dict`` and ``list`` values, numbers and ``None`` (checked by exact type) take
shorter paths through the walks, with the same results.

Limits, shared by both walks:

- a value inside more than ``max_depth`` containers is skipped;
- a container that contains itself (directly or further down) is skipped
  where it recurs, so cycles end;
- after ``max_chars`` characters of text in all, the rest is skipped (the
  string that crosses the limit is cut at it).

Skipped text never goes unnoticed: ``rebuild`` puts ``UNSCANNED`` in place of
whatever it skipped (and ``CYCLE`` where a container recurs), and ``TextWalk``
reports why it skipped something, so that ``contains`` can fail closed. A
cycle skips nothing: the container was scanned where it first occurs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CYCLE", "UNSCANNED", "Limits", "Path", "Text", "TextWalk", "format_path", "rebuild", "texts"]

UNSCANNED = "[UNSCANNED]"
"""Put in a copy in place of text that was not scanned (over a limit, or unreadable)."""

CYCLE = "[CYCLE]"
"""Put in a copy where a container recurs inside itself."""

Segment = int | str | tuple[object]
"""A step into a value: an ``int`` is a sequence index, a ``str`` reads as written (``.name``),
and ``(key,)`` is a mapping key, rendered (``.key`` or ``[repr(key)]``) only by ``format_path``."""

Path = tuple[Segment, ...]

# Types whose values are never looked into. Checked by exact type: a subclass
# may be a dataclass or have model_dump().
_SCALARS: frozenset[type] = frozenset({int, float, complex, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Limits:
    """How far a walk goes: see the module docstring."""

    max_depth: int
    max_chars: int


Text = tuple[Path, str, bool]
"""A string found in a value, possibly cut at the character limit: ``(path, text, in_key)``.

Plain tuples, here and in ``_Node``: a ``NamedTuple`` takes ten times as long to make.
"""

_Node = tuple[list[tuple[Segment, object, bool]], Callable[[list[object]], object]]
"""A container: its children ``(segment, value, is_key)`` and how to build one from new children."""


def format_path(path: Path) -> str:
    """Render a path as ``args.query``, ``[2].email`` or ``headers['X-Api-Key']``."""
    return "".join(map(_render, path)).removeprefix(".")


def _render(segment: Segment) -> str:
    if isinstance(segment, int):
        return f"[{segment}]"
    if isinstance(segment, tuple):
        (key,) = segment
        return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
    return segment


def texts(value: object, limits: Limits, shortest: int = 0) -> Iterator[Text]:
    """The strings inside ``value``, depth first, within ``limits`` (``TextWalk`` without its report)."""
    if type(value) is str:  # on its own, a string is never too deep
        text = value[: limits.max_chars]
        return iter([((), text, False)] if len(text) >= shortest else [])
    return iter(TextWalk(value, limits, shortest))


def rebuild(value: object, limits: Limits, transform: Callable[[str], str], shortest: int = 0) -> object:
    """A copy of ``value`` with each string ``s`` inside it replaced by ``transform(s)``.

    Containers come back new: mappings and models as ``dict``, lists as
    ``list``, tuples as tuples (named tuples keep their class), sets as
    ``set`` or ``frozenset``, dataclass instances as shallow copies with new
    field values. Bytes come back as bytes, re-encoded only when changed.
    Numbers and objects the walk does not look into are kept, not copied.
    Strings shorter than ``shortest`` (after the cut at ``max_chars``) are
    kept as they are: ``transform`` must keep them so too.
    """
    if type(value) is str and len(value) <= limits.max_chars:  # on its own, a string is never too deep
        return value if len(value) < shortest else transform(value)
    return _Rebuild(limits, transform, shortest).copy(value, 0)


class TextWalk:
    """The strings inside a value, depth first in the value's order, and what the limits kept out.

    Iterating (once) yields ``Text`` tuples as ``texts`` does. ``skipped`` is None while everything
    met was within the limits, else why not (the first reason met: a string past ``max_chars``,
    text or a container past ``max_depth``, a model that cannot be read); it is set before the
    part of a string cut at ``max_chars`` is yielded. Strings shorter than ``shortest`` count
    against ``max_chars`` but are not yielded. A container recurring inside itself is scanned
    where it first occurs; with ``once``, so is every container met again (shared references),
    which keeps a walk linear in the objects it holds. The walk is iterative: it does not recurse.
    """

    __slots__ = ("_limits", "_once", "_shortest", "_value", "skipped")

    def __init__(self, value: object, limits: Limits, shortest: int = 0, *, once: bool = False) -> None:
        self._value = value
        self._limits = limits
        self._shortest = shortest
        self._once = once
        self.skipped: str | None = None

    def __iter__(self) -> Iterator[Text]:
        value = self._value
        max_chars = self._limits.max_chars
        shortest = self._shortest
        if isinstance(value, str | bytes | bytearray):  # on its own, a string is never too deep
            text, whole = _read_text(value, max_chars)
            if not whole:
                self._skip(_too_long(value, max_chars))
            if len(text) >= shortest:
                yield (), text, False
            return
        if type(value) in _SCALARS:
            return
        node = _expand(value)
        if node is None:
            return
        if node[1] is _unreadable:
            self._skip(_cannot_read(value))
            return
        max_depth = self._limits.max_depth
        remaining = max_chars
        once = self._once
        # The containers being walked (with ``once``: every one entered so far, kept alive in
        # ``entered`` so that no other object can take the id of one that is gone).
        ancestors = {id(value)}
        entered = [value] if once else None
        visits = max_chars  # containers entered at most: shared references cannot make a walk explode
        stack: list[tuple[Iterator[tuple[Segment, object, bool]], Path, int, int]] = [
            (iter(node[0]), (), 0, id(value))
        ]
        while stack:
            children, path, depth, ident = stack[-1]
            depth += 1  # the children's depth
            for segment, child, child_is_key in children:
                if type(child) is str:  # the common case, inline
                    size = len(child)
                    if depth > max_depth:
                        if size:
                            self._skip(_too_deep(max_depth))
                    elif size <= remaining:
                        remaining -= size
                        if size >= shortest:
                            yield (*path, segment), child, child_is_key
                    else:
                        self._skip(_too_long(child, max_chars))
                        if remaining and remaining >= shortest:
                            yield (*path, segment), child[:remaining], child_is_key
                        return
                    continue
                if type(child) in _SCALARS:
                    continue
                if isinstance(child, str | bytes | bytearray):
                    if depth > max_depth:
                        if child:
                            self._skip(_too_deep(max_depth))
                        continue
                    text, whole = _read_text(child, remaining)
                    remaining -= len(text)
                    if not whole:
                        self._skip(_too_long(child, max_chars))
                    if len(text) >= shortest and (whole or text):
                        yield (*path, segment), text, child_is_key
                    if not whole:
                        return
                    continue
                child_id = id(child)
                if child_id in ancestors:  # a cycle, or (once) a container scanned already
                    continue
                node = _expand(child)
                if node is None:
                    continue
                if node[1] is _unreadable:
                    self._skip(_cannot_read(child))
                    continue
                if depth > max_depth:
                    if node[0]:
                        self._skip(_too_deep(max_depth))
                    continue
                visits -= 1
                if visits < 0:
                    self._skip(_too_many(max_chars))
                    return
                ancestors.add(child_id)
                if entered is not None:
                    entered.append(child)
                stack.append((iter(node[0]), (*path, segment), depth, child_id))
                break
            else:
                stack.pop()
                if entered is None:
                    ancestors.discard(ident)

    def _skip(self, reason: str) -> None:
        if self.skipped is None:
            self.skipped = reason


def _too_long(value: str | bytes | bytearray, max_chars: int) -> str:
    unit = "characters" if isinstance(value, str) else "bytes"
    size = f"{len(value):,} {unit}"
    return f"a string of {size} runs past max_chars={max_chars:,} (the most text scanned per call)"


def _too_many(count: int) -> str:
    return f"more than {count:,} containers met (shared ones count each time they are met)"


def _too_deep(max_depth: int) -> str:
    return f"a value is nested deeper than max_depth={max_depth}"


def _cannot_read(value: object) -> str:
    return f"a {type(value).__name__} could not be read (its model_dump() failed or gave no mapping)"


class _Rebuild:
    """Copies a value with its strings transformed; a container met again (a shared reference) is
    copied once and its copy reused, so the work is linear in the objects the value holds."""

    __slots__ = ("_ancestors", "_copies", "_max_depth", "_remaining", "_shortest", "_transform")

    def __init__(self, limits: Limits, transform: Callable[[str], str], shortest: int) -> None:
        self._max_depth = limits.max_depth
        self._remaining = limits.max_chars
        self._transform = transform
        self._shortest = shortest
        self._ancestors: set[int] = set()
        # id of a container copied whole -> (the container, kept alive so its id stays its own; the copy)
        self._copies: dict[int, tuple[object, object]] = {}

    def copy(self, value: object, depth: int) -> object:
        if type(value) is str:
            if depth > self._max_depth or self._remaining <= 0 or len(value) > self._remaining:
                return self._copy_text(value, depth)
            # _copy_text's common case, inline: a whole string.
            self._remaining -= len(value)
            return value if len(value) < self._shortest else self._transform(value)
        if type(value) in _SCALARS:
            return value
        if type(value) is dict or type(value) is list:
            # What the general path below makes of them, without building a node.
            if id(value) in self._ancestors:
                return CYCLE
            done = self._copies.get(id(value))
            if done is not None:
                return done[1]
            if depth > self._max_depth:
                return UNSCANNED
            self._ancestors.add(id(value))
            try:
                copied: object
                if isinstance(value, list):
                    copied = [self.copy(item, depth + 1) for item in value.copy()]
                else:
                    mapping: dict[object, object] = {}
                    for key, item in list(value.items()):
                        new_key = self.copy(key, depth + 1)
                        mapping[new_key if type(new_key) is str else _hashable(new_key)] = self.copy(
                            item, depth + 1
                        )
                    copied = mapping
            finally:
                self._ancestors.discard(id(value))
            self._copies[id(value)] = (value, copied)
            return copied
        if isinstance(value, str | bytes | bytearray):
            return self._copy_text(value, depth)
        if id(value) in self._ancestors:
            return CYCLE
        done = self._copies.get(id(value))
        if done is not None:
            return done[1]
        node = _expand(value)
        if node is None:
            return value
        if depth > self._max_depth:
            return UNSCANNED
        children, assemble = node
        self._ancestors.add(id(value))
        try:
            copied = assemble([self.copy(child, depth + 1) for _, child, _ in children])
        finally:
            self._ancestors.discard(id(value))
        self._copies[id(value)] = (value, copied)
        return copied

    def _copy_text(self, value: str | bytes | bytearray, depth: int) -> object:
        if depth > self._max_depth or self._remaining <= 0:
            return UNSCANNED
        text, whole = _read_text(value, self._remaining)
        self._remaining -= len(text)
        new = text if len(text) < self._shortest else self._transform(text)
        if not whole:
            new += UNSCANNED
        if isinstance(value, str):
            return new
        if new == text:
            return bytes(value) if isinstance(value, bytes) else bytearray(value)
        return new.encode() if isinstance(value, bytes) else bytearray(new.encode())


def _read_text(value: str | bytes | bytearray, limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters of ``value`` as text, and whether that is all of it."""
    if isinstance(value, str):
        return value[:limit], len(value) <= limit
    # UTF-8 takes at most 4 bytes a character: decode no more than needed.
    text = bytes(value[: limit * 4]).decode("utf-8", "replace")
    return text[:limit], len(value) <= limit * 4 and len(text) <= limit


def _expand(value: object) -> _Node | None:
    """The children of a container the walks look into; None for anything else."""
    if type(value) is list:  # ahead of the slower Mapping test, which a list fails
        return _list_node(value)
    if type(value) is dict or isinstance(value, Mapping):
        return _mapping_node(value)
    if isinstance(value, list):
        return _list_node(value)
    if isinstance(value, tuple):
        children: list[tuple[Segment, object, bool]] = [(i, item, False) for i, item in enumerate(value)]
        if hasattr(value, "_fields"):  # a named tuple: its class takes the fields as arguments
            named: Callable[..., object] = type(value)
            return children, lambda items: named(*items)
        return children, tuple
    if isinstance(value, set | frozenset):
        make_set: Callable[[Iterable[object]], object] = frozenset if isinstance(value, frozenset) else set
        return [("[*]", item, False) for item in value], lambda items: make_set(map(_hashable, items))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_node(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        try:
            dumped = model_dump()
        except Exception:
            dumped = None
        if isinstance(dumped, Mapping):
            return _mapping_node(dumped)
        return [], _unreadable  # a model that cannot be read is not passed on
    return None


def _unreadable(_: list[object]) -> object:
    """What a model that cannot be read becomes in a copy."""
    return UNSCANNED


def _list_node(items: list[object]) -> _Node:
    return [(index, item, False) for index, item in enumerate(items)], list


def _mapping_node(mapping: Mapping[object, object]) -> _Node:
    children: list[tuple[Segment, object, bool]] = []
    for key, item in mapping.items():
        segment = (key,)
        children += ((segment, key, True), (segment, item, False))
    return children, _assemble_mapping


def _assemble_mapping(items: list[object]) -> dict[object, object]:
    return {_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)}


def _dataclass_node(instance: DataclassInstance) -> _Node:
    fields = dataclasses.fields(instance)

    def assemble(values: list[object]) -> object:
        try:
            new = copy.copy(instance)
            for field, field_value in zip(fields, values, strict=True):
                object.__setattr__(new, field.name, field_value)
        except Exception:
            return {field.name: field_value for field, field_value in zip(fields, values, strict=True)}
        return new

    return [(f".{field.name}", getattr(instance, field.name), False) for field in fields], assemble


def _hashable(value: object) -> object:
    """``value`` if it can be a mapping key or set member; else its ``str``.

    A rebuilt key can lose hashability only when a model in it became a dict.
    """
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value
