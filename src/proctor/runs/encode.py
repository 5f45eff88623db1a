"""Values to JSON for the run log: exact where JSON can hold them, a marked repr where not."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLASS_KEY",
    "REPR_MARKER",
    "Unrevivable",
    "dumps",
    "encode",
    "error_value",
    "freeze",
    "import_path",
    "revive",
    "snapshot",
]

REPR_MARKER = "__proctor_repr__"
"""The key of ``{"__proctor_repr__": "..."}``, which stands for a value JSON cannot hold."""

CLASS_KEY = "__proctor_class__"
"""The key that names the class (``module:qualname``) of a dataclass or pydantic model's fields."""

_BYTES = "__proctor_bytes__"

_MAX_DEPTH = 64
_FAST_DEPTH = 16
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_SCALARS = frozenset((str, int, bool, type(None), float))


def encode(value: Any) -> str:
    """``value`` as JSON text; never raises. ``dumps(snapshot(value))``."""
    return dumps(snapshot(value))


def snapshot(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only, unaffected by later changes to ``value``.

    Dicts, lists, tuples, text, numbers, booleans and None are kept;
    dataclasses and objects with ``model_dump()`` (pydantic) become their
    fields plus ``CLASS_KEY``; bytes become base64; NaN and infinities, and
    anything else, ``{"__proctor_repr__": repr(value)}``. Never raises.
    """
    return _plain(value, 0)


def freeze(value: Any) -> Any:
    """``value`` itself when later changes cannot reach it (text, numbers), else a copy made of JSON types.

    Cheaper than ``snapshot`` on the caller's path: dicts, lists and tuples of
    such values are copied as they are; anything else is handed to
    ``snapshot``. The writer converts what JSON cannot hold.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        for item in value.values():
            if type(item) not in _SCALARS:
                break
        else:
            return value.copy()
    try:
        return _copy(value, 0)
    except _NotPlain:
        return _plain(value, 0)


class _NotPlain(Exception):
    """Raised by ``_copy`` for a value it does not copy itself."""


def _copy(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth < _FAST_DEPTH:
        if kind is dict:  # keys JSON cannot hold make the writer take a snapshot of the copy
            return {
                key: item if type(item) in _SCALARS else _copy(item, depth + 1) for key, item in value.items()
            }
        if kind is list or kind is tuple:
            return [item if type(item) in _SCALARS else _copy(item, depth + 1) for item in value]
    raise _NotPlain


def error_value(error: BaseException) -> dict[str, Any]:
    """What the run log keeps of an exception: its class's import path, message and arguments."""
    kind = type(error)
    try:
        message = str(error)
    except Exception:  # a __str__ that raises must not lose the record
        message = f"<{kind.__name__} whose str() raised>"
    return {
        "type": _class_path(kind),
        "message": message,
        "args": snapshot(error.args),
    }


def dumps(plain: Any) -> str:
    """JSON text of a ``snapshot``."""
    return _ENCODER.encode(plain)


def _plain(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _marked(value)
    if depth >= _MAX_DEPTH:
        return _marked(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        try:
            items = sorted(value)
        except TypeError:
            items = list(value)
        return [_plain(item, depth + 1) for item in items]
    if isinstance(value, (bytes, bytearray)):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            field.name: _plain(getattr(value, field.name), depth + 1) for field in dataclasses.fields(value)
        }
        fields[CLASS_KEY] = _class_path(type(value))
        return fields
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            plain = _plain(dump(), depth + 1)
        except Exception:  # a model that cannot dump itself is stored by its repr
            return _marked(value)
        if isinstance(plain, dict):
            plain[CLASS_KEY] = _class_path(type(value))
        return plain
    return _marked(value)


class Unrevivable(ValueError):
    """A stored value that cannot be turned back into what was recorded (a repr, a class gone)."""


def revive(plain: Any) -> Any:
    """The value a ``snapshot`` was taken of, as far as JSON kept it.

    Bytes, dataclasses and pydantic models come back as such; tuples and sets
    come back as lists. Raises ``Unrevivable`` for a value stored as its repr,
    or whose class cannot be imported or rebuilt.
    """
    if isinstance(plain, list):
        return [revive(item) for item in plain]
    if not isinstance(plain, dict):
        return plain
    if REPR_MARKER in plain and len(plain) == 1:
        raise Unrevivable(f"stored as its repr only: {plain[REPR_MARKER]}")
    if _BYTES in plain and len(plain) == 1:
        return base64.b64decode(plain[_BYTES])
    path = plain.get(CLASS_KEY)
    fields = {key: revive(item) for key, item in plain.items() if key != CLASS_KEY}
    if not isinstance(path, str):
        return fields
    cls = import_path(path)
    try:
        validate = getattr(cls, "model_validate", None)
        if callable(validate):
            return validate(fields)
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            names = {field.name for field in dataclasses.fields(cls) if field.init}
            made = cls(**{key: item for key, item in fields.items() if key in names})
            for key, item in fields.items():  # fields set after __init__ (init=False) come back too
                if key not in names:
                    object.__setattr__(made, key, item)
            return made
    except Exception as exc:  # a class whose fields or validation changed since the recording
        raise Unrevivable(f"cannot rebuild a {path} from its stored fields: {exc}") from exc
    raise Unrevivable(f"{path} is neither a dataclass nor a pydantic model any more")


def import_path(path: str) -> Any:
    """The object at ``module:qualname``; ``Unrevivable`` when it cannot be imported."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise Unrevivable(f"cannot import {path}: {exc}") from exc
    return target


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _marked(value: Any) -> dict[str, str]:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises must not lose the record
        text = f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"
    return {REPR_MARKER: text}
