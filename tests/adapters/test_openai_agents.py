"""ProctorAgents with the real OpenAI Agents SDK: its Runner and its own scripted model (no network)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    ModelSettings,
    Runner,
    ToolCallOutputItem,
    ToolInputGuardrailTripwireTriggered,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage

import proctor
import proctor.runs
from proctor import BudgetExceededError, BudgetPolicy
from proctor.adapters.openai_agents import ProctorAgents
from proctor.approvals.durable import DurableChannel
from proctor.approvals.store import ApprovalStore

PRICES = {"big-model": {"input": 10.0, "output": 30.0}}
BIG = 1000 * 10.0 / 1e6 + 100 * 30.0 / 1e6  # what one step's usage costs

sent: list[dict[str, Any]] = []


@function_tool
def search(query: str) -> str:
    """Search the knowledge base."""
    sent.append({"tool": "search", "query": query})
    return f"results for {query}"


@function_tool
def delete_rows(table: str) -> str:
    """Delete every row of a table."""
    sent.append({"tool": "delete_rows", "table": table})
    return f"{table} emptied"


class Scripted(ScriptedModel):
    """The SDK's scripted model, with a model name to price."""

    model = "big-model"


def usage() -> Usage:
    return Usage(requests=1, input_tokens=1000, output_tokens=100, total_tokens=1100)


def tools_step(*calls: tuple[str, dict[str, Any]]) -> ModelStep:
    output = [function_call(name, args, call_id=f"call-{uuid.uuid4().hex[:8]}") for name, args in calls]
    return ModelStep(output=output, usage=usage())


def text_step(text: str = "done") -> ModelStep:
    return ModelStep(output=[assistant_message(text)], usage=usage())


def agent_with(*steps: ModelStep) -> Agent[Any]:
    return Agent(
        name="helper",
        model=Scripted(steps),
        tools=[search, delete_rows],
        model_settings=ModelSettings(max_tokens=100),
    )


def outputs(result: Any) -> dict[str, str]:
    """Each tool's output, by tool name (the calls of the tests have distinct tools)."""
    found = {}
    for item in result.new_items:
        if isinstance(item, ToolCallOutputItem):
            call = next(
                each.raw_item
                for each in result.new_items
                if getattr(each.raw_item, "call_id", None) == item.raw_item["call_id"]
                and getattr(each.raw_item, "name", None)
            )
            found[call.name] = str(item.output)
    return found


@pytest.fixture(autouse=True)
def _offline() -> Iterator[None]:
    set_tracing_disabled(True)  # no trace is exported anywhere
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
        {
            "id": "no-secrets-out",
            "when": {"tool": "search", "output": {"contains": "classified"}},
            "action": "deny",
            "message": "that answer stays inside",
        },
    ]
}


def test_deny_rejects_content_modify_patches_and_usage_settles_the_budget() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=1.0)
    proctor_agents = ProctorAgents(policies=RULES, agent=who, budget=budget, prices=PRICES)
    agent = proctor_agents.govern(
        agent_with(
            tools_step(("delete_rows", {"table": "users"}), ("search", {"query": "secret"})), text_step()
        )
    )
    result = asyncio.run(Runner.run(agent, "clean up", hooks=proctor_agents.hooks))
    assert result.final_output == "done"
    found = outputs(result)
    assert "users are never deleted" in found["delete_rows"]
    assert found["search"] == "results for redacted"
    assert sent == [{"tool": "search", "query": "redacted"}]  # delete_rows never ran
    [rejected] = [
        each for each in result.tool_input_guardrail_results if each.output.behavior["type"] != "allow"
    ]
    assert rejected.output.behavior["type"] == "reject_content"
    assert budget.spent(who) == pytest.approx(2 * BIG, abs=1e-9)  # the reported usage, priced


