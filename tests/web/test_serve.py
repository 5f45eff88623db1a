"""`proctor serve`: refuses to start without approvers, binds to loopback, reports bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette

from proctor.cli.main import cli
from tests.web.conftest import People


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `proctor serve` would hand to uvicorn, instead of serving."""
    calls: dict[str, Any] = {}

    def run(app: Any, **options: Any) -> None:
        calls.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", run)
    return calls


def test_without_an_approvers_file_it_refuses_and_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: dict[str, Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROCTOR_APPROVERS", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "p.db")])
    assert result.exit_code == 2
    assert (
        "the console signs people in with the tokens of an approvers file, and none was found"
        in result.output
    )
    assert "proctor approvers add NAME --group GROUP" in result.output
    missing = CliRunner().invoke(cli, ["serve", "--approvers", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert f"there is no file {tmp_path / 'nope.yaml'}" in missing.output
    assert served == {}


def test_it_serves_on_loopback_by_default(
    tmp_path: Path, people: People, policy_file: Path, served: dict[str, Any]
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--db",
            str(tmp_path / "p.db"),
            "--approvers",
            str(people.path),
            "--policies",
            str(policy_file),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8470)
    assert isinstance(served["app"], Starlette)
    assert "proctor console on http://127.0.0.1:8470" in result.output
    assert "warning" not in result.output


def test_it_finds_the_approvers_file_like_the_cli_does(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch, served: dict[str, Any]
) -> None:
    monkeypatch.setenv("PROCTOR_APPROVERS", str(people.path))
    monkeypatch.setenv("PROCTOR_DB", str(tmp_path / "p.db"))
    result = CliRunner().invoke(cli, ["serve", "--port", "9000"])
    assert result.exit_code == 0, result.output
    assert f"approvers {people.path}" in result.output
    assert "PROCTOR_CONSOLE_URL=http://127.0.0.1:9000" in result.output  # so notifications link here


def test_the_database_may_be_given_by_url(tmp_path: Path, people: People, served: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    result = CliRunner().invoke(cli, ["serve", "--db", url, "--approvers", str(people.path)])
    assert result.exit_code == 0, result.output
    assert f"(database {tmp_path / 'p.db'}, approvers" in result.output
    assert (tmp_path / "p.db").is_file()
    refused = CliRunner().invoke(
        cli, ["serve", "--db", "mysql://db/proctor", "--approvers", str(people.path)]
    )
    assert refused.exit_code == 2
    assert "no database backend serves 'mysql://db/proctor'" in refused.output


def test_another_host_is_served_with_a_warning(
    tmp_path: Path, people: People, served: dict[str, Any]
) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "p.db"), "--approvers", str(people.path)]
    )
    assert result.exit_code == 0
    assert served["host"] == "0.0.0.0"
    assert "other machines can reach the console; put it behind HTTPS" in result.output


def test_invalid_files_are_reported_before_serving(
    tmp_path: Path, people: People, served: dict[str, Any]
) -> None:
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("policies:\n  - id: x\n    action: explode\n")
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--db",
            str(tmp_path / "p.db"),
            "--approvers",
            str(people.path),
            "--policies",
            str(bad_policy),
        ],
    )
    assert result.exit_code == 2
    assert f"{bad_policy}:3:" in result.output
    bad_people = tmp_path / "people.yaml"
    bad_people.write_text("people: [alice]\n")
    result = CliRunner().invoke(
        cli, ["serve", "--db", str(tmp_path / "p.db"), "--approvers", str(bad_people)]
    )
    assert result.exit_code == 2
    assert "is not a valid approvers file" in result.output
    assert served == {}
