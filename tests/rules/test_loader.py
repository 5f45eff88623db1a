"""Loading policy files: every problem reported with file:line:column, nothing evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.errors import ConfigurationError, PolicyConfigError
from proctor.rules import load_policies, parse_policies


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyConfigError) as info:
        parse_policies(text, "p.yaml")
    return info.value.problems


def test_a_valid_file_compiles(tmp_path: Path) -> None:
    path = tmp_path / "agent_policies.yaml"
    path.write_text("policies:\n- id: cost_control\n  when: { cost: { gt: 1.00 } }\n  action: deny\n")
    rules = load_policies(path)
    assert len(rules) == 1
    assert rules.rules[0].rule.id == "cost_control"
    assert rules.source == str(path)


def test_malformed_yaml_points_at_the_problem() -> None:
    [(location, message)] = problems("policies:\n- id: a\n  action: [deny\n")
    assert location == "p.yaml:4:1"
    assert message.startswith("invalid YAML")


def test_tabs_and_bad_indentation() -> None:
    [(location, message)] = problems("policies:\n\t- id: a\n")
    assert location.startswith("p.yaml:2:")
    assert "invalid YAML" in message


def test_duplicate_keys_are_errors_not_overwrites() -> None:
    [(location, message)] = problems("policies:\n- id: a\n  action: deny\n  action: log\n")
    assert location == "p.yaml:4:3"
    assert message == "duplicate key 'action' (first at line 3)"


def test_duplicate_rule_ids() -> None:
    text = "policies:\n- id: a\n  action: deny\n- id: a\n  action: log\n"
    assert problems(text) == [("p.yaml:4:7", "duplicate rule id 'a' (also rule #1)")]


def test_unknown_keys_list_the_expected_ones() -> None:
    [(location, message)] = problems("policies:\n- id: a\n  action: deny\n  colour: red\n")
    assert location == "p.yaml:4:3"
    assert message.startswith("unknown key 'colour'; expected one of: id, name, description, when, action")
    [(_, missing), (location, unknown)] = problems("policy:\n- id: a\n")
    assert missing == "missing required key 'policies' (or a file of only 'budgets' or 'rate_limits')"
    assert location == "p.yaml:1:1"
    assert unknown.startswith("unknown key 'policy'; expected one of: version, defaults, pii, policies")


def test_wrong_types_and_values() -> None:
    text = (
        "version: 2\n"
        "policies:\n"
        "- id: a\n"
        "  action: explode\n"
        "- id: b\n"
        "  action: deny\n"
        "  priority: high\n"
        "- action: log\n"
    )
    assert problems(text) == [
        ("p.yaml:1:10", "version: expected one of 1"),
        ("p.yaml:4:11", "action: expected one of 'log', 'modify', 'require_approval', 'deny' or 'terminate'"),
        ("p.yaml:7:13", "priority: Input should be a valid integer, unable to parse string as an integer"),
        ("p.yaml:8:3", "missing required key 'id'"),
    ]


def test_action_options_must_fit_the_action() -> None:
    [(_, message)] = problems("policies:\n- id: a\n  action: modify\n")
    assert message == "a modify rule needs set, redact or clamp"
    [(_, message)] = problems("policies:\n- id: a\n  action: log\n  approvers: [x]\n")
    assert message == "approvers, timeout and quorum belong to require_approval rules, not log"


def test_unknown_operator_and_fact_in_when() -> None:
    [(location, message)] = problems("policies:\n- id: a\n  when: {cost: {gtt: 1}}\n  action: deny\n")
    assert location == "p.yaml:3:17"
    assert message.startswith("unknown operator 'gtt'; operators are: eq, ne, gt")
    [(location, message)] = problems("policies:\n- id: a\n  when:\n    costt: 1\n  action: deny\n")
    assert location == "p.yaml:4:5"
    assert message.startswith("unknown fact 'costt'; facts are: agent, service, tool")


def test_problems_in_several_rules_are_all_reported() -> None:
    text = (
        "policies:\n"
        "- id: a\n"
        "  when: {cost: {gt: cheap}}\n"
        "  action: deny\n"
        "- id: b\n"
        "  when: {args.q: {len_gt: -1}}\n"
        "  action: deny\n"
    )
    assert problems(text) == [
        ("p.yaml:3:17", "gt takes a number, got the text 'cheap'"),
        ("p.yaml:6:19", "len_gt takes a whole number >= 0, got the number -1"),
    ]


def test_a_backtracking_regex_is_refused_at_load_time() -> None:
    text = 'policies:\n- id: a\n  when: {args.q: {matches: "(a+)+\\\\1"}}\n  action: deny\n'
    [(location, message)] = problems(text)
    assert location == "p.yaml:3:19"
    assert "invalid or unsupported regular expression" in message
    assert "RE2 (linear time)" in message


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    rules = parse_policies(
        {"policies": [{"id": "a", "when": {"args.q": {"matches": "(a+)+$"}}, "action": "deny"}]}
    )
    from proctor.rules import Facts

    verdict = rules.evaluate(Facts(args={"q": "a" * 50_000 + "!"}))
    assert verdict.rule is None


def test_yaml_aliases_and_unsafe_tags_are_refused() -> None:
    [(_, message)] = problems("a: &x [1]\nb: *x\npolicies: []\n")
    assert "anchors and aliases" in message
    [(_, message)] = problems("policies: !!python/object/apply:os.system ['true']\n")
    assert message == "unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    [(_, message)] = problems("policies: []\nx: !!python/name:os.system ''\n")
    assert "could not determine a constructor" in message


def test_not_a_mapping() -> None:
    assert problems("- id: a\n") == [
        (
            "p.yaml:1:1",
            "a policy file is a mapping with a 'policies', 'budgets' or 'rate_limits' list at the top",
        )
    ]
    assert problems("") == [
        (
            "p.yaml:1:1",
            "a policy file is a mapping with a 'policies', 'budgets' or 'rate_limits' list at the top",
        )
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyConfigError, match="cannot read the policy file"):
        load_policies(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyConfigError, match="not UTF-8"):
        load_policies(binary)


def test_policy_config_error_is_a_configuration_error() -> None:
    assert issubclass(PolicyConfigError, ConfigurationError)
    with pytest.raises(ValueError, match=r"policy file has 1 problem:\np\.yaml:1:1"):
        parse_policies("- 1\n", "p.yaml")


def test_pii_kinds_are_checked_at_load_time() -> None:
    text = "policies:\n- id: a\n  when: {input: {contains_pii: [emial]}}\n  action: deny\n"
    [(location, message)] = problems(text)
    assert location == "p.yaml:3:18"  # the contains_pii key
    assert message.startswith("unknown PII kinds ['emial']; kinds are: credit_card, email")
    [(_, message)] = problems("pii: {kinds: [dna]}\npolicies: []\n")
    assert message.startswith("kinds: unknown PII kind 'dna'")


def test_contains_pii_uses_the_files_pii_settings() -> None:
    from proctor.rules import Facts

    only_email = parse_policies(
        "pii: {kinds: [email]}\npolicies:\n- id: a\n  when: {input: {contains_pii: true}}\n  action: deny\n"
    )
    assert only_email.evaluate(Facts(input={"to": "jane@example.com"})).action.value == "deny"
    assert only_email.evaluate(Facts(input={"card": "4111 1111 1111 1111"})).action.value == "allow"


def test_a_bad_patch_target_is_reported_where_it_is() -> None:
    text = "policies:\n- id: a\n  when: {tool: x}\n  action: modify\n  redact:\n  - query\n"
    [(location, message)] = problems(text)
    assert location == "p.yaml:6:3"
    assert message == "redact: cannot patch 'query': a patch target is args.<name>[.<key>...]"
