"""Compile a rule's ``when`` into a closure over ``Facts``; no user text is ever evaluated.

A condition evaluates to True, False or None ("unknown": it names a fact the
action does not have, or compares values of unrelated types). ``all`` is
unknown when any part is unknown and none is False; ``any`` likewise with
True; ``not`` keeps unknown unknown. A rule matches only when its ``when`` is
True, so a rule about a fact the action lacks never matches, and never raises.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import re2

from proctor.errors import ConfigurationError
from proctor.rules._yaml import Path
from proctor.rules.facts import MISSING, Facts, fact_getter
from proctor.rules.schema import PII_KINDS

__all__ = ["OPERATORS", "CompileError", "Condition", "compile_when", "facts_used", "literal_tools"]

logger = logging.getLogger("proctor.rules")

X = TypeVar("X")

Condition: TypeAlias = Callable[[Facts], "bool | None"]
Test: TypeAlias = Callable[[Any], "bool | None"]

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
    "contains_pii",
    "len_gt",
    "len_lt",
)
"""Every operator a condition may use."""

_GLOB_CHARS = frozenset("*?")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported as a CompileError, not on stderr


class CompileError(Exception):
    """A ``when`` that cannot be compiled; ``path`` is where, within the rule's ``when``."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


PIIScan: TypeAlias = Callable[[Any, "Collection[str] | None"], bool]
"""``scan(value, kinds)``: whether ``value`` holds personal data of ``kinds`` (None: any kind).

It must fail closed, as ``PIIDetector.contains`` does: True for a value it could not scan in full,
so that a size or depth limit never lets ``contains_pii: true`` (deny) nor ``contains_pii: false``
or ``not:`` (no PII) pass a value nobody looked at.
"""


@dataclass(frozen=True, slots=True)
class _Context:
    pii: PIIScan | None


def compile_when(when: Mapping[str, Any], *, pii: PIIScan | None = None) -> Condition:
    """Compile a ``when`` mapping; raises ``CompileError`` with the path of the first problem."""
    return _compile_mapping(when, (), _Context(pii))


def literal_tools(when: Mapping[str, Any]) -> frozenset[str] | None:
    """The tool names a rule can match, when its top-level ``tool`` condition lists them literally.

    None means the rule may match any tool (no ``tool`` condition, a glob, or an operator).
    """
    condition = when.get("tool")
    if isinstance(condition, str) and not _GLOB_CHARS & set(condition):
        return frozenset((condition,))
    if isinstance(condition, list) and all(
        isinstance(item, str) and not _GLOB_CHARS & set(item) for item in condition
    ):
        return frozenset(condition)
    return None


def facts_used(when: Mapping[str, Any], *, named: bool = False) -> frozenset[str]:
    """The fact roots (``args``, ``time``, ...) a compiled ``when`` reads; with ``named``, only those
    it names (not the spend fact and ``cost`` that a ``*_with_call`` fact is computed from)."""
    used: set[str] = set()
    stack: list[Any] = [when]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, Mapping):
            for key, value in item.items():
                if key in ("any", "all", "not"):
                    stack.append(value)
                else:
                    root = str(key).partition(".")[0]
                    used.add(root)
                    if root.endswith("_with_call") and not named:  # computed from spend and estimate
                        used.update((root.removesuffix("_with_call"), "cost"))
    return frozenset(used)


def _compile_mapping(when: Any, path: Path, context: _Context) -> Condition:
    if not isinstance(when, Mapping):
        raise CompileError(path, f"expected a mapping of fact to condition, got {_kind(when)}")
    if not when:
        return _always
    parts = [_compile_entry(key, value, (*path, key), context) for key, value in when.items()]
    return parts[0] if len(parts) == 1 else _all(parts)


