"""The one switch the call flow reads: ``active`` is None until telemetry is enabled.

The guard's drivers read ``_hook.active`` once per call; when it is None (the
default, and always when neither extra is installed) they do nothing more.
When it is set, ``CallTelemetry`` turns each governed call into a span (if
tracing is on) and into Prometheus samples (if metrics are on). This module
imports neither OpenTelemetry nor prometheus-client: ``tracing`` and
``metrics`` do, and are imported only by ``proctor.telemetry.enable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from proctor.decision import Action
from proctor.guard._call import decisions_of
from proctor.runs.result import effective_action

if TYPE_CHECKING:
    from proctor.guard._call import Call
    from proctor.guard._flow import Guard
    from proctor.telemetry.metrics import Metrics
    from proctor.telemetry.tracing import Tracing

__all__ = ["CallTelemetry", "active", "decision_of", "usage_tokens"]

_ALLOW = Action.ALLOW


class CallTelemetry:
    """What the guard tells telemetry about each call: opened, slot waited, approval asked, closed."""

    __slots__ = ("_called", "_traced", "metrics", "opened", "tracing")

    def __init__(self, tracing: Tracing | None, metrics: Metrics | None) -> None:
        self.tracing = tracing
        self.metrics = metrics
        self.opened: Callable[..., Any] = tracing.opened if tracing is not None else _nothing
        """``opened(guard, call, current=True)``: the call began; what ``closed`` needs back (its span,
        if any). ``current``: the span is the current one until ``closed``, which must then run in
        the same context."""
        self._called = metrics.called if metrics is not None else None
        self._traced = tracing.closed if tracing is not None else None

    def closed(
        self, guard: Guard, call: Call, opened: Any, status: str, result: Any, error: BaseException | None
    ) -> None:
        """The call ended with ``status`` (the run log's words: succeeded, denied, failed, ...)."""
        verdict = call.verdict
        decided = (
            None  # the common case, as decisions_of finds it: no rule matched
            if verdict.rule is None
            and verdict.action is _ALLOW
            and call.after is None
            and call.policy_error is None
            and not call.downgraded
            else decision_of(call)
        )
        called = self._called
        if called is not None:
            called(guard, call, decided)
        traced = self._traced
        if traced is not None and opened is not None:
            action, rule = decided or ("allow", "")
            traced(guard, call, opened, action, rule, status, result, error)

    def slot_waited(self, guard: Guard, seconds: float) -> None:
        """A call waited ``seconds`` for its scheduler slot (it got one)."""
        if self.metrics is not None:
            self.metrics.slot_waited(guard.service, seconds)

    def approval_asked(self) -> None:
        """A call now waits for a person."""
        if self.metrics is not None:
            self.metrics.approvals_pending.inc()

    def approval_ended(self) -> None:
        """A call no longer waits for a person (answered, timed out, or cancelled)."""
        if self.metrics is not None:
            self.metrics.approvals_pending.dec()


def _nothing(guard: Guard, call: Call, current: bool = True) -> None:
    return None


active: CallTelemetry | None = None
"""Set by ``proctor.telemetry.enable()``; the drivers skip telemetry while it is None."""


def decision_of(call: Call) -> tuple[str, str]:
    """The action that took effect on the call and the rule (or budget, rate limit, code policy) that
    decided it, as the run log and what-if read them (``effective_action``); the rule is ``""`` when
    none matched, ``"default"`` for the file's default action."""
    decisions = decisions_of(call)
    if not decisions:  # the common case: no rule matched
        return "allow", ""
    action, rule = effective_action(decisions)
    if rule is None:
        return action, "default" if action != "allow" else ""
    return action, rule


def usage_tokens(result: Any) -> dict[str, int]:
    """The token counts a result reports in its ``usage`` (OpenAI's and Anthropic's names), as the
    GenAI semantic conventions' ``gen_ai.usage.*`` attributes; empty when it reports none."""
    if result is None or isinstance(result, str | bytes | int | float | list | tuple):
        return {}
    usage = result.get("usage") if isinstance(result, Mapping) else getattr(result, "usage", None)
    if usage is None:
        return {}
    found: dict[str, int] = {}
    for attribute, names in _USAGE_NAMES:
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                found[attribute] = value
                break
    return found


_USAGE_NAMES = (
    ("gen_ai.usage.input_tokens", ("input_tokens", "prompt_tokens")),
    ("gen_ai.usage.output_tokens", ("output_tokens", "completion_tokens")),
    ("gen_ai.usage.cache_read.input_tokens", ("cache_read_input_tokens",)),
    ("gen_ai.usage.cache_creation.input_tokens", ("cache_creation_input_tokens",)),
)
