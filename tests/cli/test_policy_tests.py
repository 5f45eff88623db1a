"""`proctor test FILE --cases CASES.yaml`: policy unit tests for CI."""

from __future__ import annotations

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
    assert lines[0].startswith(f"{tmp_path / 'cases.yaml'}:2:5: expect needs action (one of allow, log")
    assert lines[1] == f"{tmp_path / 'cases.yaml'}:4:5: facts must be a mapping of known facts; not ['costs']"