def _compile_entry(key: Any, value: Any, path: Path, context: _Context) -> Condition:
    if not isinstance(key, str):
        raise CompileError(path, f"a fact name must be a string, got {key!r}")
    if key in ("any", "all"):
        if not isinstance(value, list) or not value:
            raise CompileError(path, f"{key} takes a non-empty list of conditions")
        parts = [_compile_mapping(item, (*path, index), context) for index, item in enumerate(value)]
        return _any(parts) if key == "any" else _all(parts)
    if key == "not":
        inner = _compile_mapping(value, path, context)
        return lambda facts: None if (result := inner(facts)) is None else not result
    try:
        getter = fact_getter(key)
    except ValueError as exc:
        raise CompileError(path, f"{exc}; or any/all/not") from None
    test = _compile_condition(key, value, path, context)
    return lambda facts: test(getter(facts))


def _compile_condition(fact: str, condition: Any, path: Path, context: _Context) -> Test:
    if isinstance(condition, Mapping):
        if not condition:
            raise CompileError(path, "an empty condition; give a value or an operator such as {gt: 1}")
        tests = [
            _compile_operator(fact, op, operand, (*path, op), context) for op, operand in condition.items()
        ]
        return tests[0] if len(tests) == 1 else _all(tests)
    if isinstance(condition, list):
        return _compile_operator(fact, "in", condition, path, context)
    if fact == "tool" and isinstance(condition, str) and _GLOB_CHARS & set(condition):
        return _glob(condition, path)
    return _compile_operator(fact, "eq", condition, path, context)


def _compile_operator(fact: str, op: Any, operand: Any, path: Path, context: _Context) -> Test:
    if op not in OPERATORS:
        hint = "; or, to compare with a mapping, use {eq: ...}" if isinstance(op, str) else ""
        raise CompileError(path, f"unknown operator {op!r}; operators are: {', '.join(OPERATORS)}{hint}")
    if op in ("eq", "ne"):
        _check_scalar(operand, path, op)
        return _eq(operand) if op == "eq" else _negate(_eq(operand))
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(operand, bool) or not isinstance(operand, (int, float)) or math.isnan(operand):
            raise CompileError(path, f"{op} takes a number, got {_kind(operand)}")
        return _compare(op, operand)
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            raise CompileError(path, f"{op} takes a list, got {_kind(operand)}")
        for index, item in enumerate(operand):
            _check_scalar(item, (*path, index), op)
        test = _member(operand)
        return test if op == "in" else _negate(test)
    if op in ("contains", "not_contains"):
        _check_scalar(operand, path, op)
        test = _contains(operand)
        return test if op == "contains" else _negate(test)
    if op in ("starts_with", "ends_with"):
        if not isinstance(operand, str):
            raise CompileError(path, f"{op} takes a string, got {_kind(operand)}")
        method = str.startswith if op == "starts_with" else str.endswith
        return lambda value: method(value, operand) if isinstance(value, str) else None
    if op == "matches":
        return _regex(operand, path)
    if op == "exists":
        if not isinstance(operand, bool):
            raise CompileError(path, f"exists takes true or false, got {_kind(operand)}")
        return lambda value: (value is not MISSING) is operand
    if op == "contains_pii":
        return _pii(operand, path, context)
    # len_gt, len_lt
    if isinstance(operand, bool) or not isinstance(operand, int) or operand < 0:
        raise CompileError(path, f"{op} takes a whole number >= 0, got {_kind(operand)}")
    return _length(op, operand)


def _check_scalar(operand: Any, path: Path, op: str) -> None:
    if operand is not None and not isinstance(operand, (str, int, float, bool)):
        raise CompileError(
            path, f"{op} takes a plain value (text, number, true/false, null), got {_kind(operand)}"
        )


def _eq(operand: Any) -> Test:
    def test(value: Any) -> bool | None:
        if value is MISSING:
            return None
        # true is not 1 here: YAML booleans compare only with booleans.
        if isinstance(value, bool) is not isinstance(operand, bool) and operand is not None:
            return False
        return _same(value, operand)

    return test


def _same(value: Any, operand: Any) -> bool | None:
    """``value == operand`` when that is a plain answer; unknown for values (arrays) that give none."""
    try:
        result = value == operand
    except Exception:
        return None
    return result if isinstance(result, bool) else None


def _member(operand: list[Any]) -> Test:
    hashable = frozenset(item for item in operand if not isinstance(item, bool))
    flags = [item for item in operand if isinstance(item, bool)]

    def test(value: Any) -> bool | None:
        if value is MISSING:
            return None
        if isinstance(value, bool):
            return value in flags
        try:
            return value in hashable
        except TypeError:  # an unhashable value equals none of the listed ones
            return False

    return test


