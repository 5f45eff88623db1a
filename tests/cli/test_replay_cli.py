"""`proctor replay`: new policies against recorded runs, in what-if and replay mode."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from proctor import runlog
from proctor.runs import RunLog
from proctor.runs.default import recording_into
from tests.cli.test_runs_cli import NOW, invoke, record_run, rows, write_runs

NEW_POLICIES = """\
policies:
- id: cost_control
  when: {cost: {gt: 1.0}}
  action: deny
- id: mail_approval
  when: {tool: mail.send}
  action: require_approval
  approvers: [ops]
- id: audit_llm
  when: {tool: llm}
  action: log
"""

LLM_APPROVAL = """\
policies:
- id: llm_review
  when: {tool: llm, cost: {gte: 0.5}}
  action: require_approval
"""

MODIFY_AND_TERMINATE = """\
policies:
- id: cc_ops
  when: {tool: mail.send}
  action: modify
  set: {args.cc: ops@example.com}
- id: stop_big
  when: {cost: {gt: 2.0}}
  action: terminate
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return write_runs(tmp_path / "runs.db")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "new.yaml"
    path.write_text(NEW_POLICIES)
    return path


def replay(db: Path, *args: str) -> Result:
    return invoke("replay", "--db", str(db), *args)


# -- what-if (the default)


def test_what_if_prints_the_summary_and_the_per_rule_table(db: Path, policies: Path) -> None:
    result = replay(db, "--policies", str(policies))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"5 runs with 11 actions re-evaluated (what-if: no code ran) against {policies}" in out
    assert "runs affected: 3 of 5; actions decided differently: 3 of 11" in out
    table = rows(out)
    assert ["cost", "4.3000", "1.3000", "3.0000 saved"] in table
    assert ["success rate", "60.0%", "40.0%", "-20.0 points"] in table
    # rule, denied, approval, modified, terminated, logged, runs
    assert ["audit_llm", "0", "0", "0", "0", "2", "2"] in table
    assert ["cost_control", "2", "0", "0", "0", "0", "2"] in table
    assert ["mail_approval", "0", "1", "0", "0", "0", "1"] in table
    # The runs affected, with what changed.
    assert [
        "run-big",
        "succeeded -> denied",
        "3.0000 -> 0.0000",
        "#1 llm: allow -> deny (cost_control)",
    ] in table
    assert ["run-mail", "succeeded", "0.2000", "#1 llm: allow -> log (audit_llm)"] in table
    assert not any(row[0] in ("run-failed", "run-denied") for row in table)


def test_what_if_as_json_has_the_report_and_every_run(db: Path, policies: Path) -> None:
    result = replay(db, "--policies", str(policies), "--format", "json", "--since", "7d")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = (report["runs"], report["actions"], report["runs_affected"], report["actions_changed"])
    assert counts == (4, 9, 2, 2)
    assert report["cost_before"] == pytest.approx(3.3)
    assert report["cost_after"] == pytest.approx(0.3)
    assert report["cost_saved"] == pytest.approx(3.0)
    assert (report["success_rate_before"], report["success_rate_after"]) == (0.5, 0.25)
    assert report["mode"] == "what-if"
    assert report["policies"] == [str(policies)]
    assert {rule["rule"]: rule["denied"] for rule in report["rules"]} == {
        "audit_llm": 0,
        "cost_control": 2,
        "mail_approval": 0,
    }
    by_run = {run["run_id"]: run for run in report["results"]}
    assert list(by_run) == ["run-mail", "run-big", "run-failed", "run-denied"]  # oldest first
    big = by_run["run-big"]
    before_after = (big["status_before"], big["status_after"], big["cost_before"], big["cost_after"])
    assert before_after == ("succeeded", "denied", 3.0, 0.0)
    assert big["changed"] == [
        {
            "seq": 1,
            "tool": "llm",
            "recorded": "allow",
            "action": "deny",
            "rule": "cost_control",
            "modified_by": [],
        }
    ]
    assert by_run["run-denied"]["changed"] == []
    assert by_run["run-denied"]["identical"] is True
    assert "fail_on" not in report


def test_selection_by_run_filter_and_date_range(db: Path, policies: Path) -> None:
    def selected(*args: str) -> list[str]:
        result = replay(db, "--policies", str(policies), "--format", "json", *args)
        assert result.exit_code == 0, result.output
        return [run["run_id"] for run in json.loads(result.stdout)["results"]]

    assert selected("--run", "run-big") == ["run-big"]
    assert selected("--filter", "status=failed") == ["run-failed"]
    assert selected("--filter", "service=support", "--filter", "status=succeeded", "--since", "7d") == [
        "run-mail",
        "run-big",
    ]
    old = date.fromtimestamp(NOW - 40 * 86_400)
    assert selected("--date-range", f"{old - timedelta(days=1)}:{old + timedelta(days=1)}") == ["run-old"]


def test_no_matching_runs_is_not_an_error(db: Path, policies: Path) -> None:
    result = replay(db, "--policies", str(policies), "--filter", "agent=nobody")
    assert (result.exit_code, result.output) == (0, f"no recorded runs match in {db}\n")
    as_json = replay(
        db, "--policies", str(policies), "--date-range", "2001-01-01:2001-01-02", "--format", "json"
    )
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["runs"] == 0
    assert "no recorded runs match" in as_json.stderr


