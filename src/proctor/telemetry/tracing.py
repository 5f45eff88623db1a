"""Tracing: each governed call as an OpenTelemetry span ``execute_tool {tool}``.

Only ``opentelemetry-api`` is used; the application configures the SDK (its
tracer provider, exporters and sampler). The span's attributes follow the
GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.tool.name``,
``gen_ai.tool.call.id``, ``gen_ai.usage.*`` when the result reports usage,
``gen_ai.provider.name`` when the decorator's labels name a ``provider``), plus
``proctor.decision``, ``proctor.rule`` and ``proctor.policy.version`` (a digest
of the rules in force). A call that was denied, terminated or raised ends with
an error status.

The span is the current span from the call's checks to its end, so that spans
the function makes (an LLM SDK's, a nested governed call's) are its children.
The invalid span of a no-op tracer is not made current; a span that does not
record (a no-op tracer's, or one the sampler dropped) is given no attributes.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, TracerProvider

from proctor.__version__ import __version__
from proctor.telemetry._hook import usage_tokens

if TYPE_CHECKING:
    from proctor.guard._call import Call
    from proctor.guard._flow import Guard
    from proctor.rules.ruleset import RuleSet

__all__ = ["Tracing", "policy_version"]

_INVALID = trace.INVALID_SPAN
_ERROR_STATUS = frozenset(("denied", "terminated", "failed"))
_versions: weakref.WeakKeyDictionary[RuleSet, str] = weakref.WeakKeyDictionary()


class Tracing:
    """Starts and ends the spans of governed calls on a tracer of ``provider`` (the global one if None)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("proctor", __version__, tracer_provider=provider)
        self.noop = isinstance(self.tracer, trace.NoOpTracer)
        """Whether the provider gave a no-op tracer (the global provider's is a proxy: never)."""
        self._names: dict[str, str] = {}

    def opened(
        self, guard: Guard, call: Call, current: bool = True
    ) -> tuple[trace.Span, object | None] | None:
        """Start the call's span, and make it current if ``current``; None for the invalid span a no-op
        tracer gives (there is nothing to end)."""
        tool = guard.tool
        name = self._names.get(tool)
        if name is None:
            name = self._names[tool] = f"execute_tool {tool}"
        span = self.tracer.start_span(name)  # kind: internal, the default
        if span is _INVALID:
            return None
        token = otel_context.attach(trace.set_span_in_context(span)) if current else None
        return span, token

    def closed(
        self,
        guard: Guard,
        call: Call,
        opened: tuple[trace.Span, object | None],
        action: str,
        rule: str,
        status: str,
        result: Any,
        error: BaseException | None,
    ) -> None:
        """Give the span what the call decided and cost, and end it (made current: detached)."""
        span, token = opened
        try:
            if span.is_recording():  # else ending it does nothing either
                try:
                    _describe(span, guard, call, action, rule, status, result, error)
                finally:
                    span.end()
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]


def _describe(
    span: trace.Span,
    guard: Guard,
    call: Call,
    action: str,
    rule: str,
    status: str,
    result: Any,
    error: BaseException | None,
) -> None:
    run = call.run
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": guard.tool,
        "gen_ai.tool.call.id": _call_id(call),
        "proctor.service": guard.service,
        "proctor.agent": guard.agent,
        "proctor.run.id": run.run_id,
        "proctor.status": status,
        "proctor.decision": action,
        "proctor.cost.estimate": call.estimate,
        "proctor.cost.actual": call.actual,
    }
    if rule:
        attributes["proctor.rule"] = rule
    if call.rules is not None:
        attributes["proctor.policy.version"] = policy_version(call.rules)
    labels = guard.labels
    if isinstance(labels, dict):
        provider = labels.get("provider")
        if isinstance(provider, str):
            attributes["gen_ai.provider.name"] = provider
    if call.approval is not None:
        attributes["proctor.approval.approved"] = bool(call.approval.get("approved"))
    if status == "succeeded":
        attributes.update(usage_tokens(result))
    span.set_attributes(attributes)
    if error is not None and status == "failed":
        span.record_exception(error)
    if status in _ERROR_STATUS:
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
        else:
            span.set_attribute("error.type", status)
        detail = f"{status} by {rule}" if rule and status != "failed" else status
        if error is not None and status == "failed":
            detail = f"{type(error).__qualname__}: {error}"
        span.set_status(Status(StatusCode.ERROR, detail))


def _call_id(call: Call) -> str:
    """The LLM's id of the tool call when the function takes one (``tool_call_id``), else the run's
    id, with the call's number in a recorded run."""
    given = call.bound.get("tool_call_id")
    if isinstance(given, str) and given:
        return given
    run_id = call.run.run_id
    return f"{run_id}#{call.seq}" if call.seq else run_id


def policy_version(rules: RuleSet) -> str:
    """A short digest of the rules in force (rules, defaults, budgets, rate limits): it changes when a
    policy file does, and is the same in every process that loaded the same file."""
    version = _versions.get(rules)
    if version is None:
        described = repr(
            (
                [compiled.rule for compiled in rules.rules],
                [compiled.rule for compiled in rules.after.rules] if rules.after is not None else [],
                rules.defaults,
                rules.budgets,
                rules.rate_limits,
            )
        )
        version = _versions[rules] = hashlib.sha256(described.encode()).hexdigest()[:12]
    return version
