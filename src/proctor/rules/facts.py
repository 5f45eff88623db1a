"""Facts: what rules can see about one action, and how a fact name reaches its value."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

__all__ = ["FACTS", "MISSING", "Facts", "call_facts", "fact_getter"]


class _Missing:
    """The value of a fact the action does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

FACTS: Final = {
    "agent": "the agent acting",
    "service": "the service named in @runlog(service=...)",
    "tool": "the decorated function's qualified name, or the name given to the decorator",
    "args": "the call's bound arguments by parameter name: args.<name>[.<key>...]",
    "input": "the arguments of the run's top-level call: input[.<name>...]",
    "output": "the call's result, for rules checked after the call: output[.<key>...]",
    "cost": "this call's estimated cost",
    "cost_run": "cost spent so far in this run, with the estimates of its calls still running",
    "cost_today": "cost spent since local midnight by this service and agent, with the estimates of "
    "their calls still running",
    "cost_run_with_call": "cost_run plus this call's estimate: what the run will have spent if it runs",
    "cost_today_with_call": "cost_today plus this call's estimate: `gt: LIMIT` on it is a hard daily cap",
    "tool_calls_in_run": "tool calls made so far in this run",
    "same_call_in_run": "how often this exact tool and arguments already ran in this run",
    "labels": "the action's data labels: labels.<key>",
    "time": "time.hour (0-23) and time.weekday (0 is Monday), local time",
    "server": "the MCP server a gateway forwards the call to (`proctor mcp proxy --server NAME`)",
    "annotations": "the MCP tool's annotations, as its server lists them: annotations.readOnlyHint, ...",
}
"""Every fact a rule may name, with what it holds."""

_STRUCTURED = ("args", "input", "output", "labels", "annotations")
_WITH_CALL = {"cost_run_with_call": "cost_run", "cost_today_with_call": "cost_today"}
"""The facts that add this call's estimate to a spend fact, and the fact each adds it to."""
_TIME_PARTS = ("hour", "weekday")


class Facts:
    """The facts of one action. Unset facts are ``MISSING``; rules on them do not match."""

    __slots__ = (
        "agent",
        "annotations",
        "args",
        "cost",
        "cost_run",
        "cost_today",
        "input",
        "labels",
        "now",
        "output",
        "same_call_in_run",
        "server",
        "service",
        "tool",
        "tool_calls_in_run",
    )

    def __init__(
        self,
        *,
        agent: Any = MISSING,
        service: Any = MISSING,
        tool: Any = MISSING,
        args: Any = MISSING,
        input: Any = MISSING,
        output: Any = MISSING,
        cost: Any = MISSING,
        cost_run: Any = MISSING,
        cost_today: Any = MISSING,
        tool_calls_in_run: Any = MISSING,
        same_call_in_run: Any = MISSING,
        labels: Any = MISSING,
        now: datetime | None = None,
        server: Any = MISSING,
        annotations: Any = MISSING,
    ) -> None:
        self.agent = agent
        self.service = service
        self.tool = tool
        self.args = args
        self.input = input
        self.output = output
        self.cost = cost
        self.cost_run = cost_run
        self.cost_today = cost_today
        self.tool_calls_in_run = tool_calls_in_run
        self.same_call_in_run = same_call_in_run
        self.labels = labels
        self.now = now
        self.server = server
        self.annotations = annotations

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Facts:
        """Facts from a plain mapping such as a test case's ``facts:``; ``time`` may give hour/weekday."""
        values = dict(values)
        when = values.pop("time", None)
        facts = cls(**values)
        if isinstance(when, Mapping):
            facts.now = _FixedTime(when.get("hour", MISSING), when.get("weekday", MISSING))  # type: ignore[assignment]
        return facts


_new_facts = Facts.__new__


def call_facts(
    agent: Any,
    service: Any,
    tool: Any,
    args: Any,
    input: Any,
    cost: Any,
    cost_run: Any,
    tool_calls_in_run: Any,
    same_call_in_run: Any,
    labels: Any,
) -> Facts:
    """The facts of a decorated call before it runs, as ``Facts(...)`` with these keywords gives
    them (no output, ``cost_today`` or time yet), built for the call path: positional, no keywords
    to parse."""
    facts = _new_facts(Facts)
    facts.agent = agent
    facts.service = service
    facts.tool = tool
    facts.args = args
    facts.input = input
    facts.output = MISSING
    facts.cost = cost
    facts.cost_run = cost_run
    facts.cost_today = MISSING
    facts.tool_calls_in_run = tool_calls_in_run
    facts.same_call_in_run = same_call_in_run
    facts.labels = labels
    facts.now = None
    facts.server = MISSING
    facts.annotations = MISSING
    return facts


class _FixedTime:
    """A stand-in for ``now`` with only the parts a test case gives."""

    __slots__ = ("_weekday", "hour")

    def __init__(self, hour: Any, weekday: Any) -> None:
        self.hour = hour
        self._weekday = weekday

    def weekday(self) -> Any:
        return self._weekday


def _dig(value: Any, keys: Sequence[str]) -> Any:
    try:
        return _walk(value, keys)
    except Exception:  # a property or a __getitem__ that raises: the fact is not there
        return MISSING


def _walk(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if value is MISSING or value is None:
            return MISSING
        if isinstance(value, Mapping):
            value = value.get(key, MISSING)
        elif isinstance(value, (list, tuple)) and key.isdigit():
            index = int(key)
            value = value[index] if index < len(value) else MISSING
        elif not key.startswith("_"):
            value = getattr(value, key, MISSING)
        else:
            return MISSING
    return value


def fact_getter(name: str) -> Callable[[Facts], Any]:
    """A function from ``Facts`` to the value of the fact ``name`` (``MISSING`` when absent).

    Raises ``ValueError`` naming the known facts when ``name`` is not one.
    """
    root, _, rest = name.partition(".")
    if root not in FACTS:
        raise ValueError(f"unknown fact {name!r}; facts are: {', '.join(FACTS)}")
    keys = rest.split(".") if rest else []
    if any(not key for key in keys):
        raise ValueError(f"fact {name!r} has an empty part")
    if root in _WITH_CALL:
        if keys:
            raise ValueError(f"fact {root!r} has no parts; use {root!r} alone")
        base = Facts.__dict__[_WITH_CALL[root]]
        cost = Facts.__dict__["cost"]

        def with_call(facts: Facts) -> Any:
            spent, estimate = base.__get__(facts), cost.__get__(facts)
            return MISSING if spent is MISSING or estimate is MISSING else spent + estimate

        return with_call
    if root == "time":
        if len(keys) != 1 or keys[0] not in _TIME_PARTS:
            raise ValueError(f"fact {name!r}: use time.hour or time.weekday")
        if keys[0] == "hour":
            return lambda facts: MISSING if facts.now is None else facts.now.hour
        return lambda facts: MISSING if facts.now is None else facts.now.weekday()
    if root in ("args", "labels", "annotations") and not keys:
        raise ValueError(f"fact {name!r} needs a key: {root}.<name>")
    if root not in _STRUCTURED and keys:
        raise ValueError(f"fact {root!r} has no parts; use {root!r} alone")
    slot = Facts.__dict__[root]  # the slot descriptor: faster than getattr by name
    if not keys:
        return slot.__get__  # type: ignore[no-any-return]
    if len(keys) == 1:
        key = keys[0]

        def one(facts: Facts) -> Any:
            value = slot.__get__(facts)
            if type(value) is dict:  # the common case first: the Mapping check is slow
                return value.get(key, MISSING)
            return _dig(value, (key,))

        return one
    return lambda facts: _dig(slot.__get__(facts), keys)
