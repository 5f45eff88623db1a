"""RatePolicy: per-agent request rates, as token buckets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from proctor._numbers import is_amount
from proctor.decision import Action, Decision
from proctor.errors import ConfigurationError, PolicyViolationError
from proctor.policy.base import Policy
from proctor.stores._default import resolve_store
from proctor.stores.base import Store, TokenBucketSupport, missing_capability
from proctor.stores.memory import MemoryStore
from proctor.task import Task

__all__ = ["RatePolicy"]


def _check_limit(what: str, value: object) -> float:
    if not is_amount(value, inclusive=False):
        raise ConfigurationError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


class RatePolicy(Policy):
    """At most ``limit`` requests per ``period`` seconds for each agent, as a token bucket.

    Each agent's bucket holds up to ``limit`` tokens (the burst) and refills at
    ``limit / period`` tokens per second; each admitted task takes one. A task
    rejected by a later policy gets its token back.

    Parameters:
        limits: requests per period, by agent.
        period: the period in seconds.
        default_limit: the limit of agents not in ``limits``; None for no limit.
        store: where the buckets live: a ``Store`` or its URL
            (``"sqlite:///proctor.db"``); by default the process's store
            (``set_store()``, ``PROCTOR_STORE``), else a private ``MemoryStore``.
        namespace: the first part of this policy's keys in the store, so that
            policies sharing a store do not mix their state; the policy's name
            (``"rate"``) by default.
        clock: returns the current time in seconds; for tests.
    """

    name = "rate"

    def __init__(
        self,
        limits: Mapping[str, float] | None = None,
        period: float = 60.0,
        default_limit: float | None = None,
        *,
        store: Store | str | None = None,
        namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.period = _check_limit("period", period)
        self._limits = {agent: _check_limit(f"limits[{agent!r}]", n) for agent, n in (limits or {}).items()}
        self.default_limit = None if default_limit is None else _check_limit("default_limit", default_limit)
        resolved = resolve_store(store) or MemoryStore()
        if not isinstance(resolved, TokenBucketSupport):
            raise missing_capability(resolved, TokenBucketSupport, "RatePolicy")
        self._store = resolved
        self.blocking = resolved.blocking
        self.namespace = self.name if namespace is None else namespace
        self._prefix = f"{self.namespace}:"
        self._clock = clock
        self._token = Decision(Action.ALLOW, self.name, reservation=1.0)

    def limit(self, agent_id: str) -> float | None:
        """Requests per period allowed to ``agent_id``; None if unlimited."""
        return self._limits.get(agent_id, self.default_limit)

    def remaining(self, agent_id: str) -> float | None:
        """Whole tokens in ``agent_id``'s bucket: how many requests it may make now; None if unlimited.

        A token that is refilling counts once it is whole, when a request would pass.
        """
        limit = self._limits.get(agent_id, self.default_limit)
        if limit is None:
            return None
        level = self._store.peek(self._prefix + agent_id, limit, limit / self.period, self._clock())
        return float(math.floor(level))

    def check(self, agent_id: str, task: Task) -> bool:
        """Take a token for ``agent_id``; raise ``PolicyViolationError`` when the bucket is empty."""
        self.admit(agent_id, task)
        return True

    def admit(self, agent_id: str, task: Task) -> Decision:
        limit = self._limits.get(agent_id, self.default_limit)
        if limit is None:
            return Decision(Action.ALLOW, self.name)
        ok, level = self._store.take(self._prefix + agent_id, 1.0, limit, limit / self.period, self._clock())
        if not ok:
            wait = (1.0 - level) * self.period / limit
            raise PolicyViolationError(
                self.name,
                agent_id,
                f"Rate limit exceeded ({limit}/{self.period}s): the rate limit of {limit:g} per "
                f"{self.period:g}s is reached; next token in {wait:.2f}s",
            )
        return self._token

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        if decision.reservation is not None:
            limit = self._limits.get(agent_id, self.default_limit)
            if limit is not None:
                self._store.refund(self._prefix + agent_id, 1.0, limit)