def test_an_output_the_rules_deny_is_rejected_by_the_output_guardrail() -> None:
    @function_tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return "classified material"

    rules = {
        "policies": [
            {
                "id": "no-secrets-out",
                "when": {"tool": "lookup", "output": {"contains": "classified"}},
                "action": "deny",
                "message": "that answer stays inside",
            }
        ]
    }
    proctor_agents = ProctorAgents(policies=rules, prices=PRICES)
    agent = proctor_agents.govern(
        Agent(
            name="helper", model=Scripted([tools_step(("lookup", {"key": "k"})), text_step()]), tools=[lookup]
        )
    )
    result = asyncio.run(Runner.run(agent, "look", hooks=proctor_agents.hooks))
    assert "that answer stays inside" in outputs(result)["lookup"]
    assert "classified" not in outputs(result)["lookup"]
    [guarded] = result.tool_output_guardrail_results
    assert guarded.output.behavior["type"] == "reject_content"


def test_terminate_raises_the_tripwire_and_ends_the_run() -> None:
    rules = {
        "policies": [
            {"id": "no-delete", "when": {"tool": "delete_rows"}, "action": "terminate", "message": "stop now"}
        ]
    }
    service = f"oa-{uuid.uuid4().hex[:8]}"
    proctor_agents = ProctorAgents(policies=rules, service=service, prices=PRICES)
    agent = proctor_agents.govern(agent_with(tools_step(("delete_rows", {"table": "logs"})), text_step()))
    with pytest.raises(ToolInputGuardrailTripwireTriggered):
        asyncio.run(proctor_agents.run(agent, "go"))
    assert sent == []
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.tool == "openai_agents.run"
    assert run.status == "terminated"
    [action] = log.actions(run.run_id)
    assert action.tool == "delete_rows"
    assert action.status == "terminated"


def test_run_records_one_run_whose_actions_are_the_tool_calls() -> None:
    service = f"oa-{uuid.uuid4().hex[:8]}"
    rules = {
        "policies": [
            {"id": "once", "when": {"tool": "search", "same_call_in_run": {"gte": 1}}, "action": "deny"}
        ]
    }
    proctor_agents = ProctorAgents(policies=rules, service=service, prices=PRICES)
    agent = proctor_agents.govern(
        agent_with(
            tools_step(("search", {"query": "q"})), tools_step(("search", {"query": "q"})), text_step()
        )
    )
    result = asyncio.run(proctor_agents.run(agent, "look twice"))
    assert result.final_output == "done"
    assert sent == [{"tool": "search", "query": "q"}]  # the same call again in the run is denied
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.status == "succeeded"
    assert [(action.tool, action.status) for action in log.actions(run.run_id)] == [
        ("search", "succeeded"),
        ("search", "denied"),
    ]


def test_a_budget_refuses_the_model_call_before_it_is_sent() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=0.001)  # less than one call's estimate (100 output tokens: 0.003)
    proctor_agents = ProctorAgents(agent=who, budget=budget, prices=PRICES)
    model = Scripted([text_step()])
    agent = proctor_agents.govern(
        Agent(name="helper", model=model, model_settings=ModelSettings(max_tokens=100))
    )
    with pytest.raises(BudgetExceededError):
        asyncio.run(Runner.run(agent, "hi", hooks=proctor_agents.hooks))
    assert model.calls == ()
    assert budget.spent(who) == 0


