"""RatePolicy: per-agent request rates, as token buckets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Literal

from proctor._numbers import is_amount
from proctor.decision import Action, Decision
from proctor.errors import ConfigurationError, PolicyViolationError, StoreError
from proctor.policy.base import Policy
from proctor.stores._default import resolve_store
from proctor.stores.base import Store, TokenBucketSupport, missing_capability
from proctor.stores.fallback import LocalShare, count_fallback, health_of
from proctor.stores.memory import MemoryStore
from proctor.task import Task

__all__ = ["RatePolicy"]

OnStoreError = Literal["closed", "local_share"]
_ON_STORE_ERROR = ("closed", "local_share")
_LOCAL = "local"  # the reservation of a token taken from the local share


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
        on_store_error: what a check does while the store does not answer
            (a call timed out or was refused: ``StoreError``): ``"closed"``
            raises ``StoreError``, so no call runs unchecked; ``"local_share"``
            checks the call against a bucket of this process's own, of
            ``limit / processes`` tokens refilled at ``limit / processes`` per
            period, empty when the outage starts. Either way the decision is
            counted (``proctor.stores.fallback.fallbacks()``), the store is
            tried again every half second, and the first call it answers ends
            the outage. Tokens taken locally are not charged to the shared
            bucket afterwards.
        processes: how many processes share the limit, for ``"local_share"``
            (proctor cannot count them: say the most that run at once). With
            the right number, the processes together stay within the limit's
            rate during an outage.
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
        on_store_error: OnStoreError = "closed",
        processes: int | None = None,
    ) -> None:
        self.period = _check_limit("period", period)
        self._limits = {agent: _check_limit(f"limits[{agent!r}]", n) for agent, n in (limits or {}).items()}
        self.default_limit = None if default_limit is None else _check_limit("default_limit", default_limit)
        self.on_store_error: OnStoreError = on_store_error
        self.processes = processes
        self._share = self._local_share(on_store_error, processes)
        resolved = resolve_store(store) or MemoryStore()
        if not isinstance(resolved, TokenBucketSupport):
            raise missing_capability(resolved, TokenBucketSupport, "RatePolicy")
        self._store = resolved
        self.blocking = resolved.blocking
        self.namespace = self.name if namespace is None else namespace
        self._prefix = f"{self.namespace}:"
        self._clock = clock
        self._health = health_of(resolved)
        self._token = Decision(Action.ALLOW, self.name, reservation=1.0)
        self._local_token = Decision(Action.ALLOW, self.name, reservation=_LOCAL)

    def _local_share(self, on_store_error: str, processes: int | None) -> LocalShare | None:
        if on_store_error not in _ON_STORE_ERROR:
            choices = ", ".join(map(repr, _ON_STORE_ERROR))
            raise ConfigurationError(f"on_store_error must be one of {choices}, got {on_store_error!r}")
        if on_store_error == "closed":
            if processes is not None:
                raise ConfigurationError(
                    "processes is the number of processes that share the limit while the store is down: "
                    "it goes with on_store_error='local_share'"
                )
            return None
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ConfigurationError(
                "on_store_error='local_share' needs processes=N, the number of processes that share the "
                f"limit (each then takes limit / N while the store is down), got {processes!r}"
            )
        for agent, limit in (*self._limits.items(), ("default_limit", self.default_limit)):
            if limit is not None and limit / processes < 1.0:
                raise ConfigurationError(
                    f"the limit of {agent!r}, {limit:g}, shared by {processes} processes leaves each less "
                    "than one call per period while the store is down; use a longer period, fewer "
                    "processes, or on_store_error='closed'"
                )
        return LocalShare(processes)

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
        key, now, health = self._prefix + agent_id, self._clock(), self._health
        if health.down and not health.should_try():
            return self._without_store(agent_id, key, limit, now, None)
        try:
            ok, level = self._store.take(key, 1.0, limit, limit / self.period, now)
        except StoreError as exc:
            health.failed(exc)
            return self._without_store(agent_id, key, limit, now, exc)
        if health.down:
            health.answered()
        if not ok:
            wait = (1.0 - level) * self.period / limit
            raise PolicyViolationError(
                self.name,
                agent_id,
                f"Rate limit exceeded ({limit}/{self.period}s): the rate limit of {limit:g} per "
                f"{self.period:g}s is reached; next token in {wait:.2f}s",
            )
        return self._token

    def _without_store(
        self, agent_id: str, key: str, limit: float, now: float, error: StoreError | None
    ) -> Decision:
        """Decide while the store is down: refuse (``"closed"``) or check the local share."""
        share = self._share
        if share is None:
            count_fallback("rate", "closed")
            if error is not None:
                raise error
            raise StoreError(
                f"{self._health.name} is down, so rate limit {self.name!r} refuses calls "
                f"(on_store_error='closed'); it is tried again every {self._health.probe_interval:g}s. "
                "To go on within a share "
                "of the limit meanwhile, set on_store_error='local_share' and processes=N"
            )
        count_fallback("rate", "local_share")
        ok, level = share.take(key, limit, self.period, now, self._health.outages)
        if ok:
            return self._local_token
        wait = share.wait(level, limit, self.period)
        raise PolicyViolationError(
            self.name,
            agent_id,
            f"Rate limit exceeded ({limit}/{self.period}s): the store is down and this process's share of "
            f"the rate limit, {limit / share.processes:g} per {self.period:g}s, is reached; "
            f"next token in {wait:.2f}s",
        )

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        if decision.reservation is None:
            return
        limit = self._limits.get(agent_id, self.default_limit)
        if limit is None:
            return
        key = self._prefix + agent_id
        if decision.reservation is _LOCAL:
            if self._share is not None:
                self._share.refund(key, limit)
            return
        if self._health.down:
            return  # the token stays taken: the limit errs on the safe side
        try:
            self._store.refund(key, 1.0, limit)
        except StoreError as exc:
            self._health.failed(exc)
