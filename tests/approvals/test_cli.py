"""`proctor approvals list|show|approve|deny` and `proctor approvers add`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from proctor import ApprovalStore, Approvers
from proctor.approvals.approvers import hash_token
from proctor.cli.main import cli
from tests.approvals.helpers import REQUEST, request


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own folder, with no approvers file, token or database named in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("PROCTOR_APPROVERS", "PROCTOR_TOKEN", "PROCTOR_DB"):
        monkeypatch.delenv(name, raising=False)


def proctor(*args: str, token: str | None = None) -> Result:
    env = {"COLUMNS": "250"} if token is None else {"COLUMNS": "250", "PROCTOR_TOKEN": token}
    return CliRunner(env=env).invoke(cli, list(args))


def test_list_and_show(store: ApprovalStore, db: Path) -> None:
    first = store.create(REQUEST)
    second = store.create(request(seq=4, quorum=2, approvers=("finance", "dba")))
    store.decide(second.id, "alice", True, "looks right")
    listed = proctor("approvals", "list", "--db", str(db))
    assert listed.exit_code == 0, listed.output
    assert "2 approval requests, newest first" in listed.output
    assert listed.output.index(second.id) < listed.output.index(first.id)
    assert "1/2" in listed.output
    assert "support / refund-bot" in listed.output
    as_json = json.loads(
        proctor("approvals", "list", "--status", "pending", "--format", "json", "--db", str(db)).output
    )
    assert [item["id"] for item in as_json] == [second.id, first.id]
    assert as_json[0]["approvals"] == 1
    assert as_json[0]["decisions"][0]["comment"] == "looks right"
    assert proctor("approvals", "list", "--status", "denied", "--db", str(db)).output.startswith(
        "no denied approval requests in"
    )

    shown = proctor("approvals", "show", second.id, "--db", str(db))
    assert shown.exit_code == 0, shown.output
    for text in (
        "refund (action 4 of run run-1)",
        "big_refund (Big refunds)",
        "refunds over 100 need the finance team",
        "finance, dba (quorum 2)",
        '"customer": "[REDACTED:email]"',
        "looks right",
    ):
        assert text in shown.output
    detail = json.loads(proctor("approvals", "show", first.id, "--format", "json", "--db", str(db)).output)
    assert detail["args"] == {"amount": 250, "customer": "[REDACTED:email]"}
    assert detail["decisions"] == []


def test_decide_as_someone_without_an_approvers_file(store: ApprovalStore, db: Path) -> None:
    record = store.create(request(quorum=2))
    first = proctor("approvals", "approve", record.id, "--as", "alice", "--db", str(db))
    assert first.exit_code == 0, first.output
    assert "alice approved" in first.output
    assert "1 of 2 approvals, waiting for 1 more from finance" in first.output
    second = proctor("approvals", "approve", record.id, "--as", "bob", "--comment", "ok", "--db", str(db))
    assert f"{record.id} approved by alice, bob" in second.output
    assert store.get(record.id).status == "approved"
    again = proctor("approvals", "deny", record.id, "--as", "carol", "--db", str(db))
    assert again.exit_code == 2
    assert "is already approved; it takes no more decisions" in again.output

    other = store.create(request(seq=4))
    denied = proctor("approvals", "deny", other.id, "--as", "carol", "--comment", "no", "--db", str(db))
    assert f"{other.id} denied by carol" in denied.output
    assert store.decisions(other.id)[0].comment == "no"

    nobody = proctor("approvals", "approve", other.id, "--db", str(db))
    assert nobody.exit_code == 2
    assert "pass --as NAME; or set up approvers: `proctor approvers add NAME --group GROUP`" in nobody.output
    with_token = proctor("approvals", "approve", other.id, "--db", str(db), token="t")
    assert "PROCTOR_TOKEN is set, but there is no approvers file to check it against" in with_token.output


def test_decide_with_a_token_from_the_approvers_file(store: ApprovalStore, db: Path) -> None:
    approvers = Approvers(path="approvers.yaml")
    alice = approvers.add("alice", ["finance"])
    bob = approvers.add("bob", ["dba"])
    record = store.create(REQUEST)
    outside = proctor("approvals", "approve", record.id, "--db", str(db), token=bob)
    assert outside.exit_code == 2
    assert f"bob is not in group finance, so they may not decide approval {record.id}" in outside.output
    wrong = proctor("approvals", "approve", record.id, "--db", str(db), token="guessed")
    assert "PROCTOR_TOKEN is nobody's token in approvers.yaml" in wrong.output
    missing = proctor("approvals", "approve", record.id, "--db", str(db))
    assert "set PROCTOR_TOKEN to your approver token: approvers.yaml lists who may decide" in missing.output
    pretend = proctor("approvals", "approve", record.id, "--as", "alice", "--db", str(db), token=bob)
    assert "--as works only without an approvers file" in pretend.output
    assert store.decisions(record.id) == []
    ok = proctor("approvals", "approve", record.id, "--db", str(db), token=alice)
    assert ok.exit_code == 0, ok.output
    assert store.decisions(record.id)[0].approver == "alice"


def test_the_database_may_be_given_by_url(sqlite_db: Path) -> None:
    with ApprovalStore(sqlite_db) as store:
        record = store.create(REQUEST)
    approved = proctor("approvals", "approve", record.id, "--as", "alice", "--db", f"sqlite:///{sqlite_db}")
    assert approved.exit_code == 0, approved.output
    with ApprovalStore(sqlite_db) as store:
        assert store.get(record.id).status == "approved"


def test_an_approvers_file_elsewhere(store: ApprovalStore, db: Path, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "people.yaml"
    token = Approvers(path=path).add("alice", ["finance"])
    record = store.create(REQUEST)
    result = proctor("approvals", "deny", record.id, "--approvers", str(path), "--db", str(db), token=token)
    assert result.exit_code == 0, result.output
    assert store.get(record.id).status == "denied"


def test_errors_say_what_to_do(store: ApprovalStore, db: Path, tmp_path: Path) -> None:
    missing = proctor("approvals", "list", "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 2
    assert "no proctor database at" in missing.output
    assert not (tmp_path / "none.db").exists()
    unknown = proctor("approvals", "show", "abc", "--db", str(db))
    assert unknown.exit_code == 2
    assert "unknown approval id 'abc'; `proctor approvals list` shows the ids" in unknown.output
    Path("approvers.yaml").write_text("people: {alice: {token: plain}}\n")
    broken = proctor("approvals", "approve", store.create(REQUEST).id, "--db", str(db), token="x")
    assert broken.exit_code == 2
    assert "people.alice.token: expected 'sha256:'" in broken.output


def test_approvers_add_prints_the_token_once_and_keeps_its_hash(tmp_path: Path) -> None:
    added = proctor("approvers", "add", "alice", "--group", "dba", "--group", "oncall")
    assert added.exit_code == 0, added.output
    lines = added.output.splitlines()
    assert lines[0] == "added alice to approvers.yaml (new file), in groups dba, oncall"
    assert lines[1] == "token of alice, shown only now (approvers.yaml keeps its hash):"
    token = lines[2]
    path = tmp_path / "approvers.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["people"]["alice"] == {"groups": ["dba", "oncall"], "token": hash_token(token)}
    assert token not in path.read_text()

    again = proctor("approvers", "add", "alice", "--group", "dba")
    assert again.output.startswith(
        "updated alice in approvers.yaml: groups dba; their previous token no longer"
    )
    assert Approvers.load(path).who(token) is None
    assert Approvers.load(path).who(again.output.splitlines()[-1]) == "alice"
    assert proctor("approvers", "add", "bob").exit_code == 2  # --group is required


def test_an_id_may_be_given_by_a_unique_prefix(store: ApprovalStore, db: Path) -> None:
    # 17 requests: by the pigeonhole principle, two ids share their first hex digit.
    records = [store.create(request(seq=seq)) for seq in range(17)]
    ids = [record.id for record in records]
    shared = next(digit for digit in "0123456789abcdef" if sum(id.startswith(digit) for id in ids) > 1)
    target = records[0]
    prefix = next(
        target.id[:length]
        for length in range(1, len(target.id) + 1)
        if sum(id.startswith(target.id[:length]) for id in ids) == 1
    )
    shown = proctor("approvals", "show", prefix, "--format", "json", "--db", str(db))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["id"] == target.id
    approved = proctor("approvals", "approve", prefix, "--as", "alice", "--db", str(db))
    assert approved.exit_code == 0, approved.output
    assert store.get(target.id).status == "approved"
    denied = proctor("approvals", "deny", records[1].id[:12], "--as", "alice", "--db", str(db))
    assert denied.exit_code == 0, denied.output
    assert store.get(records[1].id).status == "denied"

    ambiguous = proctor("approvals", "show", shared, "--db", str(db))
    assert ambiguous.exit_code == 2
    assert f"approval id prefix {shared!r} is ambiguous" in ambiguous.output
    for id in ids:
        if id.startswith(shared):
            assert id in ambiguous.output  # the candidates, to pick from
    unknown = proctor("approvals", "approve", "zz", "--as", "alice", "--db", str(db))
    assert unknown.exit_code == 2
    assert "unknown approval id 'zz'; `proctor approvals list` shows the ids" in unknown.output


def test_approvers_list_shows_names_and_groups_never_tokens(tmp_path: Path) -> None:
    missing = proctor("approvers", "list")
    assert missing.exit_code == 2
    assert "no approvers file at approvers.yaml; `proctor approvers add NAME --group GROUP`" in missing.output
    proctor("approvers", "add", "alice", "--group", "dba", "--group", "oncall")
    proctor("approvers", "add", "bob", "--group", "finance")
    listed = proctor("approvers", "list")
    assert listed.exit_code == 0, listed.output
    assert "sha256" not in listed.output
    rows = [" ".join(line.strip("│ ").split()) for line in listed.output.splitlines() if "│" in line]
    assert "alice │ dba, oncall │ yes" in rows
    assert "bob │ finance │ yes" in rows
    as_json = json.loads(proctor("approvers", "list", "--format", "json").output)
    assert as_json["people"] == [
        {"name": "alice", "groups": ["dba", "oncall"], "token": True},
        {"name": "bob", "groups": ["finance"], "token": True},
    ]
    assert [group["name"] for group in as_json["groups"]] == ["dba", "finance", "oncall"]
    assert "sha256" not in json.dumps(as_json)


def test_approvers_remove_a_person_or_a_group_of_theirs(tmp_path: Path) -> None:
    added = proctor("approvers", "add", "alice", "--group", "dba", "--group", "oncall")
    token = added.output.splitlines()[-1]
    proctor("approvers", "add", "bob", "--group", "finance")
    left = proctor("approvers", "remove", "alice", "--group", "oncall")
    assert left.exit_code == 0, left.output
    assert left.output.startswith("removed alice from group oncall in approvers.yaml; alice's groups: dba")
    assert Approvers.load("approvers.yaml").who(token) == "alice"
    gone = proctor("approvers", "remove", "alice")
    assert gone.exit_code == 0, gone.output
    assert gone.output.startswith("removed alice from approvers.yaml; their token no longer works")
    assert list(Approvers.load("approvers.yaml").people) == ["bob"]
    unknown = proctor("approvers", "remove", "alice")
    assert unknown.exit_code == 2
    assert "alice is not listed in approvers.yaml; listed: bob" in unknown.output
