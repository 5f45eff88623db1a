"""``contains_pii`` rules fail closed: a size or depth limit never turns a deny into an allow.

End to end, through ``@runlog`` with a policy file, as issue 10 (item 3) measured it: before the fix
the three calls below ran (the e-mail address after 256 KB, the card number after 3 MB, and the
address inside 40 nested lists were never scanned); now each is denied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proctor import RuleViolationError, runlog
from proctor.rules import Facts, parse_policies

DENY_PII = """
policies:
- id: no_pii_out
  when:
    tool: send
    args.body: { contains_pii: true }
  action: deny
  message: "personal data must not leave"
"""

EMAIL_AFTER_256_KB = "a " * 300_000 + " bob@example.com"
CARD_AFTER_3_MB = "a " * 1_500_000 + " 4111 1111 1111 1111"


def nested(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


def guarded(tmp_path: Path, policy: str = DENY_PII) -> tuple[Callable[[Any], str], list[object]]:
    """A tool ``send`` under the policy file, and the list of bodies it actually sent."""
    path = tmp_path / "policies.yaml"
    path.write_text(policy)
    sent: list[object] = []

    @runlog(service="mailer", name="send", policies=str(path))
    def send(body: Any) -> str:
        sent.append(body)
        return "sent"

    return send, sent


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(EMAIL_AFTER_256_KB, id="email-after-256KB"),
        pytest.param(CARD_AFTER_3_MB, id="card-after-3MB"),
        pytest.param(nested("bob@example.com", 40), id="email-in-40-nested-lists"),
    ],
)
def test_pii_past_the_old_limits_is_denied(tmp_path: Path, body: object) -> None:
    # Before the fix: send(body) returned "sent" (the call ran). After: RuleViolationError.
    send, sent = guarded(tmp_path)
    with pytest.raises(RuleViolationError, match="personal data must not leave"):
        send(body)
    assert sent == []
    assert send("hello there") == "sent"  # the rule still lets clean text through


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param("a " * 2_200_000 + "clean", "string of 4,400,005 characters", id="text-over-max_chars"),
        pytest.param(nested("clean", 150), "nested deeper than max_depth=100", id="nesting-over-max_depth"),
    ],
)
def test_a_value_that_cannot_be_scanned_in_full_counts_as_pii(
    tmp_path: Path, body: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    send, sent = guarded(tmp_path)
    with caplog.at_level(logging.WARNING, logger="proctor.pii"), pytest.raises(RuleViolationError):
        send(body)
    assert sent == []
    assert "not scanned in full" in caplog.text
    assert reason in caplog.text


@pytest.mark.parametrize("action", ["require_approval", "log"])
def test_other_actions_match_an_unscanned_value_too(action: str) -> None:
    rules = parse_policies(
        f"policies:\n- id: r\n  when: {{args.body: {{contains_pii: true}}}}\n  action: {action}\n"
    )
    assert rules.evaluate(Facts(args={"body": nested("x", 150)})).action.value == action
    assert rules.evaluate(Facts(args={"body": EMAIL_AFTER_256_KB})).action.value == action
    assert rules.evaluate(Facts(args={"body": "nothing to see"})).action.value == "allow"


@pytest.mark.parametrize(
    "when",
    [
        "{args.body: {contains_pii: false}}",
        "{not: {args.body: {contains_pii: true}}}",
        "{not: {args.body: {contains_pii: [email, credit_card]}}}",
        "{any: [{args.body: {contains_pii: false}}, {agent: nobody}]}",
    ],
)
def test_an_unscanned_value_never_makes_a_no_pii_condition_true(when: str) -> None:
    # A rule that holds when there is no PII (say, one that lets data out unreviewed) must not
    # hold for a value that was not scanned in full.
    rules = parse_policies(f"policies:\n- id: clean_only\n  when: {when}\n  action: log\n")
    assert rules.evaluate(Facts(args={"body": "nothing to see"})).action.value == "log"
    for body in (EMAIL_AFTER_256_KB, CARD_AFTER_3_MB, nested("clean", 150), "a " * 2_200_000):
        assert rules.evaluate(Facts(args={"body": body})).action.value == "allow"


@pytest.mark.parametrize("depth", [3, 40, 150])
def test_output_rules_fail_closed_too(tmp_path: Path, depth: int) -> None:
    # Before the fix, depth 40 and 150 returned the output (the output rule did not match).
    path = tmp_path / "policies.yaml"
    path.write_text("policies:\n- id: leak\n  when: {output: {contains_pii: true}}\n  action: deny\n")

    @runlog(service="reader", name="fetch", policies=str(path))
    def fetch() -> object:
        return nested("clean" if depth == 150 else "bob@example.com", depth)

    with pytest.raises(RuleViolationError):
        fetch()
