"""Decision: what one policy says about one action."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALLOW", "Action", "Decision"]


class Action(StrEnum):
    """What should happen to an action, from the mildest to the strictest."""

    ALLOW = "allow"
    LOG = "log"
    MODIFY = "modify"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"
    TERMINATE = "terminate"


class Decision:
    """One policy's verdict on one action.

    Parameters:
        action: what should happen.
        policy: the name of the deciding policy.
        detail: why, in words meant for a person.
        downgrade: allowed, but the caller should switch to a cheaper way
            (the budget policy's ``"downgrade"`` mode sets it).
        reservation: what the policy reserved in its check (a budget amount,
            a rate token) for it to settle or roll back later; opaque to others.

    ``blocks`` is True when the action must not run (deny or terminate).
    """

    __slots__ = ("action", "blocks", "detail", "downgrade", "policy", "reservation")

    def __init__(
        self,
        action: Action = Action.ALLOW,
        policy: str = "",
        detail: str = "",
        *,
        downgrade: bool = False,
        reservation: object = None,
    ) -> None:
        self.action = action
        self.blocks = action is Action.DENY or action is Action.TERMINATE
        self.policy = policy
        self.detail = detail
        self.downgrade = downgrade
        self.reservation = reservation

    def __repr__(self) -> str:
        extra = ", downgrade=True" if self.downgrade else ""
        return f"Decision({self.action.value}, policy={self.policy!r}, detail={self.detail!r}{extra})"


ALLOW = Decision()
"""The decision of a policy that has nothing to say and reserved nothing."""
