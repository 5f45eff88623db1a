"""The budgets and rate limits of a policy file, as policies checked on each call.

A file's ``budgets`` become ``BudgetPolicy`` objects and its ``rate_limits``
``RatePolicy`` objects, so they keep those policies' semantics: reserve at the
check, settle after the call, give back on a later refusal. Each keeps its
state in the store under ``proctor.budgets:<id>`` or
``proctor.rate_limits:<id>``, so a reloaded file, another process on the same
store, or a budget of the same name built in code, neither resets nor mixes
with it.
"""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

from proctor.decision import Decision
from proctor.outcome import Outcome
from proctor.policy.base import Policy
from proctor.policy.budget import BudgetPolicy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.policy.rate import RatePolicy
from proctor.rules.ruleset import RuleSet
from proctor.rules.schema import Budget, RateLimit
from proctor.stores.base import Store
from proctor.task import Task

__all__ = ["FileLimit", "FileLimits"]


class FileLimit(Policy):
    """One budget or rate limit of a file, applied to the key its ``per`` picks for the calls of one
    decorated function (its agent, service or tool), whatever agent the enforcer is asked about."""

    def __init__(self, spec: Budget | RateLimit, policy: BudgetPolicy | RatePolicy, key: str) -> None:
        self.name = spec.id
        self.spec = spec
        self.policy = policy
        self.key = key
        self.blocking = policy.blocking

    def admit(self, agent_id: str, task: Task) -> Decision:
        return self.policy.admit(self.key, task)

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        self.policy.rollback(self.key, task, decision)

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        self.policy.settle(self.key, task, decision, outcome)


class FileLimits:
    """The budgets and rate limits of one ``RuleSet``, on one store; rate limits are checked first
    (a refused call then reserves no budget), each kind in file order."""

    def __init__(self, rules: RuleSet, store: Store) -> None:
        self.store = store
        zone = rules.defaults.timezone
        timezone = ZoneInfo(zone) if zone else None
        self._limits: list[tuple[Budget | RateLimit, BudgetPolicy | RatePolicy]] = []
        for rate in rules.rate_limits:
            policy: BudgetPolicy | RatePolicy = RatePolicy(
                rate.limits,
                rate.seconds,
                rate.limit,
                store=store,
                namespace=f"proctor.rate_limits:{rate.id}",
                on_store_error=rate.on_store_error,
                processes=rate.processes,
            )
            policy.name = rate.id
            self._limits.append((rate, policy))
        for budget in rules.budgets:
            policy = BudgetPolicy(
                budget.limit,
                budget.mode,
                budget.period,
                store=store,
                namespace=f"proctor.budgets:{budget.id}",
                timezone=timezone,
                lease=budget.lease or rules.defaults.lease,
                on_store_error=budget.on_store_error,
            )
            for key, limit in budget.limits.items():
                policy.set_limit(key, limit)
            policy.name = budget.id
            self._limits.append((budget, policy))
        self._lock = threading.Lock()
        self._enforcers: dict[tuple[str, str, str], PolicyEnforcer] = {}

    def enforcer(self, *, agent: str, service: str, tool: str) -> PolicyEnforcer:
        """The limits as applied to the calls of one decorated function."""
        names = (agent, service, tool)
        enforcer = self._enforcers.get(names)
        if enforcer is None:
            keys = {"agent": agent, "service": service, "tool": tool}
            enforcer = PolicyEnforcer(
                FileLimit(spec, policy, keys[spec.per]) for spec, policy in self._limits
            )
            with self._lock:
                enforcer = self._enforcers.setdefault(names, enforcer)
        return enforcer

    def downgrades(self, decisions: list[Decision]) -> list[Budget]:
        """The budgets whose decisions among ``decisions`` downgrade the call, in check order."""
        downgrading = {decision.policy for decision in decisions if decision.downgrade}
        return [spec for spec, _ in self._limits if isinstance(spec, Budget) and spec.id in downgrading]
