"""ProctorMiddleware with the real ``create_agent`` of LangChain v1, its fake chat model, and LangGraph."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import proctor
import proctor.runs
from proctor import BudgetPolicy
from proctor.adapters.langchain import ProctorMiddleware
from proctor.approvals.durable import DurableChannel
from proctor.approvals.store import ApprovalStore

PRICES = {"big-model": {"input": 10.0, "output": 30.0}, "small-model": {"input": 1.0, "output": 3.0}}
USAGE = {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100}
BIG = 1000 * 10.0 / 1e6 + 100 * 30.0 / 1e6  # what USAGE costs on big-model
SMALL = 1000 * 1.0 / 1e6 + 100 * 3.0 / 1e6

sent: list[dict[str, Any]] = []  # what the tools were called with


@tool
def search(query: str) -> str:
    """Search the knowledge base."""
    sent.append({"tool": "search", "query": query})
    return f"results for {query}"


@tool
def delete_rows(table: str) -> str:
    """Delete every row of a table."""
    sent.append({"tool": "delete_rows", "table": table})
    return f"{table} emptied"


class FakeModel(GenericFakeChatModel):
    """LangChain's fake chat model, named, and accepting tools (create_agent binds them)."""

    model_name: str = "big-model"
    max_tokens: int = 100  # the estimate's output tokens

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> FakeModel:
        return self


def model(*replies: AIMessage, name: str = "big-model") -> FakeModel:
    return FakeModel(messages=iter(replies), model_name=name)


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call-{uuid.uuid4().hex[:8]}", "type": "tool_call"}
            for name, args in tool_calls
        ],
        usage_metadata=USAGE,
    )


def answer(text: str = "done") -> AIMessage:
    return AIMessage(content=text, usage_metadata=USAGE)


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [message for message in result["messages"] if isinstance(message, ToolMessage)]


@pytest.fixture(autouse=True)
def _forget_tool_calls() -> Iterator[None]:
    sent.clear()
    yield
    sent.clear()


RULES = {
    "policies": [
        {
            "id": "no-drop",
            "when": {"tool": "delete_rows", "args.table": "users"},
            "action": "deny",
            "message": "users are never deleted",
        },
        {
            "id": "safe-search",
            "when": {"tool": "search"},
            "action": "modify",
            "set": {"args.query": "redacted"},
        },
    ]
}


def test_deny_is_an_error_tool_message_and_modify_patches_the_arguments() -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"
    agent = create_agent(
        model(calls(("delete_rows", {"table": "users"}), ("search", {"query": "secret"})), answer()),
        tools=[search, delete_rows],
        middleware=[ProctorMiddleware(policies=RULES, service=service, prices=PRICES)],
    )
    result = agent.invoke({"messages": [{"role": "user", "content": "clean up"}]})
    denied, searched = tool_messages(result)
    assert denied.status == "error"
    assert "users are never deleted" in denied.text
    assert searched.status == "success"
    assert searched.text == "results for redacted"
    assert sent == [{"tool": "search", "query": "redacted"}]  # delete_rows never ran
    assert result["messages"][-1].text == "done"

    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.tool == "langchain.agent"
    assert run.status == "succeeded"
    actions = log.actions(run.run_id)
    tools = [action.tool for action in actions]
    assert tools[0] == tools[3] == "langchain.model"
    assert sorted(tools[1:3]) == ["delete_rows", "search"]  # the tool node runs them at once
    statuses = {action.tool: action.status for action in actions}
    assert statuses["delete_rows"] == "denied"
    assert statuses["search"] == "succeeded"
    assert run.cost == pytest.approx(2 * BIG, abs=1e-9)  # two model calls, priced from usage_metadata

    # what-if over the recorded framework traffic: a stricter rule would deny the searches too
    stricter = {"policies": [{"id": "no-search", "when": {"tool": "search"}, "action": "deny"}]}
    batch = proctor.replay_batch(filters={"service": service}, policies=stricter, mode="what-if")
    [rule] = [impact for impact in batch.impact.rules if impact.rule == "no-search"]
    assert rule.denied == 1


