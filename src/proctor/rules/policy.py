"""RulesPolicy: a policy file's rules as an ordinary ``Policy``, to compose with code policies.

In a ``PolicyEnforcer`` (a scheduler's, or one called by hand) the rules see
the facts a ``Task`` carries: ``agent``, ``tool`` (its ``task_type``), ``cost``
(its estimated cost), ``labels``, ``time``, and ``args.model`` when the task
names one. Facts of a decorated call's run (``args``, ``input``, ``cost_run``,
``cost_today``, ...) are not there, so rules on them do not match; put those
rules on ``@runlog``, which evaluates them with the call. A file's budgets and
rate limits are not part of this policy: build them in code, or use ``@runlog``.

What each action does here, where a slot may be held and no person can be
asked: ``allow`` and ``modify`` let the task run (there are no arguments to
patch); ``log`` lets it run and logs a warning; ``deny``, ``terminate`` and
``require_approval`` refuse it with ``RuleViolationError``.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from zoneinfo import ZoneInfo

from proctor.decision import ALLOW, Action, Decision
from proctor.errors import RuleViolationError
from proctor.policy.base import Policy
from proctor.rules.facts import MISSING, Facts
from proctor.rules.ruleset import RuleSet
from proctor.rules.source import PolicySource
from proctor.task import Task

__all__ = ["RulesPolicy"]

logger = logging.getLogger("proctor.rules")

_REFUSES = {
    Action.DENY: "",
    Action.TERMINATE: " (terminate: refused here, there is no run to end)",
    Action.REQUIRE_APPROVAL: " (require_approval: refused here, no person is asked while a slot is held; "
    "use @runlog for rules that ask)",
}


class RulesPolicy(Policy):
    """The rules of a policy file (a path, a list of paths, a mapping or a ``RuleSet``), checked on
    every task the enforcer admits; files are reloaded when they change, as ``@runlog`` does.

    Parameters:
        rules: what ``@runlog(policies=...)`` takes.
        name: the policy's name in the enforcer; ``"rules"`` by default.
    """

    name = "rules"

    def __init__(
        self, rules: str | os.PathLike[str] | RuleSet | dict[str, object], *, name: str = "rules"
    ) -> None:
        self._source = PolicySource(rules)
        self.name = name

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._source.current()

    def admit(self, agent_id: str, task: Task) -> Decision:
        rules = self._source.current()
        zone = rules.defaults.timezone
        facts = Facts(
            agent=agent_id,
            tool=task.task_type,
            cost=task.estimated_cost,
            labels=dict(task.labels) if task.labels else MISSING,
            args={"model": task.model} if task.model is not None else MISSING,
        )
        if "time" in rules.uses:
            facts.now = datetime.now(ZoneInfo(zone) if zone else None)
        verdict = rules.evaluate(facts)
        action = verdict.action
        if action is Action.ALLOW or action is Action.MODIFY:
            return ALLOW
        rule = verdict.rule
        rule_id = rule.id if rule is not None else "default"
        if action is Action.LOG:
            logger.warning(
                "rule %r matched %s of agent %r: %s", rule_id, task.task_type, agent_id, verdict.message
            )
            return Decision(Action.LOG, rule_id, verdict.message)
        detail = (
            verdict.message or "no rule allows it, and the policy file's default action is deny"
        ) + _REFUSES[action]
        raise RuleViolationError(rule_id, rule.name if rule is not None else None, agent_id, detail)