def test_needs_approval_waits_in_the_durable_queue_and_the_resumed_run_takes_the_decision(
    tmp_path: Any,
) -> None:
    store = ApprovalStore(tmp_path / "approvals.db")
    rules = {"policies": [{"id": "dba", "when": {"tool": "delete_rows"}, "action": "require_approval"}]}
    proctor_agents = ProctorAgents(policies=rules, prices=PRICES, approvals=DurableChannel(store))
    agent = proctor_agents.govern(
        agent_with(
            tools_step(("delete_rows", {"table": "logs"})),
            text_step("emptied"),
            tools_step(("delete_rows", {"table": "audit"})),
            text_step("kept"),
        )
    )

    async def main() -> None:
        paused = await Runner.run(agent, "empty logs", hooks=proctor_agents.hooks)
        assert len(paused.interruptions) == 1
        [request] = store.list(status="pending")
        assert sent == []
        assert proctor_agents.resume_state(paused).get_interruptions()  # nobody decided: still waiting

        store.decide(request.id, approved=True, approver="alice")
        done = await Runner.run(agent, proctor_agents.resume_state(paused), hooks=proctor_agents.hooks)
        assert done.final_output == "emptied"
        assert sent == [{"tool": "delete_rows", "table": "logs"}]
        assert len(store.list()) == 1  # the resumed call took the request's decision

        paused = await Runner.run(agent, "empty audit", hooks=proctor_agents.hooks)
        [request] = store.list(status="pending")
        store.decide(request.id, approved=False, approver="bob", comment="keep it")
        done = await Runner.run(agent, proctor_agents.resume_state(paused), hooks=proctor_agents.hooks)
        assert done.final_output == "kept"
        assert "keep it" in outputs(done)["delete_rows"]
        assert sent == [{"tool": "delete_rows", "table": "logs"}]

    asyncio.run(main())


def test_a_run_inside_a_runlog_call_records_its_tool_calls_and_spend() -> None:
    service = f"oa-{uuid.uuid4().hex[:8]}"
    proctor_agents = ProctorAgents(policies=RULES, service=service, prices=PRICES, budget=BudgetPolicy(10.0))
    agent = proctor_agents.govern(
        agent_with(tools_step(("delete_rows", {"table": "users"}), ("search", {"query": "q"})), text_step())
    )

    @proctor.runlog(service=service)
    async def support(question: str) -> str:
        result = await Runner.run(agent, question, hooks=proctor_agents.hooks)
        return str(result.final_output)

    assert asyncio.run(support("hello")) == "done"
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.status == "succeeded"
    actions = {action.tool: action for action in log.actions(run.run_id)}
    assert actions["delete_rows"].status == "denied"
    assert actions["search"].status == "succeeded"
    assert "redacted" in (actions["search"].args or "")
    assert "q" in (actions["search"].requested_args or "")  # the arguments before the modify rule
    assert run.cost == pytest.approx(2 * BIG, abs=1e-9)

    stricter = {"policies": [{"id": "no-search", "when": {"tool": "search"}, "action": "deny"}]}
    batch = proctor.replay_batch(filters={"service": service}, policies=stricter, mode="what-if")
    [rule] = [impact for impact in batch.impact.rules if impact.rule == "no-search"]
    assert rule.denied == 1


def test_arguments_that_cannot_be_parameter_names_are_seen_under_args_arguments() -> None:
    async def send(context: Any, arguments: str) -> str:
        sent.append({"tool": "mail", **json.loads(arguments)})
        return "sent"

    mail = FunctionTool(
        name="mail",
        description="Send a mail.",
        params_json_schema={
            "type": "object",
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
            "required": ["from", "to"],
            "additionalProperties": False,
        },
        on_invoke_tool=send,
    )
    rules = {"policies": [{"id": "no-eve", "when": {"args.arguments.from": "eve"}, "action": "deny"}]}
    proctor_agents = ProctorAgents(policies=rules, prices=PRICES)
    agent = proctor_agents.govern(
        Agent(
            name="helper",
            model=Scripted([tools_step(("mail", {"from": "eve", "to": "bob"})), text_step()]),
            tools=[mail],
        )
    )
    result = asyncio.run(proctor_agents.run(agent, "mail bob"))
    assert "no-eve" in outputs(result)["mail"]
    assert sent == []