def test_what_if_in_chunks_gives_the_same_report(
    db: Path, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = replay(db, "--policies", str(policies), "--format", "json")
    monkeypatch.setattr("proctor.cli.replay.WHAT_IF_CHUNK", 2)
    chunked = replay(db, "--policies", str(policies), "--format", "json")
    assert whole.exit_code == chunked.exit_code == 0
    assert json.loads(chunked.stdout) == json.loads(whole.stdout)


# -- --fail-on


def test_fail_on_a_kind_the_policies_newly_apply_exits_1_and_says_where(db: Path, policies: Path) -> None:
    result = replay(db, "--policies", str(policies), "--fail-on", "deny")
    assert result.exit_code == 1
    assert "runs affected: 3 of 5" in result.stdout  # the report is printed all the same
    assert result.stderr == (
        "--fail-on deny: rule cost_control denies 1 action the recording did not, "
        "in 1 run: run-big (action 1)\n"
    )
    as_json = replay(db, "--policies", str(policies), "--fail-on", "deny,terminate", "--format", "json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["fail_on"] == {
        "kinds": ["deny", "terminate"],
        "triggered": [
            {
                "kind": "deny",
                "rule": "cost_control",
                "run_id": "run-big",
                "seq": 1,
                "tool": "llm",
                "recorded": "allow",
            }
        ],
    }


def test_fail_on_kinds_the_policies_do_not_newly_apply_exits_0(db: Path, policies: Path) -> None:
    # mail_approval asks for approval where the recording already did; nothing terminates or modifies.
    result = replay(db, "--policies", str(policies), "--fail-on", "approval,terminate,modify")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    # A deny the recording made too (run-denied) does not count either.
    assert replay(db, "--policies", str(policies), "--run", "run-denied", "--fail-on", "deny").exit_code == 0


def test_fail_on_approval(db: Path, tmp_path: Path) -> None:
    review = tmp_path / "review.yaml"
    review.write_text(LLM_APPROVAL)
    result = replay(db, "--policies", str(review), "--fail-on", "approval", "--since", "7d")
    assert result.exit_code == 1
    assert (
        "rule llm_review requires approval for 3 actions the recording did not, in 2 runs:" in result.stderr
    )
    assert "run-big (action 1, 2)" in result.stderr
    assert "run-denied (action 1)" in result.stderr


def test_fail_on_modify_and_terminate(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text(MODIFY_AND_TERMINATE)
    result = replay(db, "--policies", str(path), "--fail-on", "modify,terminate")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "--fail-on modify: rule cc_ops modifies 1 action the recording did not, in 1 run: "
        "run-mail (action 2)",
        "--fail-on terminate: rule stop_big terminates 2 actions the recording did not, in 2 runs: "
        "run-big (action 1), run-denied (action 1)",
    ]
    table = rows(result.stdout)
    assert ["cc_ops", "0", "0", "1", "0", "0", "1"] in table
    assert ["stop_big", "0", "0", "0", "2", "0", "2"] in table
    assert replay(db, "--policies", str(path), "--fail-on", "deny,approval").exit_code == 0


def test_fail_on_rejects_unknown_kinds(db: Path, policies: Path) -> None:
    result = replay(db, "--policies", str(policies), "--fail-on", "deny,explode")
    assert result.exit_code == 2
    assert "unknown kind 'explode'" in result.output


# -- progress


@pytest.mark.parametrize(("least", "shown"), [(5, True), (6, False)])
def test_a_progress_bar_on_a_terminal_for_many_runs(
    db: Path, policies: Path, monkeypatch: pytest.MonkeyPatch, least: int, shown: bool
) -> None:
    monkeypatch.setattr("proctor.cli.replay.PROGRESS_MIN", least)
    result = invoke(
        "replay",
        "--db",
        str(db),
        "--policies",
        str(policies),
        "--format",
        "json",
        env={"TTY_COMPATIBLE": "1"},
    )
    assert result.exit_code == 0, result.output
    assert ("5/5" in result.stderr) is shown
    assert json.loads(result.stdout)["runs"] == 5  # the bar stays off stdout


# -- usage errors


def test_a_bad_policy_file_shows_each_problem_at_its_place_and_exits_2(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n- id: a\n  when: {cost: {gtt: 1}}\n  action: deny\n- id: b\n  action: nope\n")
    result = replay(db, "--policies", str(bad))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}:3:17: unknown operator 'gtt'")
    assert lines[1].startswith(f"{bad}:6:11: action: expected one of")
    assert "the policies do not load (2 problems)" in lines[2]
    assert result.stdout == ""


def test_a_missing_policy_file_exits_2(db: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = replay(db, "--policies", str(missing))
    assert result.exit_code == 2
    assert f"{missing}:1:1: cannot read the policy file" in result.stderr


def test_policy_files_are_used_together(db: Path, policies: Path, tmp_path: Path) -> None:
    review = tmp_path / "review.yaml"
    review.write_text(LLM_APPROVAL)
    result = replay(db, "--policies", str(policies), "--policies", str(review), "--format", "json")
    assert result.exit_code == 0, result.output
    assert {rule["rule"] for rule in json.loads(result.stdout)["rules"]} >= {"cost_control", "llm_review"}
    clash = tmp_path / "clash.yaml"
    clash.write_text(NEW_POLICIES.replace("audit_llm", "other"))
    duplicate = replay(db, "--policies", str(policies), "--policies", str(clash))
    assert duplicate.exit_code == 2
    assert "cost_control" in duplicate.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "run-big", "--since", "7d"], "--run selects one run"),
        (["--filter", "colour=red"], "unknown filter 'colour'"),
        (["--filter", "status"], "use key=value"),
        (["--date-range", "yesterday"], "not a date range"),
        (["--since", "soon"], "not an age"),
        (["--mode", "dream"], "'dream' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(db: Path, policies: Path, args: list[str], message: str) -> None:
    result = replay(db, "--policies", str(policies), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_unknown_run_and_a_missing_run_log_exit_2(db: Path, policies: Path, tmp_path: Path) -> None:
    unknown = replay(db, "--policies", str(policies), "--run", "run-nope")
    assert unknown.exit_code == 2
    assert "no run 'run-nope'" in unknown.output
    missing = tmp_path / "missing.db"
    result = replay(missing, "--policies", str(policies))
    assert result.exit_code == 2
    assert f"no run log at {missing}" in result.output
    assert not missing.exists()
    assert replay(db).exit_code == 2  # --policies is required


# -- replay mode: the recorded code runs again


@runlog(service="kb", agent="helper", name="kb.lookup", cost=0.5)
def lookup(topic: str) -> str:
    return f"notes on {topic}"


@runlog(service="kb", agent="helper", name="kb.answer")
def answer(question: str) -> str:
    print(f"answering {question}")  # replayed code that prints must not spoil --format json
    return lookup(question).upper()


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A run log with two real runs of ``answer``."""
    path = tmp_path / "recorded.db"
    log = RunLog(path, pii=False)
    try:
        with recording_into(log):
            assert answer("tides") == "NOTES ON TIDES"
            assert answer("moons") == "NOTES ON MOONS"
    finally:
        log.close()
    return path


def test_replay_mode_runs_the_code_again_under_the_new_policies(recorded: Path, tmp_path: Path) -> None:
    deny = tmp_path / "deny.yaml"
    deny.write_text("policies:\n- id: no_lookups\n  when: {tool: kb.lookup}\n  action: deny\n")
    result = replay(
        recorded, "--policies", str(deny), "--mode", "replay", "--format", "json", "--fail-on", "deny"
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["mode"], report["runs"], report["runs_affected"]) == ("replay", 2, 2)
    assert report["cost_before"] == pytest.approx(1.0)
    assert report["cost_after"] == pytest.approx(0.0)
    assert [rule["rule"] for rule in report["rules"]] == ["no_lookups"]
    for run in report["results"]:
        assert (run["status_before"], run["status_after"]) == ("succeeded", "denied")
        (change,) = run["changed"]
        assert (change["seq"], change["tool"], change["action"], change["rule"]) == (
            1,
            "kb.lookup",
            "deny",
            "no_lookups",
        )
    assert "rule no_lookups denies 2 actions the recording did not, in 2 runs" in result.stderr
    assert "answering tides" in result.stderr


def test_replay_mode_under_the_same_policies_changes_nothing(recorded: Path, tmp_path: Path) -> None:
    allow = tmp_path / "allow.yaml"
    allow.write_text("policies: []\n")
    result = replay(recorded, "--policies", str(allow), "--mode", "replay", "--fail-on", "deny,terminate")
    assert result.exit_code == 0, result.output
    assert "2 runs with 4 actions replayed (their code ran again)" in result.stdout
    assert "runs affected: 0 of 2" in result.stdout
    assert "No rule denies" in result.stdout


def test_replay_mode_says_what_to_do_when_the_code_cannot_be_imported(tmp_path: Path, policies: Path) -> None:
    path = tmp_path / "runs.db"
    with RunLog(path, pii=False) as log:
        record_run(log, "run-gone", started=NOW, output="ok")  # made by app.agents:answer: not importable
    result = replay(path, "--policies", str(policies), "--mode", "replay")
    assert result.exit_code == 2
    assert "cannot replay run run-gone" in result.output
    assert "--mode what-if" in result.output
    what_if = replay(path, "--policies", str(policies))
    assert what_if.exit_code == 0, what_if.output


# -- help


def test_help_explains_modes_selection_and_exit_codes() -> None:
    result = invoke("replay", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for phrase in (
        "--policies FILE",
        "--run RUN_ID",
        "--since AGE",
        "--date-range A:B",
        "--filter KEY=VALUE",
        "what-if re-evaluates",
        "runs no code",
        "replay imports each run's function",
        "--fail-on KINDS",
        "deny,terminate,approval,modify",
        "Exit status",
        "1 --fail-on names",
        "2 a usage error",
        "PROCTOR_DB",
    ):
        assert phrase in text, phrase
