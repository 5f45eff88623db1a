"""`proctor runs list|show|prune` on run logs written with RunLog's write API."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from proctor.approvals.base import ApprovalRequest
from proctor.approvals.store import ApprovalStore
from proctor.cli.main import cli
from proctor.runs import RunLog
from proctor.runs.describe import seconds
from proctor.runs.log import NO_RESULT

NOW = time.time()
HOUR = 3600.0
DAY = 86_400.0
DENY_COST = {"phase": "before", "rule": "cost_control", "action": "deny", "decided": True}


def record_run(
    log: RunLog,
    run_id: str,
    *,
    started: float,
    status: str = "succeeded",
    service: str = "support",
    agent: str = "bot",
    tool: str = "answer",
    input: Any = None,
    output: Any = None,
    error: BaseException | None = None,
    actions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    decisions: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> None:
    """One run and its actions (each a dict of ``RunLog.action`` fields; seq, service, agent filled in).

    The run's cost is the sum of its actions' actual costs; each action begins a second after the last.
    """
    log.run_started(
        run_id,
        service=service,
        agent=agent,
        tool=tool,
        function="app.agents:answer",
        started=started,
        input=input if input is not None else {"question": f"question of {run_id}"},
    )
    cost = 0.0
    for seq, fields in enumerate(actions, start=1):
        values: dict[str, Any] = {
            "service": service,
            "agent": agent,
            "started": started + seq,
            "duration": 0.25,
            "status": "succeeded",
            "args": {},
        }
        values.update(fields)
        cost += values.get("actual_cost") or 0.0
        log.action(run_id, seq, **values)
    ended = started + len(actions) + 1.5
    log.run_finished(
        run_id,
        status=status,
        ended=ended,
        output=output if status == "succeeded" else NO_RESULT,
        error=error,
        cost=cost,
        decisions=decisions,
    )


def write_runs(path: Path) -> Path:
    """A run log of five runs: recent ones of two services, one refused by a rule, one 40 days old."""
    with RunLog(path, pii=False) as log:
        record_run(
            log,
            "run-old",
            started=NOW - 40 * DAY,
            output="long ago",
            actions=[{"tool": "llm", "estimated_cost": 1.0, "actual_cost": 1.0}],
        )
        record_run(
            log,
            "run-mail",
            started=NOW - 2 * HOUR,
            output="sent",
            actions=[
                {"tool": "llm", "estimated_cost": 0.2, "actual_cost": 0.2, "args": {"prompt": "write"}},
                {
                    "tool": "mail.send",
                    "estimated_cost": 0.0,
                    "actual_cost": 0.0,
                    "args": {"to": "ops@example.com", "body": "x" * 200},
                    "approval": {
                        "rule": "mail_check",
                        "approved": True,
                        "approver": "alice",
                        "comment": None,
                    },
                    "decisions": [
                        {
                            "phase": "before",
                            "rule": "mail_check",
                            "action": "require_approval",
                            "decided": True,
                        },
                        {"phase": "before", "rule": "audit", "action": "log", "decided": False},
                    ],
                },
            ],
        )
        record_run(
            log,
            "run-big",
            started=NOW - 1 * HOUR,
            output="a long answer",
            actions=[
                {"tool": "llm", "estimated_cost": 2.5, "actual_cost": 2.5},
                {"tool": "llm", "estimated_cost": 0.5, "actual_cost": 0.5},
            ],
        )
        record_run(
            log,
            "run-failed",
            started=NOW - 0.5 * HOUR,
            status="failed",
            service="billing",
            agent="clerk",
            error=KeyError("invoice 42"),
            actions=[
                {
                    "tool": "db.query",
                    "estimated_cost": 0.1,
                    "actual_cost": 0.1,
                    "status": "failed",
                    "error": KeyError("invoice 42"),
                }
            ],
        )
        record_run(
            log,
            "run-denied",
            started=NOW - 0.2 * HOUR,
            status="denied",
            error=RuntimeError("rule 'cost_control' denied llm"),
            actions=[
                {
                    "tool": "llm",
                    "estimated_cost": 5.0,
                    "status": "denied",
                    "duration": None,
                    "decisions": [DENY_COST],
                }
            ],
        )
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return write_runs(tmp_path / "runs.db")


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", **(env or {})}, input=input)


def rows(output: str) -> list[list[str]]:
    """The cells of a rich table's body rows."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if line.startswith("│") and not line.startswith("│ run id")
    ]


