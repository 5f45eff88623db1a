"""The policies page: the rules in force, and how many actions each decided in the last hour and day."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proctor.rules.schema import Defaults, Rule
from proctor.web.state import console_of

__all__ = ["policies_page"]

_ACTIONS = (
    ("deny", "denied"),
    ("require_approval", "approval asked"),
    ("modify", "modified"),
    ("terminate", "terminated"),
    ("log", "logged"),
)


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A rule of a file in force, with what it decided in the last hour and day."""

    rule: Rule
    after: bool
    when: str
    hour: int
    day: int


@dataclass(frozen=True, slots=True)
class PolicyFileView:
    """A policy file in force: its path, its defaults, its enabled rules in file order."""

    path: Path
    defaults: Defaults
    rules: list[RuleRow]


def policies_page(request: Request) -> Response:
    """``GET /policies``."""
    console = console_of(request)
    counts = console.database.decision_counts(time.time())
    files: list[PolicyFileView] = []
    known: set[str] = set()
    for source in console.policies:
        ruleset = source.current()
        compiled = [(c, False) for c in ruleset.rules]
        if ruleset.after is not None:
            compiled += [(c, True) for c in ruleset.after.rules]
        rows = []
        for rule, after in sorted(compiled, key=lambda pair: pair[0].index):
            known.add(rule.rule.id)
            hour, day = counts.of(rule.rule.id)
            when = json.dumps(rule.rule.when, ensure_ascii=False, default=str)
            rows.append(RuleRow(rule.rule, after, when, hour, day))
        files.append(PolicyFileView(source.paths[0], ruleset.defaults, rows))
    others = [
        {"rule": rule, "action": action, "hour": hour, "day": day}
        for (rule, action), (hour, day) in sorted(counts.by_rule.items(), key=lambda item: -item[1][1])
        if rule not in known
    ]
    summary: list[dict[str, Any]] = []
    for action, label in _ACTIONS:
        hour, day = counts.of_action(action)
        summary.append({"action": action, "label": label, "hour": hour, "day": day})
    context = {"section": "policies", "counts": counts, "files": files, "others": others, "summary": summary}
    return console.templates.TemplateResponse(request, "policies.html", context)
