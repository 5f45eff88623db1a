"""ToolGuard: one MCP tool behind the decorator's own call flow.

Each ``tools/call`` runs through ``proctor.guard``'s ``Guard`` and its async
driver, exactly as a call of an ``@runlog`` coroutine function: the same rules
and their hot reload, approvals, budgets and rate limits, fair slots, and run
log records. What differs is only what the guarded function is (it forwards
the call to the upstream server, see ``forwarding``) and how arguments bind: an
MCP tool's arguments are a JSON object, so they bind by name as they come.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from proctor._numbers import is_amount
from proctor.guard._async import wrap_async
from proctor.guard._flow import Guard
from proctor.rules.facts import MISSING, Facts
from proctor.runtime.context import current_run

if TYPE_CHECKING:
    from proctor.mcp_gateway.gateway import Gateway
    from proctor.rules.ruleset import RuleSet
    from proctor.runtime.run import Run

__all__ = ["Forward", "ToolGuard", "forwarding", "meta_cost", "tool_cost"]

Forward = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends a tools/call with these (checked, maybe patched) arguments upstream; returns its result."""

forwarding: ContextVar[Forward] = ContextVar("proctor_mcp_forward")
"""How the tool call under way reaches its server: set by the session for each call's task."""


async def tool_call(**arguments: Any) -> dict[str, Any]:
    """The guarded function of every MCP tool: forward the call, report the cost its result names."""
    result = await forwarding.get()(arguments)
    cost = meta_cost(result)
    if cost is not None:
        current_run().add_cost(cost)
    return result


def meta_cost(result: Mapping[str, Any]) -> float | None:
    """The cost an upstream result reports in ``_meta``: ``cost``, or ``usage.cost``; None if none."""
    meta = result.get("_meta")
    if not isinstance(meta, Mapping):
        return None
    cost = meta.get("cost")
    if cost is None:
        usage = meta.get("usage")
        cost = usage.get("cost") if isinstance(usage, Mapping) else None
    return float(cost) if is_amount(cost) else None


def tool_cost(rules: RuleSet, tool: str) -> float:
    """A call's estimated cost from the policy file's ``costs:``: the first name or glob that matches."""
    costs = rules.costs
    if not costs:
        return 0.0
    exact = costs.get(tool)
    if exact is not None:
        return exact
    for pattern, amount in costs.items():
        if fnmatch.fnmatchcase(tool, pattern):
            return amount
    return 0.0


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs


def _unbind(bound: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (), dict(bound)


class ToolGuard(Guard):
    """The call flow of one tool of the gateway's server, for one agent.

    Adds the MCP facts to the decorator's: ``server`` and the tool's ``annotations``
    (as the server listed them; MISSING until it has).
    """

    def __init__(self, gateway: Gateway, agent: str, tool: str) -> None:
        source = gateway.source

        def estimate(*args: Any, **kwargs: Any) -> float:
            return tool_cost(source.current(), tool)

        super().__init__(
            tool_call,
            gateway.service,
            source,
            agent,
            tool,
            estimate,
            gateway.labels,
            "raise",
            gateway.approvals,
            None,
            gateway.scheduler,
            True,
        )
        self.bind = _bind
        self.unbind = _unbind
        self.path = "proctor.mcp_gateway.tools:tool_call"
        self.server = gateway.server
        self.known = gateway.annotations

    def _facts(
        self, rules: RuleSet, run: Run, bound: dict[str, Any], estimate: float, calls: int, same: int
    ) -> Facts:
        facts = super()._facts(rules, run, bound, estimate, calls, same)
        facts.server = self.server
        facts.annotations = self.known.get(self.tool, MISSING)
        return facts

    def wrapper(self) -> Callable[..., Awaitable[Any]]:
        """The guarded coroutine function: ``await wrapper(**arguments)``."""
        return wrap_async(self)
