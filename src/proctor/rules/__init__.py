"""Declarative policy files: YAML rules compiled into closures over an action's facts."""

from __future__ import annotations

from proctor.rules.facts import FACTS, MISSING, Facts
from proctor.rules.loader import load_policies, parse_policies
from proctor.rules.policy import RulesPolicy
from proctor.rules.ruleset import RuleSet, Verdict

__all__ = [
    "FACTS",
    "MISSING",
    "Facts",
    "RuleSet",
    "RulesPolicy",
    "Verdict",
    "load_policies",
    "parse_policies",
]
