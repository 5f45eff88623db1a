"""Values to JSON for the run log: exact where JSON can hold them, a marked repr where not."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["REPR_MARKER", "dumps", "encode", "snapshot"]

REPR_MARKER = "__proctor_repr__"
"""The key of ``{"__proctor_repr__": "..."}``, which stands for a value JSON cannot hold."""

_MAX_DEPTH = 64


def encode(value: Any) -> str:
    """``value`` as JSON text; never raises. ``dumps(snapshot(value))``."""
    return dumps(snapshot(value))


def snapshot(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only, unaffected by later changes to ``value``.

    Dicts, lists, tuples, text, numbers, booleans and None are kept;
    dataclasses and objects with ``model_dump()`` (pydantic) become their
    fields; bytes become base64; NaN and infinities, and anything else,
    ``{"__proctor_repr__": repr(value)}``. Never raises.
    """
    return _plain(value, 0)


def dumps(plain: Any) -> str:
    """JSON text of a ``snapshot``."""
    return json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


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
        return {"__proctor_bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name), depth + 1) for field in dataclasses.fields(value)
        }
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return _plain(dump(), depth + 1)
        except Exception:  # a model that cannot dump itself is stored by its repr
            return _marked(value)
    return _marked(value)


def _marked(value: Any) -> dict[str, str]:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises must not lose the record
        text = f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"
    return {REPR_MARKER: text}
