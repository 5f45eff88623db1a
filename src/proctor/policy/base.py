"""Policy: the base class of every check made at dispatch time."""

from __future__ import annotations

from typing import Any, ClassVar

from proctor.decision import ALLOW, Decision
from proctor.errors import PolicyViolationError
from proctor.outcome import Outcome
from proctor.task import Task

__all__ = ["Policy"]


class Policy:
    """A check on (agent, task) made after a slot is granted and before the work runs.

    An abstract class, as loco-agent's: subclass it and implement ``check``
    (return True to allow; return False or raise ``PolicyViolationError`` to
    reject) and, optionally, ``record`` (called after the work, once the slot
    is released). ``Policy()`` and a subclass without ``check`` raise ``TypeError``.

    Policies that keep state implement the two-phase methods instead (``admit``
    stands for ``check``): ``admit`` decides and reserves atomically,
    ``rollback`` undoes the reservation when a later policy rejects the same
    action, and ``settle`` replaces it by what actually happened.
    ``PolicyEnforcer`` calls only these three; their defaults adapt ``check``
    and ``record``, and such a policy's ``check`` admits and rolls back at once.
    """

    name: str = "policy"
    """The name used by ``PolicyEnforcer.get_policy`` / ``remove_policy`` and in errors."""

    blocking: bool = False
    """True when ``admit``, ``rollback`` or ``settle`` may wait on I/O (a store shared with other
    processes, a remote service): async schedulers then call them off the event loop."""

    # Whether the enforcer must call settle() / rollback(): skipping the
    # inherited no-ops keeps the dispatch path short.
    _settles: ClassVar[bool] = False
    _rolls_back: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._settles = cls.settle is not Policy.settle or cls.record is not Policy.record
        cls._rolls_back = cls.rollback is not Policy.rollback
        if cls.check is Policy.check and cls.admit is Policy.admit:
            _make_abstract(cls)

    def check(self, agent_id: str, task: Task) -> bool:
        """Return True to allow; return False or raise ``PolicyViolationError`` to reject.

        Subclasses implement it, unless they implement ``admit``: then this admits
        the task and rolls back at once, so that it reserves nothing.
        """
        decision = self.admit(agent_id, task)
        if decision.blocks:
            raise PolicyViolationError(decision.policy or self.name, agent_id, decision.detail)
        self.rollback(agent_id, task, decision)
        return True

    def record(self, agent_id: str, task: Task) -> None:
        """Called once after each admitted task has finished and released its slot."""

    def admit(self, agent_id: str, task: Task) -> Decision:
        """Decide on the task and reserve what it needs; raise to reject.

        The default calls ``check``: a falsy result is a rejection.
        """
        result = self.check(agent_id, task)
        if not result:
            raise PolicyViolationError(
                self.name, agent_id, f"{type(self).__name__}.check() returned {result!r}"
            )
        return ALLOW

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        """Undo what ``admit`` reserved: a later policy rejected the task."""

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        """The admitted task has finished; commit what it used. The default calls ``record``."""
        self.record(agent_id, task)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description of the policy's configuration and state."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _make_abstract(cls: type[Policy]) -> None:
    """Make ``cls`` refuse instances as an ABC whose ``check`` is abstract does, without a metaclass."""
    cls.__abstractmethods__ = frozenset({"check"})  # type: ignore[attr-defined]  # object.__new__ reads it


Policy.check.__isabstractmethod__ = True  # type: ignore[attr-defined]  # for subclasses that mix in an ABC
_make_abstract(Policy)
