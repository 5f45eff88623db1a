"""PolicyEnforcer: an ordered list of policies checked as one."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from proctor.decision import Decision
from proctor.errors import PolicyViolationError
from proctor.outcome import SUCCEEDED, Outcome
from proctor.policy.base import Policy
from proctor.task import Task

__all__ = ["Admission", "PolicyEnforcer"]

logger = logging.getLogger("proctor.policy")


class Admission:
    """The policies that admitted one task, with their decisions, to settle later."""

    __slots__ = ("_settled", "agent_id", "decisions", "policies", "task")

    def __init__(
        self, agent_id: str, task: Task, policies: tuple[Policy, ...], decisions: list[Decision]
    ) -> None:
        self.agent_id = agent_id
        self.task = task
        self.policies = policies
        self.decisions = decisions
        self._settled = False

    @property
    def downgraded(self) -> bool:
        """True when a policy allowed the task only in a cheaper form."""
        return any(decision.downgrade for decision in self.decisions)


class PolicyEnforcer:
    """Checks policies in order, stopping at the first rejection.

    A rejection rolls back what the policies before it reserved, then raises
    the rejecting policy's ``PolicyViolationError``. Policies may be added and
    removed while schedulers use the enforcer; each check sees one consistent
    list.

    Parameters:
        policies: the policies, cheapest first.
    """

    def __init__(self, policies: Iterable[Policy] | None = None) -> None:
        self._lock = threading.Lock()
        self._policies: tuple[Policy, ...] = ()
        self._blocking = False  # whether a policy of _current() blocks, kept by _changed()
        self._base: PolicyEnforcer | None = None
        self._views: weakref.WeakSet[PolicyEnforcer] = weakref.WeakSet()  # from _extended()
        self._checked: dict[tuple[str, Task], list[Admission]] = {}  # check_all() awaiting record_all()
        for policy in policies or ():
            self.add_policy(policy)

    def _extended(self, *policies: Policy) -> PolicyEnforcer:
        """An enforcer that checks this one's policies, as they are at each check, then ``policies``."""
        view = PolicyEnforcer(policies)
        view._base = self
        self._views.add(view)
        view._changed()
        return view

    def _changed(self) -> None:
        """The policies changed: update what depends on them, here and in views."""
        self._blocking = any(policy.blocking for policy in self._current())
        for view in self._views:
            view._changed()

    def _current(self) -> tuple[Policy, ...]:
        if self._base is None:
            return self._policies
        return self._base._current() + self._policies

    @property
    def blocking(self) -> bool:
        """True when a policy may wait on I/O (``Policy.blocking``): async callers then admit and
        settle off the event loop."""
        return self._blocking

    @property
    def policies(self) -> list[Policy]:
        """A copy of the policies, in order."""
        return list(self._current())

    def add_policy(self, policy: Policy) -> None:
        """Append a policy; it is checked after those already present."""
        if not isinstance(policy, Policy):
            raise TypeError(
                f"expected a proctor Policy, got {type(policy).__name__}; "
                "subclass proctor.policy.Policy and implement check()"
            )
        with self._lock:
            self._policies = (*self._policies, policy)
            self._changed()

    def remove_policy(self, name: str) -> Policy | None:
        """Remove and return the first policy called ``name``; None if there is none."""
        if self._base is not None and self._base.get_policy(name) is not None:
            return self._base.remove_policy(name)
        with self._lock:
            for index, policy in enumerate(self._policies):
                if policy.name == name:
                    self._policies = self._policies[:index] + self._policies[index + 1 :]
                    self._changed()
                    return policy
        return None

    def get_policy(self, name: str) -> Policy | None:
        """The first policy called ``name``, or None."""
        for policy in self._current():
            if policy.name == name:
                return policy
        return None

    def admit(self, agent_id: str, task: Task) -> Admission:
        """Run every policy's ``admit`` in order; roll back and raise on the first rejection."""
        policies = self._policies if self._base is None else self._current()
        decisions: list[Decision] = []
        for policy in policies:
            try:
                decision = policy.admit(agent_id, task)
            except BaseException:
                self._rollback(agent_id, task, policies, decisions)
                raise
            decisions.append(decision)
            if decision.blocks:
                self._rollback(agent_id, task, policies, decisions)
                raise PolicyViolationError(decision.policy or policy.name, agent_id, decision.detail)
        return Admission(agent_id, task, policies, decisions)

    def check_all(self, agent_id: str, task: Task) -> list[str]:
        """Check ``task`` as a scheduler does after a grant; return the names of the policies, all passed.

        Raises the first rejection, after rolling back what earlier policies
        reserved. What the policies reserve (a budget's estimate, a rate
        token) stays reserved until ``record_all(agent_id, task)``.
        """
        admission = self.admit(agent_id, task)
        with self._lock:
            self._checked.setdefault((agent_id, task), []).append(admission)
        return [policy.name for policy in admission.policies]

    def record_all(self, agent_id: str, task: Task) -> None:
        """Tell every policy that ``task`` has completed.

        After ``check_all(agent_id, task)``, this settles what that check
        reserved, as a scheduler does after work that succeeded. Without
        one, it calls each policy's ``record``.
        """
        with self._lock:
            pending = self._checked.get((agent_id, task))
            admission = pending.pop(0) if pending else None
            if pending == []:
                del self._checked[(agent_id, task)]
        if admission is not None:
            self.settle(admission, SUCCEEDED)
            return
        for policy in self._current():
            policy.record(agent_id, task)

    def settle(self, admission: Admission, outcome: Outcome) -> None:
        """Tell every policy that admitted the task how it ended; each policy settles once."""
        if admission._settled:
            return
        admission._settled = True
        for policy, decision in zip(admission.policies, admission.decisions, strict=True):
            if policy._settles:
                try:
                    policy.settle(admission.agent_id, admission.task, decision, outcome)
                except Exception:
                    logger.exception(
                        "policy %r failed to settle a task of agent %r", policy.name, admission.agent_id
                    )

    def withdraw(self, admission: Admission) -> None:
        """The admitted task will not run: give back what its policies reserved instead of settling."""
        if admission._settled:
            return
        admission._settled = True
        self._rollback(admission.agent_id, admission.task, admission.policies, admission.decisions)

    @staticmethod
    def _rollback(agent_id: str, task: Task, policies: tuple[Policy, ...], decisions: list[Decision]) -> None:
        # ``decisions`` ends at the policy that rejected; zip stops there.
        for policy, decision in zip(policies, decisions, strict=False):
            if not policy._rolls_back:
                continue
            try:
                policy.rollback(agent_id, task, decision)
            except Exception:
                logger.exception("policy %r failed to roll back a task of agent %r", policy.name, agent_id)

    def summary(self) -> dict[str, Any]:
        """Each policy's ``summary()`` under its name."""
        return {policy.name: policy.summary() for policy in self._current()}

    def _names(self) -> list[str]:
        return [policy.name for policy in self._current()]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __bool__(self) -> bool:
        return bool(self._current())

    def __repr__(self) -> str:
        return f"PolicyEnforcer({self._names()!r})"
