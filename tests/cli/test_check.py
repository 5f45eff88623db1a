from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from proctor.cli.main import cli


def test_check_reports_each_problem_with_its_place_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("policies:\n- id: cost_control\n  when: {cost: {gt: 1.0}}\n  action: deny\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n- id: a\n  when: {cost: {gtt: 1}}\n  action: deny\n- id: a\n  action: nope\n")
    result = CliRunner().invoke(cli, ["check", str(good), str(bad)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{good}: ok, 1 rule"
    assert lines[1].startswith(f"{bad}:3:17: unknown operator 'gtt'")
    assert lines[2] == f"{bad}:5:7: duplicate rule id 'a' (also rule #1)"
    assert lines[3].startswith(f"{bad}:6:11: action: expected one of")
    assert "1 of 2 files invalid" in result.stderr


def test_check_exits_0_when_every_file_is_valid(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("policies: []\n")
    result = CliRunner().invoke(cli, ["check", str(good)])
    assert (result.exit_code, result.stdout) == (0, f"{good}: ok, 0 rules\n")
    assert CliRunner().invoke(cli, ["check"]).exit_code == 2  # a file is required


def test_check_reports_every_unknown_fact_of_a_when(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "policies:\n"
        "- id: a\n"
        "  when: {toll: x, cost: {gt: 1}, agnet: bot}\n"
        "  action: deny\n"
        "- id: b\n"
        "  when:\n"
        "    any:\n"
        "      - {sevice: web}\n"
        "      - not: {cost_todya: {gt: 5, lt: 9}, args.x: {gtt: 1}}\n"
        "  action: deny\n"
    )
    result = CliRunner().invoke(cli, ["check", str(bad)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.partition(": ")[0] for line in lines] == [
        f"{bad}:3:10",
        f"{bad}:3:34",
        f"{bad}:8:10",
        f"{bad}:9:15",
        f"{bad}:9:52",
    ]
    assert "'toll'" in lines[0]
    assert "'agnet'" in lines[1]
    assert "'sevice'" in lines[2]
    assert "'cost_todya'" in lines[3]
    assert "unknown operator 'gtt'" in lines[4]


def test_check_explains_what_a_spend_rule_caps(tmp_path: Path) -> None:
    rules = tmp_path / "spend.yaml"
    rules.write_text(
        "policies:\n"
        "- id: daily\n  when: {cost_today: {gt: 100}}\n  action: deny\n"
        "- id: hard\n  when: {any: [{cost_today_with_call: {gt: 100}}, {cost_run: {gt: 5}}]}\n"
        "  action: deny\n"
        "- id: watch\n  when: {cost_today: {gt: 50}}\n  action: log\n"
    )
    result = CliRunner().invoke(cli, ["check", str(rules)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{rules}: ok, 3 rules"
    assert lines[1].startswith("  note: rule 'daily' reads cost_today: the spend before the call")
    assert lines[1].endswith(
        "cost_today_with_call (the spend with this call's estimate) makes the limit a hard cap"
    )
    assert lines[2].startswith("  note: rule 'hard' reads cost_run:")  # its cost_today_with_call is a cap
    assert len(lines) == 3  # a log rule caps nothing: no note
