"""The examples of seed 003 (the RunLog policy-engine page): both YAML files and the decorator.

The YAML is as the page prints it once its lost indentation is restored; the
decorator example runs as written with the import changed to proctor.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proctor import (
    AutoChannel,
    RuleViolationError,
    RunTerminated,
    parse_policies,
    runlog,
    set_approval_channel,
)
from proctor.decision import Action
from proctor.rules import Facts

EXAMPLE_POLICIES = """
# Example policy configuration
policies:
- id: budget_control
  name: "Daily Budget Limit"
  when:
    cost_today: { gt: 100.00 }
  action: deny
  message: "Daily budget exceeded"
- id: pii_protection
  name: "PII Detection"
  when:
    tool: "database.query"
    args.query: { contains_pii: true }
  action: require_approval
  approvers: ["security-team"]
- id: loop_detection
  name: "Infinite Loop Prevention"
  when:
    tool_calls_in_run: { gt: 50 }
  action: terminate
  message: "Possible infinite loop detected"
"""

AGENT_POLICIES = """
# 1. Create your policy file: agent_policies.yaml
policies:
- id: cost_control
  when: { cost: { gt: 1.00 } }
  action: deny
- id: sensitive_data
  when: { input: { contains_pii: true } }
  action: require_approval
"""


def test_the_example_configuration_behaves_as_documented() -> None:
    rules = parse_policies(EXAMPLE_POLICIES, "policies.yaml")
    over_budget = rules.evaluate(Facts(tool="llm", cost_today=100.01, tool_calls_in_run=1))
    assert (over_budget.action, over_budget.rule.id, over_budget.message) == (  # type: ignore[union-attr]
        Action.DENY,
        "budget_control",
        "Daily budget exceeded",
    )
    pii = rules.evaluate(
        Facts(tool="database.query", args={"query": "SELECT * FROM users WHERE email = 'jane@example.com'"})
    )
    assert (pii.action, pii.rule.approvers) == (Action.REQUIRE_APPROVAL, ("security-team",))  # type: ignore[union-attr]
    clean = rules.evaluate(Facts(tool="database.query", args={"query": "SELECT count(*) FROM users"}))
    assert clean.action is Action.ALLOW
    other_tool = rules.evaluate(Facts(tool="search", args={"query": "jane@example.com"}))
    assert other_tool.action is Action.ALLOW
    loop = rules.evaluate(Facts(tool="search", tool_calls_in_run=51))
    assert (loop.action, loop.message) == (Action.TERMINATE, "Possible infinite loop detected")


def test_the_decorator_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("agent_policies.yaml").write_text(AGENT_POLICIES)
    channel = AutoChannel([False])
    set_approval_channel(channel)
    try:

        def handle_request(user_input: str) -> str:
            return f"handled: {user_input}"

        # 2. Add policies to your decorator - that's it!
        @runlog(service="my-agent", policies="./agent_policies.yaml")
        def process_user_request(user_input: str):  # type: ignore[no-untyped-def]
            # Your code stays the same
            # Policies are automatically enforced
            return handle_request(user_input)

        assert process_user_request("what's the weather?") == "handled: what's the weather?"
        with pytest.raises(RuleViolationError, match="approval refused"):
            process_user_request("my card is 4111 1111 1111 1111")
        assert channel.requests[0].rule_id == "sensitive_data"

        @runlog(service="my-agent", policies="./agent_policies.yaml", cost=2.0)
        def expensive(user_input: str) -> str:
            return user_input

        with pytest.raises(RuleViolationError) as info:
            expensive("hi")
        assert info.value.rule_id == "cost_control"
    finally:
        set_approval_channel(None)
    assert os.path.exists("agent_policies.yaml")


def test_loop_detection_terminates_the_run() -> None:
    rules = parse_policies(EXAMPLE_POLICIES, "policies.yaml")

    @runlog(service="looper", name="step", policies=rules)
    def step() -> None:
        pass

    @runlog(service="looper", policies=rules)
    def agent() -> int:
        for count in range(100):
            try:
                step()
            except RunTerminated:
                return count
        return -1

    assert agent() == 51
