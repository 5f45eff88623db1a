"""AccessPolicy: which agents may handle data of which security labels."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from proctor.decision import ALLOW, Decision
from proctor.errors import ConfigurationError, PolicyViolationError
from proctor.policy.base import Policy
from proctor.task import Task

__all__ = ["AccessPolicy"]

logger = logging.getLogger("proctor.policy")


def _label_value(label: object) -> str:
    value = getattr(label, "value", label)
    return value if isinstance(value, str) else str(value)


class AccessPolicy(Policy):
    """Allows an agent a task only if it may see every label on the task's data.

    Open by default: agents without a rule may handle anything, and tasks
    without labels pass. For an agent whose rule has ``labels``, every label
    value on the task (under ``input``, ``output`` or any other key) must be
    in that list: set membership, with no order between labels.

    Parameters:
        rules: by agent, ``{"labels": [allowed label values]}``; labels are
            ``SecurityLabel`` members or their string values. A rule without
            ``labels`` (or with ``None``) restricts nothing. ``"resources"``
            is accepted, as LOCO reserves it, but not enforced: a warning
            says so.
    """

    name = "access"

    def __init__(self, rules: Mapping[str, Mapping[str, Iterable[Any] | None]]) -> None:
        if isinstance(rules, set) and rules == {...}:
            # The seed's docs write ``AccessPolicy(rules={...})`` as a placeholder; that is a
            # set holding Ellipsis. Take it as "no rules yet" rather than fail the example.
            logger.warning("AccessPolicy(rules={...}) is a placeholder: no agent is restricted")
            rules = {}
        if not isinstance(rules, Mapping):
            raise ConfigurationError(f"rules must be a mapping of agent to rule, got {type(rules).__name__}")
        self._allowed: dict[str, frozenset[str]] = {}
        for agent, rule in rules.items():
            if not isinstance(rule, Mapping):
                raise ConfigurationError(
                    f"rule for agent {agent!r} must be a mapping such as {{'labels': [...]}}, got {rule!r}"
                )
            unknown = set(rule) - {"labels", "resources"}
            if unknown:
                raise ConfigurationError(
                    f"rule for agent {agent!r} has unknown keys {sorted(unknown)}; use 'labels'"
                )
            if "resources" in rule:
                logger.warning(
                    "AccessPolicy: the 'resources' of agent %r are not enforced; only 'labels' are", agent
                )
            labels = rule.get("labels")
            if labels is None:
                continue
            if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
                raise ConfigurationError(f"labels of agent {agent!r} must be a list, got {labels!r}")
            self._allowed[agent] = frozenset(_label_value(label) for label in labels)

    def allowed_labels(self, agent_id: str) -> frozenset[str] | None:
        """The label values ``agent_id`` may handle; None when no rule limits its labels (anything goes)."""
        return self._allowed.get(agent_id)

    def admit(self, agent_id: str, task: Task) -> Decision:
        allowed = self._allowed.get(agent_id)
        labels = task.labels
        if allowed is None or not labels:
            return ALLOW
        for role, label in labels.items():
            # SecurityLabel is a str: it is found in the set of allowed strings as it is.
            if label in allowed:
                continue
            value = _label_value(label)
            if value not in allowed:
                raise PolicyViolationError(
                    self.name,
                    agent_id,
                    f"{role} is labelled {value!r}; agent may handle only {sorted(allowed)}",
                )
        return ALLOW

    def check(self, agent_id: str, task: Task) -> bool:
        """True when ``agent_id`` may handle every label of ``task``; raises otherwise."""
        self.admit(agent_id, task)
        return True
