"""Every error proctor raises, in one tree.

```
ProctorError
 ├── PolicyViolationError        a policy rejected an action
 │    ├── BudgetExceededError    ... because it would overspend a budget
 │    └── RuleViolationError     ... because a rule of a policy file denied it
 ├── RunTerminated               a terminate rule stopped the run
 ├── BackpressureError           too many callers already waiting for a slot
 ├── ShutdownError               the scheduler is shutting down
 ├── StoreError                  the state backend failed (driver error kept)
 ├── ApprovalError               the approval store refused: unknown id, decided, not yours
 ├── ReplayedError               a recorded exception whose class cannot be raised again
 ├── RunResumed                  why a resumed run ended: it goes on as another run
 ├── ResumeStarting              the note on a run while resume() starts its continuation
 └── ConfigurationError          bad arguments, caught at construction
      │ (also a ValueError, so `except ValueError` keeps working)
      └── PolicyConfigError      a policy file is invalid: every problem, with file:line:column

BaseException
 └── ReplayDiverged              a replay left its recording (not an Exception, so agents'
                                 `except Exception` cannot hide it)
```

Waiting longer than an ``acquire(..., timeout=...)`` raises the builtin
``TimeoutError``.
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "BackpressureError",
    "BudgetExceededError",
    "ConfigurationError",
    "PolicyConfigError",
    "PolicyViolationError",
    "ProctorError",
    "ReplayDiverged",
    "ReplayedError",
    "ResumeStarting",
    "RuleViolationError",
    "RunResumed",
    "RunTerminated",
    "ShutdownError",
    "StoreError",
]


class ProctorError(Exception):
    """Base class of every error proctor raises on purpose."""


class PolicyViolationError(ProctorError):
    """A policy rejected an action.

    Parameters:
        policy_name: the ``name`` of the policy that rejected.
        agent_id: the agent whose action was rejected.
        detail: why, in words meant for a person.
    """

    def __init__(self, policy_name: str, agent_id: str, detail: str) -> None:
        self.policy_name = policy_name
        self.agent_id = agent_id
        self.detail = detail
        super().__init__(policy_name, agent_id, detail)

    def __str__(self) -> str:
        return f"policy {self.policy_name!r} rejected agent {self.agent_id!r}: {self.detail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(policy_name={self.policy_name!r}, "
            f"agent_id={self.agent_id!r}, detail={self.detail!r})"
        )


class BudgetExceededError(PolicyViolationError):
    """The budget policy rejected an action because it would exceed the limit.

    Parameters:
        agent_id: the agent over budget.
        current: spend already committed or reserved in the current period.
        limit: the agent's limit.
        task_cost: the cost of the rejected task.
        policy_name: the name of the rejecting policy (``"budget"``).
    """

    def __init__(
        self,
        agent_id: str,
        current: float,
        limit: float,
        task_cost: float,
        policy_name: str = "budget",
    ) -> None:
        self.current = current
        self.limit = limit
        self.task_cost = task_cost
        detail = (
            f"cost {task_cost:g} would bring spend to {current + task_cost:g}, over the limit of {limit:g}"
        )
        super().__init__(policy_name, agent_id, detail)
        self.args = (agent_id, current, limit, task_cost)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(agent_id={self.agent_id!r}, current={self.current!r}, "
            f"limit={self.limit!r}, task_cost={self.task_cost!r})"
        )


class RuleViolationError(PolicyViolationError):
    """A rule of a policy file denied an action (or its approval was refused or timed out).

    Parameters:
        rule_id: the id of the deciding rule; also the error's ``policy_name``.
        rule_name: the rule's name, when it has one.
        agent_id: the agent whose action was denied.
        detail: the rule's message.
    """

    def __init__(self, rule_id: str, rule_name: str | None, agent_id: str, detail: str) -> None:
        self.rule_id = rule_id
        self.rule_name = rule_name
        super().__init__(rule_id, agent_id, detail)
        self.args = (rule_id, rule_name, agent_id, detail)

    def __str__(self) -> str:
        name = f" ({self.rule_name})" if self.rule_name else ""
        return f"rule {self.rule_id!r}{name} denied agent {self.agent_id!r}: {self.detail}"


class BackpressureError(ProctorError):
    """More callers are waiting for a slot than the scheduler's ``max_waiters``."""


class ShutdownError(ProctorError):
    """The scheduler is shutting down and accepts no new work."""


class StoreError(ProctorError):
    """The state backend failed; the driver's exception is kept in ``store_error``."""

    def __init__(self, message: str, store_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.store_error = store_error


class ConfigurationError(ProctorError, ValueError):
    """An argument is invalid; raised when the object is built, never later."""


class PolicyConfigError(ConfigurationError):
    """A policy file failed to load; ``problems`` lists each one with its location.

    Parameters:
        problems: ``(location, message)`` pairs, the location as ``file:line:column``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{location}: {message}" for location, message in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"policy file has {count}:\n" + "\n".join(lines))

    def __repr__(self) -> str:
        return f"PolicyConfigError({self.problems!r})"


class RunTerminated(ProctorError):
    """A ``terminate`` rule stopped the run; every later call in it is refused without running.

    Parameters:
        run_id: the run that was stopped.
        rule_id: the rule that stopped it.
        detail: the rule's message.
    """

    def __init__(self, run_id: str, rule_id: str, detail: str) -> None:
        self.run_id = run_id
        self.rule_id = rule_id
        self.detail = detail
        super().__init__(run_id, rule_id, detail)

    def __str__(self) -> str:
        return f"run {self.run_id} terminated by rule {self.rule_id!r}: {self.detail}"


class ApprovalError(ProctorError):
    """The approval store refused a request: no such id, already decided, or not this person's to decide.

    Parameters:
        message: what is wrong and what to do.
        approval_id: the request concerned.
    """

    def __init__(self, message: str, approval_id: str | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id

    def __repr__(self) -> str:
        return f"ApprovalError({str(self)!r}, approval_id={self.approval_id!r})"


class ReplayDiverged(BaseException):
    """Raised inside a replayed run where it leaves its recording; ends the replay.

    A ``BaseException``, so that agent code catching ``Exception`` does not hide it.
    """


class ReplayedError(ProctorError):
    """A recorded exception that could not be raised as its own class again."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(type_name, message)

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class RunResumed(ProctorError):
    """Why a run that was resumed ended: it goes on as another run."""

    def __init__(self, run_id: str, continued_as: str) -> None:
        self.run_id = run_id
        self.continued_as = continued_as
        super().__init__(run_id, continued_as)

    def __str__(self) -> str:
        return f"run {self.run_id} was resumed as run {self.continued_as}"


class ResumeStarting(ProctorError):
    """The note on a run while ``resume`` starts its continuation; replaced once it has started."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)

    def __str__(self) -> str:
        return f"run {self.run_id} is being resumed"
