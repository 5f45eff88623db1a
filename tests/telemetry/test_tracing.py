"""Governed calls as OpenTelemetry spans, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from proctor import BudgetExceededError, RuleViolationError, runlog, telemetry
from proctor.rules import load_policies, parse_policies
from proctor.stores import MemoryStore, set_store
from proctor.telemetry import _hook
from proctor.telemetry.tracing import policy_version

_names = itertools.count()

RULES = {
    "policies": [
        {
            "id": "no-prod",
            "when": {"tool": "query", "args.db": "prod"},
            "action": "deny",
            "message": "not prod",
        },
        {"id": "audit-export", "when": {"tool": "export"}, "action": "log"},
    ]
}


@pytest.fixture(autouse=True)
def _own_store() -> Iterator[None]:
    set_store(MemoryStore())
    yield
    set_store(None)


def service() -> str:
    return f"tel-{next(_names)}"


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def test_an_allowed_call_is_a_span_with_the_genai_attributes(spans: InMemorySpanExporter) -> None:
    name = service()

    @runlog(service=name, agent="analyst", name="query", policies=RULES, cost=0.25, record=False)
    def query(db: str) -> str:
        return f"rows of {db}"

    assert query("staging") == "rows of staging"
    span = only(spans, "execute_tool query")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "query"
    assert isinstance(attributes["gen_ai.tool.call.id"], str)
    assert attributes["gen_ai.tool.call.id"]
    assert attributes["proctor.decision"] == "allow"
    assert "proctor.rule" not in attributes  # no rule matched
    assert attributes["proctor.policy.version"] == policy_version(parse_policies(RULES))
    assert attributes["proctor.service"] == name
    assert attributes["proctor.agent"] == "analyst"
    assert attributes["proctor.cost.estimate"] == 0.25
    assert attributes["proctor.cost.actual"] == 0.25
    assert span.status.status_code is StatusCode.UNSET
    assert span.kind is trace.SpanKind.INTERNAL


def test_a_denied_call_is_a_span_with_an_error_status(spans: InMemorySpanExporter) -> None:
    @runlog(service=service(), name="query", policies=RULES, record=False)
    def query(db: str) -> str:
        raise AssertionError("a denied call does not run")

    with pytest.raises(RuleViolationError):
        query("prod")
    span = only(spans, "execute_tool query")
    attributes = dict(span.attributes or {})
    assert attributes["proctor.decision"] == "deny"
    assert attributes["proctor.rule"] == "no-prod"
    assert attributes["error.type"] == "RuleViolationError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "denied by no-prod"


def test_a_call_denied_with_a_returned_refusal_is_an_error_span_too(spans: InMemorySpanExporter) -> None:
    @runlog(service=service(), name="query", policies=RULES, on_deny="return", record=False)
    def query(db: str) -> str:
        return "rows"

    assert "Denied by policy no-prod" in query("prod")
    span = only(spans, "execute_tool query")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "denied"


def test_a_budget_that_refuses_is_the_decision(spans: InMemorySpanExporter) -> None:
    limits = {"budgets": [{"id": "tiny", "per": "agent", "limit": 1.0}]}

    @runlog(service=service(), name="paid", policies=limits, cost=0.6, record=False)
    def paid() -> str:
        return "done"

    paid()
    with pytest.raises(BudgetExceededError):
        paid()
    allowed, refused = spans.get_finished_spans()
    assert dict(allowed.attributes or {})["proctor.decision"] == "allow"
    assert dict(refused.attributes or {})["proctor.decision"] == "deny"
    assert dict(refused.attributes or {})["proctor.rule"] == "tiny"
    assert refused.status.status_code is StatusCode.ERROR


def test_a_function_that_raises_records_its_exception(spans: InMemorySpanExporter) -> None:
    @runlog(service=service(), name="flaky", record=False)
    def flaky() -> None:
        raise ValueError("upstream is down")

    with pytest.raises(ValueError, match="upstream is down"):
        flaky()
    span = only(spans, "execute_tool flaky")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: upstream is down"
    assert dict(span.attributes or {})["proctor.decision"] == "allow"
    assert [event.name for event in span.events] == ["exception"]


def test_usage_provider_and_tool_call_id_come_from_the_call(spans: InMemorySpanExporter) -> None:
    @runlog(service=service(), name="chat", labels={"provider": "openai"}, record=False)
    def chat(prompt: str, tool_call_id: str) -> dict[str, Any]:
        return {"text": "hi", "usage": {"prompt_tokens": 12, "completion_tokens": 5, "cost": 0.002}}

    chat("hello", tool_call_id="call_abc123")
    attributes = dict(only(spans, "execute_tool chat").attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.tool.call.id"] == "call_abc123"
    assert attributes["proctor.cost.actual"] == 0.002


def test_tool_calls_and_the_functions_own_spans_nest_under_the_call(spans: InMemorySpanExporter) -> None:
    name = service()
    current: list[trace.Span] = []

    @runlog(service=name, name="lookup", record=False)
    def lookup(key: str) -> str:
        current.append(trace.get_current_span())  # what an LLM SDK's span would take as its parent
        return key.upper()

    @runlog(service=name, name="agent", record=False)
    def agent() -> str:
        return lookup("a") + lookup("b")

    assert agent() == "AB"
    outer = only(spans, "execute_tool agent")
    inner = [span for span in spans.get_finished_spans() if span.name == "execute_tool lookup"]
    assert len(inner) == 2
    for span in inner:
        assert span.parent is not None
        assert span.parent.span_id == outer.context.span_id
        assert span.context.trace_id == outer.context.trace_id
    assert [span.get_span_context().span_id for span in current] == [span.context.span_id for span in inner]
    assert trace.get_current_span() is trace.INVALID_SPAN  # each call's span was detached at its end


def test_async_calls_nest_and_end_their_spans(spans: InMemorySpanExporter) -> None:
    name = service()

    @runlog(service=name, name="fetch", policies=RULES, record=False)
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n

    @runlog(service=name, name="plan", record=False)
    async def plan() -> list[int]:
        return list(await asyncio.gather(fetch(1), fetch(2)))

    @runlog(service=name, name="query", policies=RULES, record=False)
    async def query(db: str) -> str:
        return db

    async def main() -> None:
        assert await plan() == [1, 2]
        with pytest.raises(RuleViolationError):
            await query("prod")

    asyncio.run(main())
    outer = only(spans, "execute_tool plan")
    fetched = [span for span in spans.get_finished_spans() if span.name == "execute_tool fetch"]
    assert {span.parent.span_id for span in fetched if span.parent} == {outer.context.span_id}
    assert only(spans, "execute_tool query").status.status_code is StatusCode.ERROR


def test_generators_get_a_span_that_ends_after_the_last_item(spans: InMemorySpanExporter) -> None:
    name = service()

    @runlog(service=name, name="rows", record=False)
    def rows(n: int) -> Iterator[int]:
        yield from range(n)

    @runlog(service=name, name="stream", record=False)
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert list(rows(3)) == [0, 1, 2]

    async def consume() -> list[int]:
        return [i async for i in stream(2)]

    assert asyncio.run(consume()) == [0, 1]
    assert only(spans, "execute_tool rows").status.status_code is StatusCode.UNSET
    assert only(spans, "execute_tool stream").status.status_code is StatusCode.UNSET
    early = rows(5)
    next(early)
    early.close()  # the consumer stopped early: the call is cancelled
    cancelled = [span for span in spans.get_finished_spans() if span.name == "execute_tool rows"][-1]
    assert dict(cancelled.attributes or {})["proctor.status"] == "cancelled"


def test_the_policy_version_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("policies:\n  - {id: a, when: {tool: x}, action: deny}\n")
    first, again = load_policies(path), load_policies(path)
    assert first is not again
    assert policy_version(first) == policy_version(again)
    path.write_text("policies:\n  - {id: a, when: {tool: y}, action: deny}\n")
    assert policy_version(load_policies(path)) != policy_version(first)


def test_no_span_and_no_hook_until_enabled_and_after_disable() -> None:
    assert _hook.active is None

    @runlog(service=service(), name="plain", record=False)
    def plain() -> int:
        return 1

    assert plain() == 1
    telemetry.enable(tracing=True, metrics=False)
    assert telemetry.enabled()
    telemetry.disable()
    assert _hook.active is None
    assert not telemetry.enabled()


def test_async_calls_whose_store_steps_run_off_the_loop_detach_their_span_on_it(
    spans: InMemorySpanExporter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from proctor.stores import SQLiteStore

    store = SQLiteStore(tmp_path / "ledgers.db")  # a store that can wait: checks and settles go off the loop
    set_store(store)
    limits = {"budgets": [{"id": "small", "per": "agent", "limit": 1.0}]}

    @runlog(service=service(), name="spend", policies=limits, cost=0.75, record=False)
    async def spend(fail: bool) -> str:
        if fail:
            raise ValueError("failed after its check")
        return "ok"

    async def main() -> None:
        with pytest.raises(ValueError, match="failed after its check"):
            await spend(True)  # settled off the loop, then its span ends here
        assert await spend(False) == "ok"
        with pytest.raises(BudgetExceededError):
            await spend(False)
        assert trace.get_current_span() is trace.INVALID_SPAN

    try:
        asyncio.run(main())
    finally:
        set_store(None)
        store.close()
    statuses = [span.status.status_code for span in spans.get_finished_spans()]
    assert statuses == [StatusCode.ERROR, StatusCode.UNSET, StatusCode.ERROR]
    assert "Failed to detach context" not in caplog.text


def test_a_no_op_provider_leaves_the_calls_without_spans_to_make() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    telemetry.enable(tracing=True, metrics=False, tracer_provider=NoOpTracerProvider())
    try:
        active = _hook.active
        assert active is None or active.tracing is None  # nothing to do: telemetry stays off
    finally:
        telemetry.disable()
