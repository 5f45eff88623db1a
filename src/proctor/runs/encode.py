"""Values to JSON for the run log: exact where JSON can hold them, a marked repr where not."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import marshal
import math
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = [
    "CLASS_KEY",
    "NO_RESULT",
    "REPR_MARKER",
    "Marshalled",
    "Unrevivable",
    "dumps",
    "encode",
    "error_value",
    "freeze",
    "import_path",
    "plain_json",
    "revive",
    "snapshot",
    "stored_json",
    "thaw",
    "to_json",
]

REPR_MARKER = "__proctor_repr__"
"""The key of ``{"__proctor_repr__": "..."}``, which stands for a value JSON cannot hold."""

CLASS_KEY = "__proctor_class__"
"""The key that names the class (``module:qualname``) of a dataclass or pydantic model's fields."""

_BYTES = "__proctor_bytes__"


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"

    def __reduce__(self) -> str:
        return "NO_RESULT"  # unpickled as this module's one instance (the writer process tests ``is``)


NO_RESULT: Any = _NoResult()
"""Pass as ``result``/``output`` for a call that did not return (it raised, or never ran): stored as NULL."""

_MAX_DEPTH = 64
_MARSHALLED = frozenset((dict, list, tuple, set, frozenset))
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# The C encoder behind _ENCODER, made once: json's own encode() builds one per call. No cycle
# check (markers=None): what it gets comes from marshal, snapshot or a flat copy, never a cycle.
_CHUNKS: Any = (
    c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else lambda value, level: (_ENCODER.encode(value),)
)
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
    """What the caller hands over of ``value``: unaffected by later changes to it, cheap to take.

    Text, numbers and None are kept; a dict of them, or of flat dicts and lists
    of them, is copied; other dicts, lists and tuples of built-in types are
    marshalled (C speed); anything else becomes a ``snapshot``. ``thaw`` gives
    the value back on the writer's side.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        copy = None
        for key, item in value.items():
            inner = type(item)
            if inner in _SCALARS:
                continue
            if inner is dict:
                items = item.values()
            elif inner is list:
                items = item
            else:
                break
            for leaf in items:
                if type(leaf) not in _SCALARS:
                    break
            else:  # a flat dict or list: a shallow copy is a full one
                if copy is None:
                    copy = value.copy()
                copy[key] = item.copy()
                continue
            break
        else:
            return copy if copy is not None else value.copy()
    elif kind is list or kind is tuple:
        for leaf in value:
            if type(leaf) not in _SCALARS:
                break
        else:
            return value if kind is tuple else value.copy()
    if kind in _MARSHALLED:
        try:
            return Marshalled(marshal.dumps(value))
        except ValueError:  # something marshal does not take (an object, a str subclass): convert it now
            pass
    return _plain(value, 0)


class Marshalled:
    """A value handed over as marshal bytes (``thaw`` loads it)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def thaw(frozen: Any) -> Any:
    """The value ``freeze`` handed over, ready for ``to_json`` (or redaction first)."""
    return marshal.loads(frozen.data) if type(frozen) is Marshalled else frozen


def to_json(value: Any) -> str:
    """JSON text of a thawed value: directly when JSON holds it, else of its ``snapshot``."""
    try:
        return "".join(_CHUNKS(value, 0))
    except (TypeError, ValueError):  # a NaN, a key or value JSON cannot hold
        return "".join(_CHUNKS(_plain(value, 0), 0))


def plain_json(value: Any) -> str | None:
    """JSON text of a thawed value made of JSON's own types (finite floats), tuples and their
    subclasses; None for any other value (or one that contains itself)."""
    try:
        return "".join(_CHUNKS(value, 0))
    except (TypeError, ValueError, RecursionError):
        return None


def stored_json(value: Any) -> str:
    """The JSON text the run log stores for ``value`` (before redaction)."""
    return to_json(thaw(freeze(value)))


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
    return "".join(_CHUNKS(plain, 0))


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