def test_terminate_refuses_the_call_and_every_later_one_and_ends_the_agent() -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"
    rules = {
        "policies": [
            {
                "id": "loop",
                "when": {"tool_calls_in_run": {"gte": 2}, "tool": "search"},
                "action": "terminate",
                "message": "looping",
            }
        ]
    }
    agent = create_agent(
        model(
            calls(("search", {"query": "a"})),
            calls(("search", {"query": "b"}), ("search", {"query": "c"})),
            answer("never reached"),
        ),
        tools=[search],
        middleware=[ProctorMiddleware(policies=rules, service=service, prices=PRICES)],
    )
    result = agent.invoke({"messages": [{"role": "user", "content": "go"}]})
    first, stopped, later = tool_messages(result)
    assert first.status == "success"
    assert stopped.status == later.status == "error"
    assert "looping" in stopped.text
    assert "looping" in later.text
    assert [entry["query"] for entry in sent] == ["a"]
    assert "never reached" not in result["messages"][-1].text
    assert "loop" in result["messages"][-1].text

    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.status == "terminated"


def test_a_downgrade_budget_switches_the_model_and_usage_settles_the_budget() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=BIG * 1.1, on_exceeded="downgrade")
    cheap = model(answer("cheap answer"), name="small-model")
    agent = create_agent(
        model(answer("expensive answer"), answer("not used")),
        tools=[search],
        middleware=[ProctorMiddleware(agent=who, budget=budget, prices=PRICES, downgrade_to=cheap)],
    )
    first = agent.invoke({"messages": [{"role": "user", "content": "hi"}]})
    assert first["messages"][-1].text == "expensive answer"
    assert budget.spent(who) == pytest.approx(BIG, abs=1e-9)  # settled from usage_metadata, not the estimate
    second = agent.invoke({"messages": [{"role": "user", "content": "again"}]})
    assert second["messages"][-1].text == "cheap answer"  # over the limit: downgraded, not refused
    assert budget.spent(who) == pytest.approx(BIG + SMALL, abs=1e-9)


def test_an_unknown_model_is_refused_before_it_is_called_and_the_run_fails() -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"
    agent = create_agent(
        model(answer(), name="mystery-model"),
        tools=[search],
        middleware=[ProctorMiddleware(service=service, prices=PRICES)],
    )
    with pytest.raises(proctor.ConfigurationError, match="mystery-model"):
        agent.invoke({"messages": [{"role": "user", "content": "hi"}]})
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.status == "failed"


def test_require_approval_interrupts_and_the_resumed_graph_finds_the_decision(tmp_path: Any) -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"
    store = ApprovalStore(tmp_path / "approvals.db")
    rules = {
        "policies": [
            {"id": "dba", "when": {"tool": "delete_rows"}, "action": "require_approval", "timeout": 600}
        ]
    }
    agent = create_agent(
        model(
            calls(("delete_rows", {"table": "logs"})),
            answer("emptied"),
            calls(("delete_rows", {"table": "audit"})),
            answer("refused"),
        ),
        tools=[delete_rows],
        middleware=[
            ProctorMiddleware(policies=rules, service=service, prices=PRICES, approvals=DurableChannel(store))
        ],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}
    paused = agent.invoke({"messages": [{"role": "user", "content": "empty logs"}]}, config)
    [pending] = paused["__interrupt__"]
    ticket = pending.value["proctor_approval"]
    assert store.get(ticket).pending
    assert sent == []

    again = agent.invoke(Command(resume=True), config)  # nobody decided yet: it pauses again
    assert [each.value["proctor_approval"] for each in again["__interrupt__"]] == [ticket]
    assert sent == []

    store.decide(ticket, approved=True, approver="alice", comment="fine")
    done = agent.invoke(Command(resume=True), config)
    assert sent == [{"tool": "delete_rows", "table": "logs"}]
    assert done["messages"][-1].text == "emptied"
    assert len(store.list()) == 1  # the resumed call found its request instead of asking anew

    paused = agent.invoke({"messages": [{"role": "user", "content": "empty audit"}]}, config)
    [pending] = paused["__interrupt__"]
    store.decide(pending.value["proctor_approval"], approved=False, approver="bob", comment="keep it")
    done = agent.invoke(Command(resume=True), config)
    refused = tool_messages(done)[-1]
    assert refused.status == "error"
    assert "keep it" in refused.text
    assert sent == [{"tool": "delete_rows", "table": "logs"}]


