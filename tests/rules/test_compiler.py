"""Each operator and combinator of ``when``, with present, absent and mistyped facts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from proctor.rules import MISSING, Facts
from proctor.rules.compiler import OPERATORS, CompileError, compile_when


def holds(when: dict[str, Any], **facts: Any) -> bool | None:
    return compile_when(when)(Facts(**facts))


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ({"eq": 3}, 3, True),
        ({"eq": 3}, 4, False),
        ({"eq": True}, 1, False),  # booleans equal only booleans
        ({"ne": "x"}, "y", True),
        ({"gt": 1.0}, 1.5, True),
        ({"gt": 1.0}, 1.0, False),
        ({"gte": 1.0}, 1.0, True),
        ({"lt": 0}, -1, True),
        ({"lte": 0}, 1, False),
        ({"gt": 1}, "2", None),  # text is not compared with numbers
        ({"in": ["a", "b"]}, "b", True),
        ({"in": ["a", "b"]}, "c", False),
        ({"in": ["a"]}, ["a"], False),  # unhashable values are in no list
        ({"not_in": ["a"]}, "c", True),
        ({"contains": "DROP"}, "DROP TABLE x", True),
        ({"contains": "x"}, ["x", "y"], True),
        ({"contains": "k"}, {"k": 1}, True),
        ({"not_contains": "x"}, "abc", True),
        ({"contains": "x"}, 5, None),
        ({"starts_with": "sk-"}, "sk-123", True),
        ({"ends_with": ".pdf"}, "a.txt", False),
        ({"starts_with": "a"}, 1, None),
        ({"matches": "^[0-9]{3}-[0-9]{2}$"}, "123-45", True),
        ({"matches": "secret"}, "no", False),
        ({"len_gt": 2}, "abc", True),
        ({"len_lt": 2}, [1, 2], False),
        ({"len_gt": 1}, 5, None),
        ({"gt": 1, "lt": 10}, 5, True),
        ({"gt": 1, "lt": 10}, 50, False),
    ],
)
def test_operators(condition: dict[str, Any], value: Any, expected: bool | None) -> None:
    assert holds({"args.x": condition}, args={"x": value}) is expected


def test_scalars_mean_equality_and_lists_membership() -> None:
    assert holds({"agent": "alice"}, agent="alice") is True
    assert holds({"agent": ["alice", "bob"]}, agent="bob") is True
    assert holds({"agent": ["alice", "bob"]}, agent="eve") is False


def test_tool_globs() -> None:
    assert holds({"tool": "database.*"}, tool="database.query") is True
    assert holds({"tool": "database.*"}, tool="db.query") is False
    assert holds({"tool": "send_?"}, tool="send_x") is True


def test_a_missing_fact_never_matches_and_never_raises() -> None:
    assert holds({"cost": {"gt": 1}}) is None
    assert holds({"args.query.text": {"contains": "x"}}, args={"query": None}) is None
    assert holds({"not": {"cost": {"gt": 1}}}) is None
    assert holds({"output.rows": {"len_gt": 0}}, output=MISSING) is None


def test_exists() -> None:
    assert holds({"args.limit": {"exists": True}}, args={"limit": 0}) is True
    assert holds({"args.limit": {"exists": False}}, args={}) is True
    assert holds({"args.limit": {"exists": True}}, args={}) is False


def test_dotted_paths_reach_into_mappings_objects_and_lists() -> None:
    class Query:
        def __init__(self) -> None:
            self.table = "users"
            self._secret = "hidden"

    args = {"q": Query(), "rows": [{"id": 7}]}
    assert holds({"args.q.table": "users"}, args=args) is True
    assert holds({"args.rows.0.id": 7}, args=args) is True
    assert holds({"args.rows.5.id": 7}, args=args) is None
    assert holds({"args.q._secret": "hidden"}, args=args) is None  # private attributes stay private


def test_all_any_not_with_three_valued_logic() -> None:
    when = {"any": [{"cost": {"gt": 10}}, {"agent": "root"}]}
    assert holds(when, cost=20, agent="x") is True
    assert holds(when, cost=1, agent="x") is False
    assert holds(when, agent="x") is None  # cost unknown, agent no
    assert holds(when, agent="root") is True  # known true wins
    assert holds({"all": [{"agent": "a"}, {"cost": {"gt": 1}}]}, agent="b") is False
    assert holds({"not": {"agent": "a"}}, agent="b") is True
    assert holds({"agent": "a", "service": "s"}, agent="a", service="s") is True


def test_time_facts() -> None:
    friday_night = datetime(2026, 11, 20, 23, 30)
    assert holds({"time.hour": {"gte": 22}}, now=friday_night) is True
    assert holds({"time.weekday": 4}, now=friday_night) is True
    assert holds({"time.hour": 1}) is None


def test_contains_pii_uses_the_configured_detector() -> None:
    seen: list[Any] = []

    def scan(value: Any, kinds: Any) -> bool:
        seen.append(kinds)
        return "@" in str(value)

    condition = compile_when({"input": {"contains_pii": True}}, pii=scan)
    assert condition(Facts(input={"to": "a@b.c"})) is True
    assert compile_when({"input": {"contains_pii": False}}, pii=scan)(Facts(input="hi")) is True
    assert compile_when({"input": {"contains_pii": ["email"]}}, pii=scan)(Facts(input="x")) is False
    assert seen == [None, None, ("email",)]
    with pytest.raises(CompileError, match="needs a PII detector"):
        compile_when({"input": {"contains_pii": True}})


@pytest.mark.parametrize(
    ("when", "path", "message"),
    [
        ({"cost": {"gtt": 1}}, ("cost", "gtt"), "unknown operator 'gtt'"),
        ({"costs": 1}, ("costs",), "unknown fact 'costs'"),
        ({"cost": {}}, ("cost",), "an empty condition"),
        ({"cost": {"gt": "1"}}, ("cost", "gt"), "gt takes a number, got the text '1'"),
        ({"cost": {"gt": True}}, ("cost", "gt"), "gt takes a number, got true/false"),
        ({"agent": {"in": "a"}}, ("agent", "in"), "in takes a list"),
        ({"agent": {"in": [["a"]]}}, ("agent", "in", 0), "in takes a plain value"),
        ({"args.x": {"matches": "(?<=a)b"}}, ("args.x", "matches"), "invalid or unsupported regular"),
        ({"args.x": {"exists": "yes"}}, ("args.x", "exists"), "exists takes true or false"),
        ({"args.x": {"len_gt": 1.5}}, ("args.x", "len_gt"), "len_gt takes a whole number"),
        ({"args": 1}, ("args",), "needs a key: args.<name>"),
        ({"cost.x": 1}, ("cost.x",), "has no parts"),
        ({"time.minute": 1}, ("time.minute",), "use time.hour or time.weekday"),
        ({"any": []}, ("any",), "any takes a non-empty list"),
        ({"any": [1]}, ("any", 0), "expected a mapping"),
        ({"not": [1]}, ("not",), "expected a mapping"),
    ],
)
def test_compile_errors_name_the_place(when: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_when(when)
    assert info.value.path == path
    assert message in info.value.message


def test_every_operator_is_covered() -> None:
    assert set(OPERATORS) == {
        "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "not_contains",
        "starts_with", "ends_with", "matches", "exists", "contains_pii", "len_gt", "len_lt",
    }  # fmt: skip


def test_values_without_a_plain_equality_never_raise() -> None:
    class Array:
        """Compares element-wise, like numpy arrays: no single truth value."""

        def __eq__(self, other: object) -> Array:  # type: ignore[override]
            return self

        def __bool__(self) -> bool:
            raise ValueError("ambiguous")

        __hash__ = None  # type: ignore[assignment]

    class Lazy:
        @property
        def rows(self) -> int:
            raise RuntimeError("not loaded")

    assert holds({"args.x": 3}, args={"x": Array()}) is None
    assert holds({"args.x": {"contains": 3}}, args={"x": [Array()]}) is False
    assert holds({"args.x": {"in": [1, 2]}}, args={"x": Array()}) is False
    assert holds({"args.x.rows": {"gt": 1}}, args={"x": Lazy()}) is None
