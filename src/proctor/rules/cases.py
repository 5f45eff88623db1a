"""Policy unit tests: given facts, expect an action and the rule that decides.

A cases file is YAML::

    cases:
      - name: expensive calls are denied
        facts: {tool: llm.complete, cost: 2.5}
        expect: {action: deny, rule: cost_control}
      - name: small talk is fine
        facts: {tool: llm.complete, cost: 0.01}
        expect: allow

``expect`` is the action (allow, log, modify, require_approval, deny, terminate),
or ``{action: ..., rule: ...}`` to require that rule to be the one that decides.

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
from proctor.rules._yaml import Path as Path_
from proctor.rules._yaml import SourceMap, YAMLProblem, load_yaml
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
        facts = raw.get("facts", {})
        if unknown:
            problems.append((where, f"unknown keys {sorted(unknown)}; a case has name, facts and expect"))
        elif not isinstance(facts, Mapping) or set(facts) - set(FACTS):
            bad = sorted(set(facts) - set(FACTS)) if isinstance(facts, Mapping) else facts
            problems.append((where, f"facts must be a mapping of known facts; not {bad!r}"))
        else:
            expected = _expected(raw, ("cases", index), source)
            if isinstance(expected, Problem):
                problems.append(expected)
            else:
                name = str(raw.get("name") or f"case {index + 1}")
                cases.append(Case(name, where, facts, *expected))
    if problems:
        raise PolicyConfigError(problems)
    return cases


class Problem(tuple[str, str]):
    """A malformed case: where, and what is wrong."""

    __slots__ = ()


def _expected(raw: Mapping[str, Any], path: Path_, source: SourceMap) -> tuple[Action, str | None] | Problem:
    """A case's ``expect``: the action alone (``expect: deny``) or ``{action: deny, rule: RULE_ID}``."""
    forms = "write `expect: ACTION` or `expect: {action: ACTION, rule: RULE_ID}`"
    if "expect" not in raw:
        return Problem(
            (
                str(source.value(path)),
                f"a case needs expect: the action ({', '.join(_ACTIONS)}), as `expect: deny` or "
                "`expect: {action: deny, rule: RULE_ID}`",
            )
        )
    expect, at = raw["expect"], (*path, "expect")
    rule = None
    if isinstance(expect, Mapping):
        unknown = [key for key in expect if key not in ("action", "rule")]
        if unknown:
            return Problem(
                (str(source.key((*at, unknown[0]))), f"expect: unknown key {unknown[0]!r}; {forms}")
            )
        if "action" not in expect:
            return Problem((str(source.value(at)), f"expect: the action is missing; {forms}"))
        rule = expect.get("rule")
        if rule is not None and not isinstance(rule, str):
            return Problem((str(source.value((*at, "rule"))), f"expect: rule is a rule's id, not {rule!r}"))
        expect, at = expect["action"], (*at, "action")
    action = expect.strip().lower() if isinstance(expect, str) else expect
    if action not in _ACTIONS:
        return Problem(
            (str(source.value(at)), f"expect: unknown action {expect!r}; one of {', '.join(_ACTIONS)}")
        )
    return Action(action), rule


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
