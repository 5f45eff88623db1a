"""How matching rules combine, and the index by tool."""

from __future__ import annotations

from typing import Any

from proctor.decision import Action
from proctor.rules import Facts, parse_policies
from proctor.rules.facts import call_facts


def rules(*policies: dict[str, Any], **top: Any) -> Any:
    return parse_policies({"policies": list(policies), **top})


def test_nothing_matches_gives_the_default() -> None:
    assert rules({"id": "a", "when": {"agent": "x"}, "action": "deny"}).evaluate(Facts(agent="y")).action is (
        Action.ALLOW
    )
    strict = rules({"id": "a", "when": {"agent": "x"}, "action": "log"}, defaults={"action": "deny"})
    verdict = strict.evaluate(Facts(agent="y"))
    assert (verdict.action, verdict.rule, verdict.message) == (Action.DENY, None, "")


def test_the_strictest_action_wins() -> None:
    ruleset = rules(
        {"id": "log", "when": {"cost": {"gt": 0}}, "action": "log"},
        {"id": "approve", "when": {"cost": {"gt": 1}}, "action": "require_approval", "approvers": ["ops"]},
        {"id": "stop", "when": {"cost": {"gt": 100}}, "action": "terminate", "message": "runaway"},
        {"id": "deny", "when": {"cost": {"gt": 10}}, "action": "deny"},
    )
    assert ruleset.evaluate(Facts(cost=0.5)).rule.id == "log"
    assert ruleset.evaluate(Facts(cost=5)).rule.id == "approve"
    verdict = ruleset.evaluate(Facts(cost=50))
    assert (verdict.action, verdict.rule.id) == (Action.DENY, "deny")
    assert [rule.id for rule in verdict.matched] == ["deny", "approve", "log"]
    verdict = ruleset.evaluate(Facts(cost=500))
    assert (verdict.action, verdict.message) == (Action.TERMINATE, "runaway")


def test_ties_go_to_priority_then_file_order() -> None:
    ruleset = rules(
        {"id": "first", "when": {"agent": "a"}, "action": "deny", "message": "first"},
        {"id": "second", "when": {"agent": "a"}, "action": "deny", "priority": 5},
        {"id": "third", "when": {"agent": "a"}, "action": "deny", "priority": 5},
    )
    assert ruleset.evaluate(Facts(agent="a")).rule.id == "second"


def test_modify_patches_apply_in_priority_then_file_order() -> None:
    ruleset = rules(
        {"id": "cap", "when": {"tool": "search"}, "action": "modify", "clamp": {"args.limit": {"max": 100}}},
        {
            "id": "hide",
            "when": {"tool": "search"},
            "action": "modify",
            "redact": ["args.query"],
            "priority": 1,
        },
        {"id": "note", "when": {"tool": "search"}, "action": "log"},
    )
    verdict = ruleset.evaluate(Facts(tool="search"))
    assert verdict.action is Action.MODIFY
    assert [rule.id for rule in verdict.patches] == ["hide", "cap"]


def test_disabled_rules_do_nothing() -> None:
    ruleset = rules({"id": "off", "action": "deny", "enabled": False})
    assert len(ruleset) == 0
    assert ruleset.evaluate(Facts()).action is Action.ALLOW


def test_rules_are_indexed_by_literal_tool() -> None:
    ruleset = rules(
        {"id": "db", "when": {"tool": "db.query"}, "action": "log"},
        {"id": "mail", "when": {"tool": ["mail.send", "mail.draft"]}, "action": "deny"},
        {"id": "glob", "when": {"tool": "db.*"}, "action": "log"},
        {"id": "all", "when": {"cost": {"gt": 5}}, "action": "deny"},
    )
    assert [c.rule.id for c in ruleset.candidates("db.query")] == ["db", "glob", "all"]
    assert [c.rule.id for c in ruleset.candidates("mail.draft")] == ["mail", "glob", "all"]
    assert [c.rule.id for c in ruleset.candidates("other")] == ["glob", "all"]
    assert ruleset.evaluate(Facts(tool="mail.send")).rule.id == "mail"
    assert ruleset.evaluate(Facts(tool="db.query", cost=9)).rule.id == "all"
    assert ruleset.evaluate(Facts(tool="db.query")).action is Action.LOG


def test_the_seed_example_file() -> None:
    seed = """
policies:
- id: budget_control
  name: "Daily Budget Limit"
  when:
    cost_today: { gt: 100.00 }
  action: deny
  message: "Daily budget exceeded"
- id: loop_detection
  name: "Infinite Loop Prevention"
  when:
    tool_calls_in_run: { gt: 50 }
  action: terminate
  message: "Possible infinite loop detected"
"""
    ruleset = parse_policies(seed, "agent_policies.yaml")
    verdict = ruleset.evaluate(Facts(cost_today=100.5, tool_calls_in_run=3))
    assert (verdict.action, verdict.message) == (Action.DENY, "Daily budget exceeded")
    assert ruleset.evaluate(Facts(cost_today=99.0, tool_calls_in_run=50)).action is Action.ALLOW
    verdict = ruleset.evaluate(Facts(cost_today=1.0, tool_calls_in_run=51))
    assert (verdict.action, verdict.message) == (Action.TERMINATE, "Possible infinite loop detected")


def test_call_facts_builds_what_the_keywords_build() -> None:
    values = {
        "agent": "a",
        "service": "s",
        "tool": "t",
        "args": {"x": 1},
        "input": {"q": "?"},
        "cost": 0.5,
        "cost_run": 0.25,
        "tool_calls_in_run": 3,
        "same_call_in_run": 1,
        "labels": {"pii": True},
    }
    fast = call_facts(*values.values())
    slow = Facts(**values)
    assert {name: getattr(fast, name) for name in Facts.__slots__} == {
        name: getattr(slow, name) for name in Facts.__slots__
    }