def _compare(op: str, operand: float) -> Test:
    compare = _COMPARISONS[op]

    def test(value: Any) -> bool | None:
        kind = type(value)
        if kind is int or kind is float:  # the common case; bool is excluded by its own type
            return compare(value, operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return compare(value, operand)

    return test


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _contains(operand: Any) -> Test:
    def test(value: Any) -> bool | None:
        if value is MISSING or value is None:
            return None
        if isinstance(value, str):
            return isinstance(operand, str) and operand in value
        if isinstance(value, Mapping):
            try:
                return operand in value
            except Exception:  # a mapping whose lookup fails on this key: no answer
                return None
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(
                isinstance(item, bool) is isinstance(operand, bool) and _same(item, operand) is True
                for item in value
            )
        return None

    return test


def _length(op: str, operand: int) -> Test:
    def test(value: Any) -> bool | None:
        try:
            size = len(value)
        except TypeError:
            return None
        return size > operand if op == "len_gt" else size < operand

    return test


def _regex(pattern: Any, path: Path) -> Test:
    if not isinstance(pattern, str):
        raise CompileError(path, f"matches takes a regular expression as text, got {_kind(pattern)}")
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise CompileError(
            path,
            f"invalid or unsupported regular expression {pattern!r}: {reason}. "
            "Patterns run on RE2 (linear time): backreferences and lookaround are not available",
        ) from None
    return lambda value: compiled.search(value) is not None if isinstance(value, str) else None


def _glob(pattern: str, path: Path) -> Test:
    """``*`` matches any run of characters (dots included), ``?`` one character; the rest is literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re2.escape(c) for c in pattern)
    compiled = re2.compile(f"(?s:{regex})", _RE2_OPTIONS)
    return lambda value: compiled.fullmatch(value) is not None if isinstance(value, str) else None


def _pii(operand: Any, path: Path, context: _Context) -> Test:
    if isinstance(operand, bool):
        kinds: tuple[str, ...] | None = None
        wanted = operand
    elif isinstance(operand, list) and operand and all(isinstance(kind, str) for kind in operand):
        unknown = sorted(set(operand) - PII_KINDS)
        if unknown:
            known = ", ".join(sorted(PII_KINDS))
            raise CompileError(path, f"unknown PII kinds {unknown}; kinds are: {known}")
        kinds = tuple(operand)
        wanted = True
    else:
        raise CompileError(path, f"contains_pii takes true, false or a list of kinds, got {_kind(operand)}")
    scan = context.pii
    if scan is None:
        raise CompileError(path, "contains_pii needs a PII detector, and none is configured")

    def test(value: Any) -> bool | None:
        if value is MISSING:
            return None
        try:
            return scan(value, kinds) is wanted
        except ConfigurationError as exc:  # e.g. a kind no backend of the detector finds
            # Fail closed, as for a value too large to scan: what cannot be looked for counts as found.
            logger.warning("contains_pii could not be evaluated, so it counts as containing PII: %s", exc)
            return wanted

    return test


def _negate(test: Test) -> Test:
    return lambda value: None if (result := test(value)) is None else not result


def _all(parts: Sequence[Callable[[X], bool | None]]) -> Callable[[X], bool | None]:
    """True when every part is; False when one is; else unknown."""
    return _combine(parts, decisive=False)


def _any(parts: Sequence[Callable[[X], bool | None]]) -> Callable[[X], bool | None]:
    """True when one part is; False when every part is; else unknown."""
    return _combine(parts, decisive=True)


def _combine(parts: Sequence[Callable[[X], bool | None]], *, decisive: bool) -> Callable[[X], bool | None]:
    """Three-valued all (``decisive=False``) or any (``decisive=True``), over facts or over a value."""

    def combined(argument: X) -> bool | None:
        unknown = False
        for part in parts:
            result = part(argument)
            if result is decisive:
                return decisive
            if result is None:
                unknown = True
        return None if unknown else not decisive

    return combined


def _always(facts: Facts) -> bool:
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__
