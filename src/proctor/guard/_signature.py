"""Signature: a decorated function's arguments by name, and back, fast for plain signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Signature"]


class Signature:
    """Binds a function's call arguments to its parameter names (defaults included), and back.

    For a signature without ``*args``, ``**kwargs`` or positional-only
    parameters, ``bind`` zips names with values instead of asking ``inspect``.
    """

    __slots__ = ("_later_defaults", "_positional", "_signature")

    def __init__(self, function: Callable[..., Any]) -> None:
        self._signature = inspect.signature(function)
        params = list(self._signature.parameters.values())
        simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
        )  # no *args, **kwargs or positional-only: arguments map to names by position
        self._positional = (
            tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD) if simple else None
        )
        # For a call with n positional arguments: the defaults of the parameters after them.
        self._later_defaults = [
            [(p.name, p.default) for p in params[n:] if p.default is not p.empty]
            for n in range(len(params) + 1)
        ]

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults included."""
        names = self._positional
        if names is not None and len(args) <= len(names):
            bound = dict(zip(names, args, strict=False))
            if kwargs:
                bound.update(kwargs)
                for name, default in self._later_defaults[len(args)]:
                    bound.setdefault(name, default)
            else:
                bound.update(self._later_defaults[len(args)])
            return bound
        bound_arguments = self._signature.bind(*args, **kwargs)
        bound_arguments.apply_defaults()
        return dict(bound_arguments.arguments)

    def unbind(self, bound: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments to call the function with, from a (patched) mapping by name."""
        arguments = inspect.BoundArguments(self._signature, dict(bound))
        return arguments.args, arguments.kwargs
