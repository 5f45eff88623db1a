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

    Subclass it and override ``check`` (return True to allow; return False or
    raise ``PolicyViolationError`` to reject) and, optionally, ``record``
    (called after the work, once the slot is released).

    Policies that keep state override the two-phase methods instead:
    ``admit`` decides and reserves atomically, ``rollback`` undoes the
    reservation when a later policy rejects the same action, and ``settle``
    replaces it by what actually happened. ``PolicyEnforcer`` calls only these
    three; their defaults adapt ``check`` and ``record``.
    """

    name: str = "policy"
    """The name used by ``PolicyEnforcer.get_policy`` / ``remove_policy`` and in errors."""

    # Whether the enforcer must call settle() / rollback(): skipping the
    # inherited no-ops keeps the dispatch path short.
    _settles: ClassVar[bool] = False
    _rolls_back: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._settles = cls.settle is not Policy.settle or cls.record is not Policy.record
        cls._rolls_back = cls.rollback is not Policy.rollback

    def check(self, agent_id: str, task: Task) -> bool:
        """Return True to allow; return False or raise ``PolicyViolationError`` to reject."""
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
