from __future__ import annotations

import logging

import pytest

from proctor import AccessPolicy, ConfigurationError, PolicyViolationError, SecurityLabel, Task


def test_every_label_on_the_task_must_be_allowed() -> None:
    policy = AccessPolicy(rules={"analyst": {"labels": [SecurityLabel.PUBLIC, "internal"]}})
    ok = Task(labels={"input": "public", "output": SecurityLabel.INTERNAL, "context": "internal"})
    assert policy.check("analyst", ok)
    bad = Task(labels={"input": SecurityLabel.PUBLIC, "retrieved": SecurityLabel.CONFIDENTIAL})
    with pytest.raises(PolicyViolationError, match="retrieved is labelled 'confidential'"):
        policy.check("analyst", bad)


def test_open_by_default() -> None:
    policy = AccessPolicy(rules={"analyst": {"labels": ["public"]}})
    secret = Task(labels={"input": SecurityLabel.CONFIDENTIAL})
    assert policy.check("unlisted", secret)
    assert policy.check("analyst", Task())  # no labels, nothing to check
    assert policy.allowed_labels("unlisted") is None


def test_an_empty_list_allows_only_unlabelled_tasks() -> None:
    policy = AccessPolicy(rules={"sandbox": {"labels": []}})
    assert policy.check("sandbox", Task())
    with pytest.raises(PolicyViolationError):
        policy.check("sandbox", Task(labels={"input": "public"}))


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([("a", ["public"])], "rules must be a mapping"),
        ({"a": ["public"]}, "must be a mapping such as"),
        ({"a": {"label": ["public"]}}, r"unknown keys \['label'\]; use 'labels'"),
        ({"a": {"labels": "public"}}, "must be a list"),
    ],
)
def test_malformed_rules_fail_at_construction(rules: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AccessPolicy(rules=rules)  # type: ignore[arg-type]


def test_a_rule_without_labels_restricts_no_label(caplog: pytest.LogCaptureFixture) -> None:
    secret = Task(labels={"input": SecurityLabel.CONFIDENTIAL})
    with caplog.at_level(logging.WARNING, logger="proctor.policy"):
        policy = AccessPolicy(
            rules={"a": {}, "b": {"labels": None}, "c": {"resources": ["db"]}, "d": {"labels": ["public"]}}
        )
    for agent in ("a", "b", "c"):
        assert policy.allowed_labels(agent) is None
        assert policy.check(agent, secret)
    # LOCO reserves "resources" and does not enforce them; proctor says so rather than fail.
    assert "the 'resources' of agent 'c' are not enforced" in caplog.text
    with pytest.raises(PolicyViolationError):
        policy.check("d", secret)
