"""RuleSet: compiled rules, indexed by tool, and how several matching rules combine.

When several rules match one action, the strictest action wins
(terminate > deny > require_approval > modify > log > allow); among rules with
that action, the highest ``priority`` decides, then the earliest in the file.
The patches of every matching ``modify`` rule apply in that same order (by
priority, then file order), each on the result of the one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proctor.decision import Action
from proctor.rules.compiler import Condition, facts_used, literal_tools
from proctor.rules.facts import Facts
from proctor.rules.schema import Budget, Defaults, RateLimit, Rule

__all__ = ["CompiledRule", "RuleSet", "Verdict"]

_STRICTNESS = {
    Action.ALLOW: 0,
    Action.LOG: 1,
    Action.MODIFY: 2,
    Action.REQUIRE_APPROVAL: 3,
    Action.DENY: 4,
    Action.TERMINATE: 5,
}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule with its compiled condition and its place in the file.

    ``keyed`` is the condition without its literal ``tool`` test, used when
    the index by tool has already chosen the rule; ``alone`` the verdict when
    this rule is the only one that matches.
    """

    rule: Rule
    index: int
    condition: Condition
    keyed: Condition | None = None
    action: Action = field(init=False)
    uses: frozenset[str] = field(init=False)
    alone: Verdict = field(init=False)

    def __post_init__(self) -> None:
        action = Action(self.rule.action)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "uses", facts_used(self.rule.when))
        patches = (self.rule,) if action is Action.MODIFY else ()
        object.__setattr__(self, "alone", Verdict(action, self.rule, (self.rule,), patches))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules say about one action.

    ``rule`` is the deciding rule (None when no rule matched and the default
    applies); ``matched`` every matching rule, deciding order; ``patches`` the
    ``modify`` rules to apply, in order.
    """

    action: Action
    rule: Rule | None = None
    matched: tuple[Rule, ...] = ()
    patches: tuple[Rule, ...] = ()

    @property
    def message(self) -> str:
        """The deciding rule's message, else its name or id; empty when no rule decided."""
        rule = self.rule
        if rule is None:
            return ""
        return rule.message or rule.name or rule.id


class RuleSet:
    """Compiled rules that decide on actions; built by ``load_policies`` / ``parse_policies``.

    Rules that name their tools literally (``tool: db.query`` or a list of
    names) are only tested against those tools; the rest against every action.
    Rules that read ``output`` are checked after the call (``after=True``),
    the others before it. ``budgets`` and ``rate_limits`` come with the rules;
    ``proctor.rules.limits`` turns them into policies.
    """

    def __init__(
        self,
        rules: Iterable[CompiledRule],
        defaults: Defaults,
        source: str = "<string>",
        *,
        after: bool = False,
        budgets: tuple[Budget, ...] = (),
        rate_limits: tuple[RateLimit, ...] = (),
        costs: Mapping[str, float] | None = None,
    ) -> None:
        enabled = [rule for rule in rules if rule.rule.enabled]
        self.budgets = budgets
        """The file's budgets: checked, with its rate limits, after the rules let a call run."""
        self.rate_limits = rate_limits
        self.costs: Mapping[str, float] = dict(costs) if costs else {}
        """The file's ``costs:``: a tool call's estimated cost by tool name or glob, for the MCP gateway."""
        self.rules = tuple(rule for rule in enabled if ("output" in rule.uses) is after)
        self.defaults = defaults
        self.source = source
        self.after: RuleSet | None = None
        if not after:
            self.after = (
                RuleSet(enabled, defaults, source, after=True) if len(self.rules) < len(enabled) else None
            )
        # The fact roots the rules read, before and after the call: callers may skip the others.
        self.uses = frozenset().union(*(rule.uses for rule in (self.rules if after else enabled)))
        # After the call, "nothing matched" means go on, whatever the file's default.
        self._default = Verdict(Action.ALLOW if after else Action(defaults.action))
        by_tool: dict[str, list[tuple[CompiledRule, Condition]]] = {}
        anywhere: list[tuple[CompiledRule, Condition]] = []
        for compiled in self.rules:
            tools = literal_tools(compiled.rule.when)
            if tools is None:
                anywhere.append((compiled, compiled.condition))
            else:
                # The index has tested the tool already: test only the rest of ``when``.
                keyed = compiled.keyed or compiled.condition
                for tool in tools:
                    by_tool.setdefault(tool, []).append((compiled, keyed))
        self._anywhere = tuple(anywhere)
        # Per tool, its own rules merged with the general ones, in file order.
        self._by_tool = {
            tool: tuple(sorted((*rules, *anywhere), key=lambda pair: pair[0].index))
            for tool, rules in by_tool.items()
        }

    def candidates(self, tool: Any) -> tuple[CompiledRule, ...]:
        """The rules that can match an action of ``tool``, in file order."""
        return tuple(compiled for compiled, _ in self._tests(tool))

    def _tests(self, tool: Any) -> tuple[tuple[CompiledRule, Condition], ...]:
        if isinstance(tool, str):
            return self._by_tool.get(tool, self._anywhere)
        return self._anywhere

    def evaluate(self, facts: Facts) -> Verdict:
        """The verdict of the rules on one action."""
        matched = [compiled for compiled, test in self._tests(facts.tool) if test(facts) is True]
        if not matched:
            return self._default
        if len(matched) == 1:
            return matched[0].alone
        matched.sort(key=lambda c: (-_STRICTNESS[c.action], -c.rule.priority, c.index))
        decider = matched[0]
        patches = tuple(
            compiled.rule
            for compiled in sorted(
                (c for c in matched if c.action is Action.MODIFY), key=lambda c: (-c.rule.priority, c.index)
            )
        )
        return Verdict(decider.action, decider.rule, tuple(c.rule for c in matched), patches)

    def __len__(self) -> int:
        """How many enabled rules there are, checked before or after the call."""
        return len(self.rules) + (len(self.after.rules) if self.after is not None else 0)

    def __repr__(self) -> str:
        return f"<RuleSet {self.source!r}: {len(self.rules)} rules>"
