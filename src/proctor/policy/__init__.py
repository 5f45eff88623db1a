"""Policies checked at dispatch time, and the enforcer that composes them."""

from __future__ import annotations

from proctor.errors import BudgetExceededError, PolicyViolationError
from proctor.policy.access import AccessPolicy
from proctor.policy.base import Policy
from proctor.policy.budget import BudgetManager, BudgetPolicy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.policy.rate import RatePolicy

__all__ = [
    "AccessPolicy",
    "BudgetExceededError",
    "BudgetManager",
    "BudgetPolicy",
    "Policy",
    "PolicyEnforcer",
    "PolicyViolationError",
    "RatePolicy",
]
