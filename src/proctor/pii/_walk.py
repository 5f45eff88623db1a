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

Skipped text never goes unnoticed in a copy: ``rebuild`` puts ``UNSCANNED`` in
place of whatever it skipped (and ``CYCLE`` where a container recurs).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CYCLE", "UNSCANNED", "Limits", "Path", "Text", "format_path", "rebuild", "texts"]

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
    """The strings inside ``value``, depth first, within ``limits``.

    Strings shorter than ``shortest`` (after the cut at ``max_chars``) count
    against ``max_chars`` but are not yielded.
    """
    if type(value) is str:  # on its own, a string is never too deep
        text = value[: limits.max_chars]
        return iter([((), text, False)] if len(text) >= shortest else [])
    return _Scan(limits, shortest).walk(value, (), 0, False)


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


class _Scan:
    __slots__ = ("_ancestors", "_max_depth", "_remaining", "_shortest")

    def __init__(self, limits: Limits, shortest: int) -> None:
        self._max_depth = limits.max_depth
        self._remaining = limits.max_chars
        self._shortest = shortest
        self._ancestors: set[int] = set()

    def walk(self, value: object, path: Path, depth: int, in_key: bool) -> Iterator[Text]:
        if self._remaining <= 0 or depth > self._max_depth:
            return
        if isinstance(value, str | bytes | bytearray):
            text, _ = _read_text(value, self._remaining)
            self._remaining -= len(text)
            if len(text) >= self._shortest:
                yield path, text, in_key
            return
        if id(value) in self._ancestors:
            return
        node = _expand(value)
        if node is None:
            return
        self._ancestors.add(id(value))
        try:
            # Strings and scalars are taken here, as walk would take them, rather than walked into.
            shallow = depth < self._max_depth
            for segment, child, child_is_key in node[0]:
                if type(child) is str:
                    if shallow:
                        text = child[: self._remaining]
                        self._remaining -= len(text)
                        if len(text) >= self._shortest:
                            yield (*path, segment), text, child_is_key
                elif type(child) not in _SCALARS:
                    yield from self.walk(child, (*path, segment), depth + 1, child_is_key)
                if self._remaining <= 0:
                    return
        finally:
            self._ancestors.discard(id(value))


class _Rebuild:
    __slots__ = ("_ancestors", "_max_depth", "_remaining", "_shortest", "_transform")

    def __init__(self, limits: Limits, transform: Callable[[str], str], shortest: int) -> None:
        self._max_depth = limits.max_depth
        self._remaining = limits.max_chars
        self._transform = transform
        self._shortest = shortest
        self._ancestors: set[int] = set()

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
            if depth > self._max_depth:
                return UNSCANNED
            self._ancestors.add(id(value))
            try:
                if isinstance(value, list):
                    return [self.copy(item, depth + 1) for item in value.copy()]
                copied: dict[object, object] = {}
                for key, item in list(value.items()):
                    new_key = self.copy(key, depth + 1)
                    copied[new_key if type(new_key) is str else _hashable(new_key)] = self.copy(
                        item, depth + 1
                    )
                return copied
            finally:
                self._ancestors.discard(id(value))
        if isinstance(value, str | bytes | bytearray):
            return self._copy_text(value, depth)
        if id(value) in self._ancestors:
            return CYCLE
        node = _expand(value)
        if node is None:
            return value
        if depth > self._max_depth:
            return UNSCANNED
        children, assemble = node
        self._ancestors.add(id(value))
        try:
            return assemble([self.copy(child, depth + 1) for _, child, _ in children])
        finally:
            self._ancestors.discard(id(value))

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
        return [], lambda _: UNSCANNED  # a model that cannot be read is not passed on
    return None


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
