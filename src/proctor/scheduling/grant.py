"""Grant: a slot held by one agent, from the policy check to the release."""

from __future__ import annotations

from proctor._numbers import is_amount
from proctor.agent import Agent
from proctor.decision import Decision
from proctor.policy.enforcer import Admission
from proctor.task import Task

__all__ = ["Grant"]


class Grant:
    """What ``acquire()`` yields while the slot is held, and what ``acquire_start()`` returns.

    Attributes:
        agent: the agent holding the slot.
        task: the task the slot was granted for.
        waited: seconds from the call to ``acquire()`` to the grant.
        cost: the actual cost; set it inside the work and budgets settle on
            it instead of the estimate.
        admission: the policies that admitted the task, with their
            decisions; None when the scheduler has no policies.
        fencing_token: the number of the slot's lease in the resource's
            store, larger than that of every earlier grant of the resource's
            name; a resource can refuse work that shows an older one.
    """

    __slots__ = ("_cost", "_scheduler", "admission", "agent", "fencing_token", "task", "waited")

    def __init__(
        self,
        agent: Agent,
        task: Task,
        waited: float,
        admission: Admission | None,
        scheduler: object,
        fencing_token: int,
    ) -> None:
        self.agent = agent
        self.task = task
        self.waited = waited
        self._cost: float | None = None
        self.admission = admission
        self._scheduler: object | None = scheduler  # None once the slot is released
        self.fencing_token = fencing_token

    @property
    def released(self) -> bool:
        """True once the slot has been given back."""
        return self._scheduler is None

    @property
    def cost(self) -> float | None:
        """The actual cost reported by the caller; None until it reports one."""
        return self._cost

    @cost.setter
    def cost(self, value: float | None) -> None:
        if value is not None and not is_amount(value):
            raise ValueError(f"grant.cost must be a finite number >= 0 or None, got {value!r}")
        self._cost = value

    @property
    def agent_id(self) -> str:
        """The id of the agent holding the slot."""
        return self.agent.agent_id

    @property
    def downgraded(self) -> bool:
        """True when a policy allowed the work only in a cheaper form (budget ``"downgrade"`` mode)."""
        return self.admission is not None and self.admission.downgraded

    @property
    def decisions(self) -> list[Decision]:
        """Every policy's decision on this task, in policy order."""
        return list(self.admission.decisions) if self.admission is not None else []

    def __repr__(self) -> str:
        flags = ", downgraded=True" if self.downgraded else ""
        return (
            f"Grant(agent_id={self.agent_id!r}, task_id={self.task.task_id!r}, "
            f"waited={self.waited:.6f}{flags})"
        )
