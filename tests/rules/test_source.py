"""Hot reload: changed files are picked up; a broken file never replaces working rules."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from proctor import PolicyConfigError, RuleViolationError, runlog
from proctor.decision import Action
from proctor.rules import Facts
from proctor.rules.source import PolicySource

DENY_BIG = "policies:\n- id: big\n  when: {args.n: {gt: 10}}\n  action: deny\n"
DENY_SMALL = "policies:\n- id: small\n  when: {args.n: {gt: 1}}\n  action: deny\n  message: now stricter\n"


def test_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DENY_BIG)
    source = PolicySource(path, interval=0)
    assert source.current().evaluate(Facts(args={"n": 5})).action is Action.ALLOW
    path.write_text(DENY_SMALL)
    assert source.current().evaluate(Facts(args={"n": 5})).rule.id == "small"  # type: ignore[union-attr]


def test_a_broken_file_keeps_the_rules_in_force(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DENY_BIG)
    source = PolicySource(path, interval=0)
    with caplog.at_level(logging.ERROR, logger="proctor.rules"):
        path.write_text(DENY_BIG.replace("gt: 10", "gtt: 10"))
        rules = source.current()
    assert rules.evaluate(Facts(args={"n": 50})).rule.id == "big"  # type: ignore[union-attr]
    assert "previous rules stay in force" in caplog.text
    assert "p.yaml:3:19: unknown operator 'gtt'" in caplog.text
    path.unlink()  # a deleted file is a broken file too
    assert source.current() is rules
    path.write_text(DENY_SMALL)  # fixed: applied
    assert source.current().evaluate(Facts(args={"n": 5})).rule.id == "small"  # type: ignore[union-attr]


def test_several_files_merge_and_ids_stay_unique(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(DENY_BIG)
    second.write_text(DENY_SMALL)
    merged = PolicySource([first, second]).current()
    assert [c.rule.id for c in merged.rules] == ["big", "small"]
    second.write_text(DENY_BIG)
    with pytest.raises(PolicyConfigError, match="rule id 'big' is also used in"):
        PolicySource([first, second])


def test_running_decorators_pick_up_a_change_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "agent_policies.yaml"
    path.write_text(DENY_BIG)

    @runlog(service="s", policies=str(path))
    def work(n: int) -> int:
        return n

    assert work(5) == 5
    path.write_text(DENY_SMALL)
    time.sleep(0.6)  # the files are looked at again at most every 0.5 s
    with pytest.raises(RuleViolationError, match="now stricter"):
        work(5)


def test_files_used_together_must_agree_on_defaults(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(DENY_BIG)
    second.write_text("defaults: {action: deny}\n" + DENY_SMALL)
    with pytest.raises(PolicyConfigError, match="files used together must agree on defaults"):
        PolicySource([first, second])
