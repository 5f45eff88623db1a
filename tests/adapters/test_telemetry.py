"""Framework traffic becomes spans like decorated calls do: one ``execute_tool`` span per governed call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain.agents import create_agent
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from proctor import telemetry
from proctor.adapters.langchain import ProctorMiddleware
from proctor.adapters.openai_agents import ProctorAgents
from tests.adapters import test_langchain as lc
from tests.adapters import test_openai_agents as oa


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(tracing=True, metrics=False, tracer_provider=provider)
    yield exporter
    telemetry.disable()
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[StatusCode]]:
    found: dict[str, list[StatusCode]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span.status.status_code)
    return found


def test_a_langchain_agents_calls_are_spans(spans: InMemorySpanExporter) -> None:
    agent = create_agent(
        lc.model(lc.calls(("delete_rows", {"table": "users"}), ("search", {"query": "q"})), lc.answer()),
        tools=[lc.search, lc.delete_rows],
        middleware=[ProctorMiddleware(policies=lc.RULES, prices=lc.PRICES)],
    )
    agent.invoke({"messages": [("user", "go")]})
    found = by_name(spans)
    assert found["execute_tool langchain.model"] == [StatusCode.UNSET, StatusCode.UNSET]
    assert found["execute_tool search"] == [StatusCode.UNSET]
    assert found["execute_tool delete_rows"] == [StatusCode.ERROR]  # denied


def test_an_agents_sdk_runs_tool_calls_are_spans(spans: InMemorySpanExporter) -> None:
    oa.set_tracing_disabled(True)
    proctor_agents = ProctorAgents(policies=oa.RULES, prices=oa.PRICES)
    agent = proctor_agents.govern(
        oa.agent_with(
            oa.tools_step(("delete_rows", {"table": "users"}), ("search", {"query": "q"})), oa.text_step()
        )
    )
    asyncio.run(proctor_agents.run(agent, "go"))
    found = by_name(spans)
    assert found["execute_tool search"] == [StatusCode.UNSET]
    assert found["execute_tool delete_rows"] == [StatusCode.ERROR]