def test_a_policy_file_budget_refuses_model_calls_past_its_limit() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    rules = {"budgets": [{"id": f"daily-{who}", "per": "agent", "limit": BIG * 1.1, "period": "day"}]}
    proctor_agents = ProctorAgents(policies=rules, agent=who, prices=PRICES)
    model = Scripted([text_step("first"), text_step("second")])
    agent = proctor_agents.govern(
        Agent(name="helper", model=model, model_settings=ModelSettings(max_tokens=100))
    )
    assert asyncio.run(proctor_agents.run(agent, "hi")).final_output == "first"
    with pytest.raises(BudgetExceededError):  # spent BIG: the next estimate would pass the limit
        asyncio.run(proctor_agents.run(agent, "again"))
    assert len(model.calls) == 1


def test_concurrent_runs_through_one_proctor_agents_are_separate_runs_within_one_budget() -> None:
    service, who = f"oa-{uuid.uuid4().hex[:8]}", f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=100.0)
    proctor_agents = ProctorAgents(policies=RULES, service=service, agent=who, budget=budget, prices=PRICES)
    agents = [
        proctor_agents.govern(agent_with(tools_step(("search", {"query": f"q{i}"})), text_step(f"a{i}")))
        for i in range(16)
    ]

    async def main() -> list[Any]:
        results = await asyncio.gather(
            *(proctor_agents.run(agent, f"question {i}") for i, agent in enumerate(agents))
        )
        return [result.final_output for result in results]

    assert asyncio.run(main()) == [f"a{i}" for i in range(16)]
    assert budget.spent(who) == pytest.approx(32 * BIG, abs=1e-9)
    assert sorted(entry["query"] for entry in sent) == sorted(["redacted"] * 16)
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    runs = log.runs(service=service, limit=50)
    assert len(runs) == 16
    for run in runs:
        assert [action.tool for action in log.actions(run.run_id)] == ["search"]
        assert run.cost == pytest.approx(2 * BIG, abs=1e-9)


def test_a_model_call_that_fails_is_charged_its_reservation() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=1.0)
    proctor_agents = ProctorAgents(agent=who, budget=budget, prices=PRICES)
    model = Scripted([ModelStep.raise_error(ConnectionError("lost"))])
    agent = proctor_agents.govern(
        Agent(name="helper", model=model, model_settings=ModelSettings(max_tokens=100))
    )
    with pytest.raises(ConnectionError):
        asyncio.run(proctor_agents.run(agent, "hi"))
    [call] = model.calls
    reserved = proctor_agents.estimate("big-model", agent, call.system_instructions, call.input)
    assert reserved > 0
    assert budget.spent(who) == pytest.approx(reserved, abs=1e-12)  # the provider may have billed it


def test_a_model_call_the_provider_refused_costs_nothing() -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=1.0)
    proctor_agents = ProctorAgents(agent=who, budget=budget, prices=PRICES)
    model = Scripted([ModelStep.raise_error(ValueError("400: bad request"))])
    agent = proctor_agents.govern(
        Agent(name="helper", model=model, model_settings=ModelSettings(max_tokens=100))
    )
    with pytest.raises(ValueError, match="bad request"):
        asyncio.run(proctor_agents.run(agent, "hi"))
    assert budget.spent(who) == 0


def test_a_downgrade_budget_lets_the_call_run_and_says_it_could_not_switch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    who = f"agent-{uuid.uuid4().hex[:8]}"
    budget = BudgetPolicy(default_limit=0.001, on_exceeded="downgrade")
    proctor_agents = ProctorAgents(agent=who, budget=budget, prices=PRICES)
    agent = proctor_agents.govern(
        Agent(name="helper", model=Scripted([text_step()]), model_settings=ModelSettings(max_tokens=100))
    )
    with caplog.at_level("WARNING", logger="proctor.adapters"):
        assert asyncio.run(proctor_agents.run(agent, "hi")).final_output == "done"
    assert "cannot switch its model" in caplog.text
    assert budget.spent(who) == pytest.approx(BIG, abs=1e-9)
