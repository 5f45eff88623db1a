"""How the console's pages show durations, rates and stored decisions."""

from __future__ import annotations

import json

import pytest

from proctor.web.format import approval_text, decision_labels, error_text, percent, seconds


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        (None, "-"),
        (0.0123, "12 ms"),
        (3.4, "3.40 s"),
        (125, "2 min 5 s"),
        (899.9, "15 min"),
        (3 * 3600 + 600, "3 h 10 min"),
        (7200, "2 h"),
    ],
)
def test_seconds(duration: float | None, shown: str) -> None:
    assert seconds(duration) == shown


def test_percent() -> None:
    assert percent(1, 8) == "12.5%"
    assert percent(0, 8) == "0.0%"
    assert percent(1, 100_000) == "<0.1%"
    assert percent(0, 0) == "-"


def test_decisions_mark_the_one_that_took_effect_once() -> None:
    stored = json.dumps(
        [
            {"phase": "before", "rule": "cap", "action": "modify", "decided": True},
            {"phase": "before", "rule": "audit", "action": "log", "decided": False},
            {"phase": "after", "rule": "leak", "action": "deny", "decided": True},
        ]
    )
    assert decision_labels(stored) == [
        {"label": "cap: modify", "deciding": False, "decided": True},
        {"label": "audit: log", "deciding": False, "decided": False},
        {"label": "leak: deny (on output)", "deciding": True, "decided": True},
    ]
    assert decision_labels(None) == []


def test_approvals_and_errors() -> None:
    assert (
        approval_text(json.dumps({"approved": True, "approver": "ann", "comment": "ok"}))
        == "approved by ann: ok"
    )
    assert approval_text(json.dumps({"approved": False, "approver": "bo"})) == "refused by bo"
    assert approval_text(json.dumps({"approved": None})) == "timed out"
    assert approval_text(None) == ""
    assert error_text(json.dumps({"type": "app.x:Boom", "message": "no"})) == "Boom: no"
    assert error_text(None) == ""