def test_the_async_agent_is_governed_too() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=10.0)
    agent = create_agent(
        model(calls(("delete_rows", {"table": "users"}), ("search", {"query": "x"})), answer()),
        tools=[search, delete_rows],
        middleware=[ProctorMiddleware(policies=RULES, agent=who, budget=budget, prices=PRICES)],
    )
    result = asyncio.run(agent.ainvoke({"messages": [{"role": "user", "content": "go"}]}))
    denied, searched = tool_messages(result)
    assert denied.status == "error"
    assert searched.text == "results for redacted"
    assert budget.spent(who) == pytest.approx(2 * BIG, abs=1e-9)


def test_an_agent_inside_a_runlog_call_is_part_of_its_run() -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"
    agent = create_agent(
        model(calls(("search", {"query": "q"})), answer()),
        tools=[search],
        middleware=[ProctorMiddleware(service=service, prices=PRICES)],
    )

    @proctor.runlog(service=service)
    def support(question: str) -> str:
        return str(agent.invoke({"messages": [{"role": "user", "content": question}]})["messages"][-1].text)

    assert support("hello") == "done"
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.tool.endswith("support")
    assert [action.tool for action in log.actions(run.run_id)] == [
        "langchain.model",
        "search",
        "langchain.model",
    ]


prompts: list[list[str]] = []  # the texts of the messages RecordingModel was sent


class RecordingModel(FakeModel):
    """The fake model, keeping the texts of the messages it was sent."""

    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        prompts.append([message.text for message in messages])
        return super()._generate(messages, *args, **kwargs)


def test_a_modify_rule_redacts_the_text_the_model_is_sent() -> None:
    prompts.clear()
    rules = {
        "policies": [
            {
                "id": "no-emails-to-llms",
                "when": {"tool": "langchain.model", "args.messages.1.content": {"contains_pii": ["email"]}},
                "action": "modify",
                "redact": ["args.messages.1.content"],
            }
        ]
    }
    agent = create_agent(
        RecordingModel(messages=iter([answer()])),
        tools=[search],
        system_prompt="Be brief.",
        middleware=[ProctorMiddleware(policies=rules, prices=PRICES)],
    )
    agent.invoke({"messages": [{"role": "user", "content": "write to ann@example.com"}]})
    assert prompts == [["Be brief.", "[REDACTED]"]]


def test_the_async_agent_pauses_for_approval_and_resumes(tmp_path: Any) -> None:
    store = ApprovalStore(tmp_path / "approvals.db")
    rules = {"policies": [{"id": "dba", "when": {"tool": "delete_rows"}, "action": "require_approval"}]}
    agent = create_agent(
        model(calls(("delete_rows", {"table": "logs"})), answer("emptied")),
        tools=[delete_rows],
        middleware=[ProctorMiddleware(policies=rules, prices=PRICES, approvals=DurableChannel(store))],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}

    async def main() -> None:
        paused = await agent.ainvoke({"messages": [{"role": "user", "content": "empty logs"}]}, config)
        [pending] = paused["__interrupt__"]
        store.decide(pending.value["proctor_approval"], approved=True, approver="alice")
        done = await agent.ainvoke(Command(resume=True), config)
        assert done["messages"][-1].text == "emptied"

    asyncio.run(main())
    assert sent == [{"tool": "delete_rows", "table": "logs"}]


def test_a_recorded_invocation_replays_with_its_calls_answered_from_the_log() -> None:
    service = f"lc-{uuid.uuid4().hex[:8]}"

    def build() -> Any:
        return create_agent(
            model(calls(("search", {"query": "q"})), answer()),
            tools=[search],
            middleware=[ProctorMiddleware(service=service, prices=PRICES)],
        )

    build().invoke({"messages": [{"role": "user", "content": "hello"}]})
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    sent.clear()

    @proctor.runlog(service=service)
    def invocation(input: str) -> str:
        return str(build().invoke({"messages": [{"role": "user", "content": input}]})["messages"][-1].text)

    replayed = proctor.replay(run.run_id, function=invocation)
    assert replayed.identical
    assert sent == []  # the tool call came from the log


