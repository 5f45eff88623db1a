"""Approvers: the approvers.yaml file, tokens kept only as hashes, and who may decide."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from proctor import Approvers, ConfigurationError
from proctor.approvals import approvers_path
from proctor.approvals.approvers import hash_token

FILE = """\
groups:
  dba: {webhook: "http://127.0.0.1:9000/hook"}
  oncall:
people:
  alice: {groups: [dba, oncall], token: "%s"}
  bob: {groups: [oncall]}
"""


def test_load_who_and_may_decide(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text(FILE % hash_token("alice-secret"))
    approvers = Approvers.load(path)
    assert approvers.who("alice-secret") == "alice"
    assert approvers.who("guess") is None
    assert approvers.webhook("dba") == "http://127.0.0.1:9000/hook"
    assert approvers.webhook("oncall") is None
    assert approvers.groups == ["dba", "oncall"]
    assert approvers.members("oncall") == ["alice", "bob"]
    assert approvers.may_decide("alice", ["dba"])
    assert approvers.may_decide("bob", ["dba", "oncall"])
    assert not approvers.may_decide("bob", ["dba"])
    assert approvers.refusal("bob", ["dba"]) == "bob is not in group dba"
    assert approvers.refusal("bob", ["dba", "sec"]) == "bob is not in any of the groups dba, sec"
    assert approvers.may_decide("bob", [])  # a request with no groups: any listed person
    assert approvers.refusal("eve", []) == f"eve is not a listed approver in {path}"


def test_an_invalid_file_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text(
        "groups:\n  dba: {webhook: ftp://x, colour: red}\n"
        "people:\n  alice: {groups: dba, token: plain-token}\n  bob: {group: [dba]}\nteams: {}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        Approvers.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is not a valid approvers file:")
    for problem in (
        "unknown key 'teams'",
        "groups.dba: unknown key 'colour'",
        "groups.dba.webhook: expected an http:// or https:// URL, got 'ftp://x'",
        "people.alice.groups: expected a list of group names, got 'dba'",
        "people.alice.token: expected 'sha256:' and 64 hex digits (the hash, never the token itself); "
        "`proctor approvers add alice --group GROUP` issues a new token",
        "people.bob: unknown key 'group'",
    ):
        assert problem in message
    path.write_text("people: [alice\n")
    with pytest.raises(ConfigurationError, match="is not valid YAML"):
        Approvers.load(path)
    with pytest.raises(ConfigurationError, match=r"cannot read the approvers file .*missing\.yaml"):
        Approvers.load(tmp_path / "missing.yaml")


def test_add_creates_a_private_file_with_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "config" / "approvers.yaml"
    approvers = Approvers(path=path)
    token = approvers.add("alice", ["dba", "oncall"])
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text
    assert yaml.safe_load(text) == {
        "groups": {"dba": {}, "oncall": {}},
        "people": {"alice": {"groups": ["dba", "oncall"], "token": hash_token(token)}},
    }
    assert approvers.who(token) == "alice"
    assert Approvers.load(path).who(token) == "alice"


def test_add_keeps_the_other_entries_and_replaces_a_token(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text(FILE % hash_token("alice-secret"))
    path.chmod(0o640)
    approvers = Approvers.load(path)
    token = approvers.add("carol", ["sec"])
    new = approvers.add("alice", ["dba"])
    reloaded = Approvers.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # an existing file keeps its permissions
    assert reloaded.webhook("dba") == "http://127.0.0.1:9000/hook"
    assert reloaded.who(token) == "carol"
    assert reloaded.who(new) == "alice"
    assert reloaded.who("alice-secret") is None
    assert reloaded.people["alice"].groups == {"dba"}
    assert reloaded.people["bob"].groups == {"oncall"}
    assert reloaded.groups == ["dba", "oncall", "sec"]
    assert [p.name for p in approvers.people.values()] == ["alice", "bob", "carol"]


def test_add_leaves_an_invalid_file_alone_and_refuses_bad_names(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text("people: {alice: {groups: dba}}\n")
    with pytest.raises(ConfigurationError, match=r"people\.alice\.groups"):
        Approvers(path=path).add("bob", ["dba"])
    assert path.read_text() == "people: {alice: {groups: dba}}\n"
    with pytest.raises(ConfigurationError, match="' bob' is not a valid name"):
        Approvers().add(" bob", ["dba"])
    with pytest.raises(ConfigurationError, match="'' is not a valid name"):
        Approvers().add("bob", [""])


def test_the_file_in_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROCTOR_APPROVERS", raising=False)
    assert approvers_path() is None  # open mode
    Path("approvers.yaml").write_text("people: {}\n")
    assert approvers_path() == Path("approvers.yaml")
    monkeypatch.setenv("PROCTOR_APPROVERS", str(tmp_path / "elsewhere.yaml"))
    assert approvers_path() == tmp_path / "elsewhere.yaml"  # named, so missing is an error, not open mode


def test_remove_a_person_or_their_groups_keeping_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text(FILE % hash_token("alice-secret"))
    approvers = Approvers.load(path)
    carol = approvers.add("carol", ["dba", "sec"])
    assert approvers.remove("carol", ["sec"]) == approvers.people["carol"]
    reloaded = Approvers.load(path)
    assert reloaded.people["carol"].groups == {"dba"}
    assert reloaded.who(carol) == "carol"  # leaving a group keeps the token
    assert approvers.remove("alice") is None
    reloaded = Approvers.load(path)
    assert sorted(reloaded.people) == ["bob", "carol"]
    assert reloaded.who("alice-secret") is None
    assert reloaded.webhook("dba") == "http://127.0.0.1:9000/hook"  # groups stay defined
    assert sorted(approvers.people) == ["bob", "carol"]
    with pytest.raises(
        ConfigurationError, match=r"dave is not listed in .*approvers.yaml; listed: bob, carol"
    ):
        approvers.remove("dave")
    with pytest.raises(ConfigurationError, match="bob is not in group dba; bob's groups: oncall"):
        approvers.remove("bob", ["dba"])
    assert Approvers.load(path).people == reloaded.people
