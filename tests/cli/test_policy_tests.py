"""`proctor test FILE --cases CASES.yaml`: policy unit tests for CI."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from proctor.cli.main import cli

POLICIES = """
policies:
  - id: cost_control
    when: {cost: {gt: 1.0}}
    action: deny
  - id: night_mail
    when: {tool: mail.send, time.hour: {gte: 22}}
    action: require_approval
    approvers: [ops]
  - id: leak
    when: {output.password: {exists: true}}
    action: deny
"""

CASES = """
cases:
  - name: expensive calls are denied
    facts: {tool: llm, cost: 2.5}
    expect: {action: deny, rule: cost_control}
  - name: mail at night needs approval
    facts: {tool: mail.send, cost: 0, time: {hour: 23, weekday: 4}}
    expect: {action: require_approval, rule: night_mail}
  - name: mail by day goes out
    facts: {tool: mail.send, time: {hour: 10}}
    expect: {action: allow}
  - name: a password in the output is caught after the call
    facts: {tool: db.read, output: {password: x}}
    expect: {action: deny, rule: leak}
"""


def run(tmp_path: Path, policies: str, cases: str) -> tuple[int, str]:
    policy_file, cases_file = tmp_path / "p.yaml", tmp_path / "cases.yaml"
    policy_file.write_text(policies)
    cases_file.write_text(cases)
    result = CliRunner().invoke(cli, ["test", str(policy_file), "--cases", str(cases_file)])
    return result.exit_code, result.stdout


def test_passing_cases_exit_0(tmp_path: Path) -> None:
    code, out = run(tmp_path, POLICIES, CASES)
    assert code == 0, out
    assert out.splitlines() == [
        "PASS  expensive calls are denied",
        "PASS  mail at night needs approval",
        "PASS  mail by day goes out",
        "PASS  a password in the output is caught after the call",
        "4 passed, 0 failed",
    ]


def test_a_failing_case_says_what_was_expected_and_exits_1(tmp_path: Path) -> None:
    cases = "cases:\n  - name: wrong\n    facts: {cost: 5}\n    expect: {action: deny, rule: other}\n"
    code, out = run(tmp_path, POLICIES, cases)
    assert code == 1
    assert (
        f"FAIL  wrong ({tmp_path / 'cases.yaml'}:2:5): expected deny by other, got deny by cost_control"
        in out
    )
    assert out.endswith("0 passed, 1 failed\n")


def test_malformed_cases_are_reported_with_their_place(tmp_path: Path) -> None:
    cases = (
        "cases:\n"
        "  - facts: {cost: 1}\n"
        "    expect: {action: explode}\n"
        "  - facts: {costs: 1}\n"
        "    expect: {action: deny}\n"
    )
    code, out = run(tmp_path, POLICIES, cases)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        f"{tmp_path / 'cases.yaml'}:3:22: expect: unknown action 'explode'; one of allow, log"
    )
    assert lines[1] == f"{tmp_path / 'cases.yaml'}:4:5: facts must be a mapping of known facts; not ['costs']"


def test_expect_may_be_just_the_action(tmp_path: Path) -> None:
    cases = (
        "cases:\n"
        "  - name: cheap calls are allowed\n"
        "    facts: {tool: llm, cost: 0.5}\n"
        "    expect: allow\n"
        "  - name: dear calls are denied\n"
        "    facts: {tool: llm, cost: 5}\n"
        "    expect: deny\n"
    )
    code, out = run(tmp_path, POLICIES, cases)
    assert code == 0, out
    assert out.splitlines() == [
        "PASS  cheap calls are allowed",
        "PASS  dear calls are denied",
        "2 passed, 0 failed",
    ]


def test_a_wrong_expect_lists_what_it_may_be(tmp_path: Path) -> None:
    cases = (
        "cases:\n"
        "  - facts: {cost: 1}\n"
        "    expect: allowed\n"
        "  - facts: {cost: 1}\n"
        "    expect: {action: approve}\n"
        "  - facts: {cost: 1}\n"
        "    expect: {action: deny, rules: cost_control}\n"
        "  - facts: {cost: 1}\n"
    )
    code, out = run(tmp_path, POLICIES, cases)
    assert code == 1
    file = tmp_path / "cases.yaml"
    valid = "allow, log, modify, require_approval, deny, terminate"
    assert out.splitlines() == [
        f"{file}:3:13: expect: unknown action 'allowed'; one of {valid}",
        f"{file}:5:22: expect: unknown action 'approve'; one of {valid}",
        f"{file}:7:28: expect: unknown key 'rules'; write `expect: ACTION` or `expect: {{action: ACTION, "
        "rule: RULE_ID}`",
        f"{file}:8:5: a case needs expect: the action ({valid}), as `expect: deny` or "
        "`expect: {action: deny, rule: RULE_ID}`",
    ]


def test_the_readme_cases_pass_against_the_readme_policies(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    policies = re.search(r"```yaml\n# agent_policies.yaml\n(.*?)```", readme, flags=re.S)
    cases = re.search(r"```yaml\n# cases.yaml\n(.*?)```", readme, flags=re.S)
    assert policies is not None
    assert cases is not None
    code, out = run(tmp_path, policies.group(1), cases.group(1))
    assert code == 0, out
    assert out.endswith("3 passed, 0 failed\n")