def test_a_policy_file_downgrade_budget_switches_to_the_model_it_names() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    rules = {
        "budgets": [
            {
                "id": f"cheaper-{who}",
                "per": "agent",
                "limit": BIG * 1.1,
                "period": "day",
                "mode": "downgrade",
                "set": {"args.model": "small-model"},
            }
        ]
    }
    cheap = model(answer("cheap answer"), name="small-model")
    agent = create_agent(
        model(answer("expensive answer"), answer("not used")),
        tools=[search],
        middleware=[ProctorMiddleware(policies=rules, agent=who, prices=PRICES, downgrade_to=cheap)],
    )
    assert agent.invoke({"messages": [("user", "hi")]})["messages"][-1].text == "expensive answer"
    assert agent.invoke({"messages": [("user", "again")]})["messages"][-1].text == "cheap answer"


def test_concurrent_invocations_through_one_middleware_are_separate_runs_within_one_budget() -> None:
    service, who = f"lc-{uuid.uuid4().hex[:8]}", f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=100.0)
    middleware = ProctorMiddleware(policies=RULES, service=service, agent=who, budget=budget, prices=PRICES)
    agents = [
        create_agent(
            model(calls(("search", {"query": f"q{i}"})), answer(f"a{i}")),
            tools=[search],
            middleware=[middleware],
        )
        for i in range(16)
    ]

    async def main() -> list[str]:
        results = await asyncio.gather(
            *(agent.ainvoke({"messages": [("user", f"question {i}")]}) for i, agent in enumerate(agents))
        )
        return [result["messages"][-1].text for result in results]

    assert asyncio.run(main()) == [f"a{i}" for i in range(16)]
    assert budget.spent(who) == pytest.approx(32 * BIG, abs=1e-9)
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    runs = log.runs(service=service, limit=50)
    assert len(runs) == 16
    for run in runs:
        assert [action.tool for action in log.actions(run.run_id)] == [
            "langchain.model",
            "search",
            "langchain.model",
        ]
        assert run.cost == pytest.approx(2 * BIG, abs=1e-9)


class LostModel(FakeModel):
    """A model whose connection is lost during the call."""

    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("connection reset")


def test_a_model_call_that_lost_its_connection_costs_its_estimate() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=1.0)
    agent = create_agent(
        LostModel(messages=iter([])),
        tools=[search],
        middleware=[ProctorMiddleware(agent=who, budget=budget, prices=PRICES)],
    )
    with pytest.raises(ConnectionError):
        agent.invoke({"messages": [("user", "hi")]})
    # the estimate: the prompt ({"role": "human", "content": "hi"}: 7 characters, 2 + 4 tokens) and
    # max_tokens=100, on big-model
    assert budget.spent(who) == pytest.approx(6 * 10.0 / 1e6 + 100 * 30.0 / 1e6, abs=1e-12)


def test_a_graph_resumed_by_another_process_finds_the_decision_in_the_queue(tmp_path: Any) -> None:
    store = ApprovalStore(tmp_path / "approvals.db")
    rules = {"policies": [{"id": "dba", "when": {"tool": "delete_rows"}, "action": "require_approval"}]}
    saver = InMemorySaver()  # stands for a database checkpointer both processes share
    config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}

    def process(*replies: AIMessage) -> Any:  # what a process builds: its own middleware, nothing shared
        middleware = ProctorMiddleware(policies=rules, prices=PRICES, approvals=DurableChannel(store))
        return create_agent(model(*replies), tools=[delete_rows], middleware=[middleware], checkpointer=saver)

    paused = process(calls(("delete_rows", {"table": "logs"}))).invoke(
        {"messages": [("user", "empty")]}, config
    )
    [pending] = paused["__interrupt__"]
    store.decide(pending.value["proctor_approval"], approved=True, approver="alice")

    done = process(answer("emptied")).invoke(Command(resume=True), config)
    assert done["messages"][-1].text == "emptied"
    assert sent == [{"tool": "delete_rows", "table": "logs"}]
    assert len(store.list()) == 1  # found, not asked anew