# -- runs list


def test_list_shows_runs_newest_first_with_actions_cost_and_status(db: Path) -> None:
    result = invoke("runs", "list", "--db", str(db))
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert [row[0] for row in table] == ["run-denied", "run-failed", "run-big", "run-mail", "run-old"]
    big = table[2]
    assert big[2:] == ["support", "bot", "answer", "succeeded", "2", "3.0000", "3.50 s"]
    assert table[1][2:6] == ["billing", "clerk", "answer", "failed"]
    assert table[0][5:8] == ["denied", "1", "0.0000"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", big[1])
    assert "5 runs, newest first" in result.output


def test_list_filters_by_service_agent_status_and_age(db: Path) -> None:
    def listed(*options: str) -> list[str]:
        result = invoke("runs", "list", "--db", str(db), *options)
        assert result.exit_code == 0, result.output
        return [row[0] for row in rows(result.output)]

    assert listed("--service", "billing") == ["run-failed"]
    assert listed("--agent", "bot", "--status", "succeeded") == ["run-big", "run-mail", "run-old"]
    assert listed("--since", "7d") == ["run-denied", "run-failed", "run-big", "run-mail"]
    assert listed("--since", "45m") == ["run-denied", "run-failed"]
    assert listed("--limit", "2") == ["run-denied", "run-failed"]
    limited = invoke("runs", "list", "--db", str(db), "--limit", "2")
    assert "--limit shows more" in limited.output


def test_list_as_json(db: Path) -> None:
    result = invoke("runs", "list", "--db", str(db), "--format", "json", "--since", "7d")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [run["run_id"] for run in listed] == ["run-denied", "run-failed", "run-big", "run-mail"]
    big = listed[2]
    assert (big["actions"], big["cost"], big["status"]) == (2, 3.0, "succeeded")
    assert big["function"] == "app.agents:answer"
    assert big["duration"] == pytest.approx(3.5)
    assert big["started"].startswith(time.strftime("%Y", time.localtime(NOW - HOUR)))


def test_list_says_when_nothing_matches_and_rejects_bad_options(db: Path) -> None:
    result = invoke("runs", "list", "--db", str(db), "--service", "nobody")
    assert (result.exit_code, result.output) == (0, f"no recorded runs match in {db}\n")
    bad_age = invoke("runs", "list", "--db", str(db), "--since", "7 days")
    assert bad_age.exit_code == 2
    assert "not an age: '7 days'" in bad_age.output
    bad_status = invoke("runs", "list", "--db", str(db), "--status", "fine")
    assert bad_status.exit_code == 2


# -- a missing or unreadable run log


@pytest.mark.parametrize(
    "command",
    [["runs", "list"], ["runs", "show", "run-big"], ["runs", "prune", "--older-than", "1d", "--yes"]],
)
def test_a_missing_run_log_is_an_error_that_says_where_it_looked(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "none" / "runs.db"
    result = invoke(*command, "--db", str(missing))
    assert result.exit_code == 2
    assert f"no run log at {missing} (given by --db)" in result.output
    assert "@runlog" in result.output
    assert "PROCTOR_DB" in result.output
    assert not missing.exists()
    assert not missing.parent.exists()


def test_the_run_log_comes_from_proctor_db_else_the_default(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = invoke("runs", "list", env={"PROCTOR_DB": str(db)})
    assert from_env.exit_code == 0, from_env.output
    assert "run-big" in from_env.output
    missing = tmp_path / "elsewhere.db"
    result = invoke("runs", "list", env={"PROCTOR_DB": str(missing)})
    assert result.exit_code == 2
    assert f"no run log at {missing} (from $PROCTOR_DB)" in result.output
    monkeypatch.chdir(tmp_path)
    default = CliRunner().invoke(cli, ["runs", "list"], env={"PROCTOR_DB": None})
    assert default.exit_code == 2
    assert "no run log at .proctor/runs.db (the default" in default.output
    assert not (tmp_path / ".proctor").exists()


def test_the_run_log_may_be_given_by_url(tmp_path: Path, db: Path) -> None:
    by_option = invoke("runs", "list", "--db", f"sqlite:///{db}")
    assert by_option.exit_code == 0, by_option.output
    assert "run-big" in by_option.output
    from_env = invoke("runs", "show", "run-big", env={"PROCTOR_DB": f"sqlite:///{db}"})
    assert from_env.exit_code == 0, from_env.output
    missing = invoke("runs", "list", "--db", f"sqlite:///{tmp_path}/none.db")
    assert missing.exit_code == 2
    assert f"no run log at {tmp_path}/none.db (given by --db): the file does not exist." in missing.output
    unknown = invoke("runs", "list", "--db", "mysql://db.example.com/proctor")
    assert unknown.exit_code == 2
    assert (
        "no database backend serves 'mysql://db.example.com/proctor'; known schemes: postgres://, "
        "postgresql://, sqlite://" in unknown.output
    )


def test_a_folder_is_not_a_run_log(tmp_path: Path) -> None:
    result = invoke("runs", "list", "--db", str(tmp_path))
    assert result.exit_code == 2
    assert f"no run log at {tmp_path} (given by --db): the file is a folder, not a database." in result.output


def test_a_file_that_is_not_a_run_log_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "notes.db"
    text = "not a database, just text " * 100
    other.write_text(text)
    result = invoke("runs", "list", "--db", str(other))
    assert result.exit_code == 2
    assert f"cannot open the run log {other}: file is not a database" in result.output
    assert other.read_text() == text


# -- runs show


def test_show_prints_the_header_and_the_action_timeline(db: Path) -> None:
    result = invoke("runs", "show", "run-mail", "--db", str(db))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "run-mail" in out
    assert "support / bot" in out
    assert "answer (app.agents:answer)" in out
    assert '{"question":"question of run-mail"}' in out
    assert '"sent"' in out
    assert "0.2000 in all" in out
    table = rows(out)
    assert [row[:4] for row in table] == [
        ["1", "+1.00 s", "llm", "succeeded"],
        ["2", "+2.00 s", "mail.send", "succeeded"],
    ]
    mail = table[1]
    assert mail[4] == "mail_check:require_approval*, audit:log"
    assert mail[5] == "approved by alice"
    assert mail[6] == "0.0000 / 0.0000"
    assert mail[7] == "250 ms"
    assert mail[8].startswith('{"to":"ops@example.com","body":"xxx')
    assert mail[8].endswith("…")
    assert len(mail[8]) == 60
    assert "* the decision that took effect" in out


def test_show_a_failed_and_a_denied_run(db: Path) -> None:
    failed = invoke("runs", "show", "run-failed", "--db", str(db))
    assert failed.exit_code == 0, failed.output
    assert "KeyError: 'invoice 42'" in failed.output
    denied = invoke("runs", "show", "run-denied", "--db", str(db))
    assert denied.exit_code == 0, denied.output
    (row,) = rows(denied.output)
    assert row[2:5] == ["llm", "denied", "cost_control:deny*"]
    assert row[6:8] == ["5.0000 / -", "did not run"]


def test_show_as_json_has_everything_in_full(db: Path) -> None:
    result = invoke("runs", "show", "run-mail", "--db", str(db), "--format", "json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["run"]["run_id"] == "run-mail"
    assert shown["run"]["input"] == {"question": "question of run-mail"}
    assert shown["run"]["output"] == "sent"
    assert [action["seq"] for action in shown["actions"]] == [1, 2]
    mail = shown["actions"][1]
    assert mail["args"] == {"to": "ops@example.com", "body": "x" * 200}
    assert mail["offset"] == pytest.approx(2.0)
    assert mail["decided"] == {"action": "require_approval", "rule": "mail_check"}
    assert mail["approval"]["approver"] == "alice"


def test_show_an_unknown_run_says_how_to_find_one(db: Path) -> None:
    result = invoke("runs", "show", "run-nope", "--db", str(db))
    assert result.exit_code == 2
    assert "no run 'run-nope'" in result.output
    assert "proctor runs list" in result.output


def test_show_notes_redacted_runs(tmp_path: Path) -> None:
    path = tmp_path / "pii.db"
    with RunLog(path) as log:  # the built-in detector redacts the e-mail address
        record_run(log, "run-pii", started=NOW, input={"to": "jane.doe@example.com"}, output="ok")
    result = invoke("runs", "show", "run-pii", "--db", str(path))
    assert result.exit_code == 0, result.output
    assert "jane.doe@example.com" not in result.output
    assert "redacted before it was stored" in result.output


# -- runs prune


def test_prune_with_yes_deletes_old_runs_and_says_how_many(db: Path) -> None:
    result = invoke("runs", "prune", "--older-than", "30d", "--yes", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 1 run started before ")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (4,)
        assert connection.execute("SELECT count(*) FROM actions WHERE run_id = 'run-old'").fetchone() == (0,)
    again = invoke("runs", "prune", "--older-than", "30d", "--yes", "--db", str(db))
    assert again.exit_code == 0
    assert "nothing deleted" in again.output


def test_prune_without_yes_needs_a_terminal(db: Path) -> None:
    result = invoke("runs", "prune", "--older-than", "90m", "--db", str(db))
    assert result.exit_code == 2
    assert "this would delete 2 runs" in result.output
    assert "pass --yes" in result.output
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (5,)


@pytest.mark.parametrize(("answer", "left"), [("y\n", 3), ("n\n", 5), ("\n", 5)])
def test_prune_asks_on_a_terminal(db: Path, monkeypatch: pytest.MonkeyPatch, answer: str, left: int) -> None:
    monkeypatch.setattr("proctor.cli.runs.stdin_is_terminal", lambda: True)
    result = invoke("runs", "prune", "--older-than", "90m", "--db", str(db), input=answer)
    assert result.exit_code == 0, result.output
    assert "Delete 2 runs started before" in result.output
    assert ("deleted 2 runs" in result.output) is (left == 3)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (left,)


def test_prune_needs_an_age(db: Path) -> None:
    assert invoke("runs", "prune", "--db", str(db), "--yes").exit_code == 2
    result = invoke("runs", "prune", "--older-than", "-3d", "--db", str(db), "--yes")
    assert result.exit_code == 2
    assert "not an age" in result.output


# -- help


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["runs"], ["list", "show", "prune", "@runlog", "PROCTOR_DB"]),
        (["runs", "list"], ["newest first", "--since AGE", "7d", "--limit", "--format", "PROCTOR_DB"]),
        (["runs", "show"], ["RUN_ID", "timeline", "took effect", "--format json"]),
        (["runs", "prune"], ["--older-than AGE", "--yes", "asks first", "not a"]),
    ],
)
def test_help_explains_each_command(command: list[str], expected: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for phrase in expected:
        assert phrase in text, phrase


def test_show_says_how_long_an_action_waited_for_approval(db: Path) -> None:
    # run-mail's mail.send (asked at +2 s) waited in the durable queue until alice approved it.
    with ApprovalStore(db, pii=False) as store:
        asked = store.create(
            ApprovalRequest(
                rule_id="mail_check",
                message="mail needs a look",
                approvers=(),
                timeout=DAY,
                service="support",
                agent="bot",
                tool="mail.send",
                run_id="run-mail",
                seq=2,
            )
        )
        decided = store.decide(asked.id, "alice", True)
    assert decided.decided is not None
    with RunLog(db, pii=False) as log:
        run = log.run("run-mail")
        assert run is not None
        action = log.actions("run-mail")[1]
    waited = decided.decided - action.started
    result = invoke("runs", "show", "run-mail", "--db", str(db), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    mail = rows(result.output)[1]
    assert mail[1] == f"+2.00 s, ran at +{seconds(decided.decided - run.started)}"
    assert mail[5] == f"approved by alice; waited {seconds(waited)} for approval"
    assert mail[7] == "250 ms"  # how long it ran, after the wait
    shown = json.loads(invoke("runs", "show", "run-mail", "--db", str(db), "--format", "json").stdout)
    assert shown["actions"][1]["approval_wait"] == pytest.approx(waited)
    assert shown["actions"][0]["approval_wait"] is None
