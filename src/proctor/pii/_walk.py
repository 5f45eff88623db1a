"""Walking nested values: the strings inside them, and copies with those strings replaced.

Both walks look into ``str``; ``bytes`` and ``bytearray`` (decoded as UTF-8,
invalid bytes replaced); ``Mapping`` keys and values; ``list``, ``tuple``,
``set`` and ``frozenset`` items; dataclass instances (their fields); and
objects with a callable ``model_dump()`` such as pydantic models (the mapping
it returns). Numbers and other objects are not looked into.

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
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CYCLE", "UNSCANNED", "Limits", "Path", "Text", "format_path", "rebuild", "texts"]

UNSCANNED = "[UNSCANNED]"
"""Put in a copy in place of text that was not scanned (over a limit, or unreadable)."""

CYCLE = "[CYCLE]"
"""Put in a copy where a container recurs inside itself."""

Segment = int | str
"""A step into a value: an ``int`` is a sequence index, a ``str`` reads as written (``.name``)."""

Path = tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """How far a walk goes: see the module docstring."""

    max_depth: int
    max_chars: int


class Text(NamedTuple):
    """A string found in a value, possibly cut at the character limit."""

    path: Path
    text: str
    in_key: bool


class _Node(NamedTuple):
    """A container: its children (segment, value, is_key) and how to build one from new children."""

    children: list[tuple[Segment, object, bool]]
    assemble: Callable[[list[object]], object]


def format_path(path: Path) -> str:
    """Render a path as ``args.query``, ``[2].email`` or ``headers['X-Api-Key']``."""
    rendered = "".join(f"[{segment}]" if isinstance(segment, int) else segment for segment in path)
    return rendered.removeprefix(".")


def texts(value: object, limits: Limits) -> Iterator[Text]:
    """The strings inside ``value``, depth first, within ``limits``."""
    return _Scan(limits).walk(value, (), 0, False)


def rebuild(value: object, limits: Limits, transform: Callable[[str], str]) -> object:
    """A copy of ``value`` with each string ``s`` inside it replaced by ``transform(s)``.

    Containers come back new: mappings and models as ``dict``, lists as
    ``list``, tuples as tuples (named tuples keep their class), sets as
    ``set`` or ``frozenset``, dataclass instances as shallow copies with new
    field values. Bytes come back as bytes, re-encoded only when changed.
    Numbers and objects the walk does not look into are kept, not copied.
    """
    return _Rebuild(limits, transform).copy(value, 0)


class _Scan:
    def __init__(self, limits: Limits) -> None:
        self._max_depth = limits.max_depth
        self._remaining = limits.max_chars
        self._ancestors: set[int] = set()

    def walk(self, value: object, path: Path, depth: int, in_key: bool) -> Iterator[Text]:
        if self._remaining <= 0 or depth > self._max_depth:
            return
        if isinstance(value, str | bytes | bytearray):
            text, _ = _read_text(value, self._remaining)
            self._remaining -= len(text)
            yield Text(path, text, in_key)
            return
        if id(value) in self._ancestors:
            return
        node = _expand(value)
        if node is None:
            return
        self._ancestors.add(id(value))
        try:
            for segment, child, child_is_key in node.children:
                yield from self.walk(child, (*path, segment), depth + 1, child_is_key)
                if self._remaining <= 0:
                    return
        finally:
            self._ancestors.discard(id(value))


class _Rebuild:
    def __init__(self, limits: Limits, transform: Callable[[str], str]) -> None:
        self._max_depth = limits.max_depth
        self._remaining = limits.max_chars
        self._transform = transform
        self._ancestors: set[int] = set()

    def copy(self, value: object, depth: int) -> object:
        if isinstance(value, str | bytes | bytearray):
            return self._copy_text(value, depth)
        if id(value) in self._ancestors:
            return CYCLE
        node = _expand(value)
        if node is None:
            return value
        if depth > self._max_depth:
            return UNSCANNED
        self._ancestors.add(id(value))
        try:
            return node.assemble([self.copy(child, depth + 1) for _, child, _ in node.children])
        finally:
            self._ancestors.discard(id(value))

    def _copy_text(self, value: str | bytes | bytearray, depth: int) -> object:
        if depth > self._max_depth or self._remaining <= 0:
            return UNSCANNED
        text, whole = _read_text(value, self._remaining)
        self._remaining -= len(text)
        new = self._transform(text) if whole else self._transform(text) + UNSCANNED
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
    if isinstance(value, Mapping):
        return _mapping_node(value)
    if isinstance(value, list):
        return _Node([(index, item, False) for index, item in enumerate(value)], list)
    if isinstance(value, tuple):
        children: list[tuple[Segment, object, bool]] = [(i, item, False) for i, item in enumerate(value)]
        if hasattr(value, "_fields"):  # a named tuple: its class takes the fields as arguments
            named: Callable[..., object] = type(value)
            return _Node(children, lambda items: named(*items))
        return _Node(children, tuple)
    if isinstance(value, set | frozenset):
        make_set: Callable[[Iterable[object]], object] = frozenset if isinstance(value, frozenset) else set
        return _Node([("[*]", item, False) for item in value], lambda items: make_set(map(_hashable, items)))
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
        return _Node([], lambda _: UNSCANNED)  # a model that cannot be read is not passed on
    return None


def _mapping_node(mapping: Mapping[object, object]) -> _Node:
    children: list[tuple[Segment, object, bool]] = []
    for key, item in mapping.items():
        segment = f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
        children += ((segment, key, True), (segment, item, False))
    return _Node(
        children, lambda items: {_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)}
    )


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

    return _Node([(f".{field.name}", getattr(instance, field.name), False) for field in fields], assemble)


def _hashable(value: object) -> object:
    """``value`` if it can be a mapping key or set member; else its ``str``.

    A rebuilt key can lose hashability only when a model in it became a dict.
    """
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value
