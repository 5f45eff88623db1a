"""Policy unit tests: given facts, expect an action and the rule that decides.

A cases file is YAML::

    cases:
      - name: expensive calls are denied
        facts: {tool: llm.complete, cost: 2.5}
        expect: {action: deny, rule: cost_control}
      - name: small talk is fine
        facts: {tool: llm.complete, cost: 0.01}
        expect: {action: allow}

``facts`` uses the names rules use (``args`` and ``input`` as mappings,
``time`` as ``{hour: 23, weekday: 4}``); with ``output`` given, the rules
checked after the call decide when they match and the call was let through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctor.decision import Action
from proctor.errors import PolicyConfigError
from proctor.rules._yaml import YAMLProblem, load_yaml
from proctor.rules.facts import FACTS, Facts
from proctor.rules.ruleset import RuleSet, Verdict

__all__ = ["CaseResult", "load_cases", "run_cases"]

_ACTIONS = tuple(action.value for action in Action)


@dataclass(frozen=True, slots=True)
class Case:
    """One expectation: its name, where it is, the facts, and what should happen."""

    name: str
    location: str
    facts: Mapping[str, Any]
    action: Action
    rule: str | None


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A case and what the rules actually decided."""

    case: Case
    verdict: Verdict

    @property
    def passed(self) -> bool:
        """True when the action, and the rule if the case names one, are as expected."""
        rule = self.verdict.rule.id if self.verdict.rule is not None else None
        return self.verdict.action is self.case.action and (self.case.rule is None or self.case.rule == rule)


def load_cases(path: str | Path) -> list[Case]:
    """Read a cases file; ``PolicyConfigError`` lists every malformed case with its place."""
    file = str(path)
    try:
        data, source = load_yaml(Path(path).read_text(encoding="utf-8"), file)
    except OSError as exc:
        raise PolicyConfigError(
            [(f"{file}:1:1", f"cannot read the cases file: {exc.strerror or exc}")]
        ) from None
    except YAMLProblem as exc:
        raise PolicyConfigError([(str(exc.location), exc.message)]) from None
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list) or set(data) != {"cases"}:
        raise PolicyConfigError([(f"{file}:1:1", "a cases file is a mapping with one key, 'cases', a list")])
    cases: list[Case] = []
    problems: list[tuple[str, str]] = []
    for index, raw in enumerate(data["cases"]):
        where = str(source.value(("cases", index)))
        if not isinstance(raw, Mapping):
            problems.append((where, "a case is a mapping with name, facts and expect"))
            continue
        unknown = set(raw) - {"name", "facts", "expect"}
        facts, expect = raw.get("facts", {}), raw.get("expect")
        if unknown:
            problems.append((where, f"unknown keys {sorted(unknown)}; a case has name, facts and expect"))
        elif not isinstance(facts, Mapping) or set(facts) - set(FACTS):
            bad = sorted(set(facts) - set(FACTS)) if isinstance(facts, Mapping) else facts
            problems.append((where, f"facts must be a mapping of known facts; not {bad!r}"))
        elif (
            not isinstance(expect, Mapping)
            or expect.get("action") not in _ACTIONS
            or set(expect) - {"action", "rule"}
        ):
            problems.append(
                (where, f"expect needs action (one of {', '.join(_ACTIONS)}) and may name a rule")
            )
        else:
            name = str(raw.get("name") or f"case {index + 1}")
            cases.append(Case(name, where, facts, Action(expect["action"]), expect.get("rule")))
    if problems:
        raise PolicyConfigError(problems)
    return cases


def run_cases(rules: RuleSet, cases: list[Case]) -> list[CaseResult]:
    """Evaluate each case against ``rules``: rules after the call decide when the case gives ``output``."""
    results = []
    for case in cases:
        facts = Facts.from_mapping(case.facts)
        verdict = rules.evaluate(facts)
        went_ahead = verdict.action in (Action.ALLOW, Action.LOG, Action.MODIFY)
        if went_ahead and "output" in case.facts and rules.after is not None:
            after = rules.after.evaluate(facts)
            if after.rule is not None:
                verdict = after
        results.append(CaseResult(case, verdict))
    return results
