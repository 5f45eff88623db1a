"""BudgetPolicy: per-agent spend limits, reserved at check time and settled after the work."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from proctor._numbers import from_units, is_amount, to_units
from proctor.decision import Action, Decision
from proctor.errors import BudgetExceededError, ConfigurationError, StoreError
from proctor.outcome import Outcome
from proctor.policy.base import Policy
from proctor.stores._default import resolve_store
from proctor.stores.base import LedgerSupport, Store, missing_capability
from proctor.stores.fallback import count_fallback, health_of
from proctor.stores.memory import MemoryStore
from proctor.task import Task

__all__ = ["BudgetManager", "BudgetPolicy"]

logger = logging.getLogger("proctor.budget")

Mode = Literal["reject", "alert", "downgrade"]
_MODES = ("reject", "alert", "downgrade")
OnStoreError = Literal["closed", "open"]
_ON_STORE_ERROR = ("closed", "open")
_WRITE_LEASE = 60.0  # seconds held by the reservation that writes spend allowed during an outage
_CALENDAR_PERIODS = ("hour", "day", "month")
_ALERTS_KEPT = 100
DEFAULT_LEASE = 300.0
"""Seconds a reservation is held by default before it is given back."""
_ALLOW = Action.ALLOW


def _check_amount(what: str, value: object) -> float:
    if not is_amount(value):
        raise ConfigurationError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


class BudgetPolicy(Policy):
    """Per-agent spend limits.

    The check reserves the task's estimated cost (``Task.cost``, else its
    weight) atomically, so concurrent tasks can never push spend past a limit
    in ``"reject"`` mode; a later policy's rejection gives the reservation
    back, and settling replaces it by the actual cost (``grant.cost = ...``
    inside the work) or, when none was reported, by the estimate.

    Parameters:
        default_limit: the limit of agents without their own; None for no limit.
        on_exceeded: what happens to a task that would go over the limit:
            ``"reject"`` raises ``BudgetExceededError``; ``"alert"`` lets it run
            and logs a warning; ``"downgrade"`` lets it run with
            ``grant.downgraded = True`` so the caller can switch to a cheaper
            model. Every mode keeps an entry in ``alerts``.
        period: when spend starts over: ``"hour"``, ``"day"`` or ``"month"``
            (calendar boundaries in ``timezone``) or a number of seconds
            (fixed windows counted from the Unix epoch); None never.
        store: where the ledger lives: a ``Store`` or its URL
            (``"sqlite:///proctor.db"``); by default the process's store
            (``set_store()``, ``PROCTOR_STORE``), else a private ``MemoryStore``.
        namespace: the first part of this policy's keys in the store, so that
            policies sharing a store do not mix their state; the policy's name
            (``"budget"``) by default.
        lease: seconds a reservation is held for a task that has not settled;
            after that it is given back (its holder is taken for dead), and a
            late settle still records the actual cost.
        timezone: the zone of calendar periods; the local zone by default.
        clock: returns the current Unix time; for tests.
        on_store_error: what a check does while the store does not answer
            (a call timed out or was refused: ``StoreError``). ``"closed"``
            (the default) raises ``StoreError``: no call runs unchecked.
            ``"open"`` lets every call run unchecked and keeps its actual
            cost in this process until the store answers, then writes it
            to the ledger once. The risk is yours: during an outage the
            limit does not hold at all (every process spends without a
            check), and spend kept by a process that exits before the store
            returns is never counted. Either way the decision is counted
            (``proctor.stores.fallback.fallbacks()``) and the store is tried
            again every half second. Settles and releases of reservations
            made before the outage wait for the store in every mode, and
            count once when it answers.
    """

    name = "budget"

    def __init__(
        self,
        default_limit: float | None = None,
        on_exceeded: Mode = "reject",
        period: str | float | None = None,
        *,
        store: Store | str | None = None,
        namespace: str | None = None,
        timezone: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        lease: float = DEFAULT_LEASE,
        on_store_error: OnStoreError = "closed",
    ) -> None:
        if default_limit is not None:
            default_limit = _check_amount("default_limit", default_limit)
        if on_exceeded not in _MODES:
            raise ConfigurationError(
                f"on_exceeded must be one of {', '.join(map(repr, _MODES))}, got {on_exceeded!r}"
            )
        if on_store_error not in _ON_STORE_ERROR:
            raise ConfigurationError(
                f"on_store_error must be 'closed' (refuse calls while the store is down) or 'open' "
                f"(let them run unchecked, and count their spend when it is back), got {on_store_error!r}"
            )
        if not is_amount(lease, inclusive=False):
            raise ConfigurationError(f"lease must be a finite number of seconds > 0, got {lease!r}")
        self.default_limit = default_limit
        self.lease = float(lease)
        self.on_exceeded: Mode = on_exceeded
        self.on_store_error: OnStoreError = on_store_error
        self._limits: dict[str, float] = {}
        resolved = resolve_store(store) or MemoryStore()
        if not isinstance(resolved, LedgerSupport):
            raise missing_capability(resolved, LedgerSupport, "BudgetPolicy")
        self._store = resolved
        self._health = health_of(resolved)
        self.blocking = resolved.blocking
        self.namespace = self.name if namespace is None else namespace
        self._prefix = f"{self.namespace}:"
        self._alerts: deque[dict[str, Any]] = deque(maxlen=_ALERTS_KEPT)
        self._clock = clock
        self._window = _Window.parse(period, timezone)

    @property
    def period(self) -> str | float | None:
        """The period after which spend starts over, as given."""
        return self._window.period

    def set_limit(self, agent_id: str, max_cost: float) -> None:
        """Give ``agent_id`` its own limit."""
        self._limits[agent_id] = _check_amount("max_cost", max_cost)

    def remove_limit(self, agent_id: str) -> None:
        """Drop ``agent_id``'s own limit; the default applies again."""
        self._limits.pop(agent_id, None)

    def get_limit(self, agent_id: str) -> float | None:
        """``agent_id``'s limit, or None when it has none."""
        return self._limits.get(agent_id, self.default_limit)

    def spent(self, agent_id: str) -> float:
        """Spend committed by ``agent_id`` in the current period."""
        return from_units(self._ledger(agent_id)[0])

    def reserved(self, agent_id: str) -> float:
        """Cost reserved by ``agent_id``'s tasks that are running now."""
        return from_units(self._ledger(agent_id)[1])

    def remaining(self, agent_id: str) -> float | None:
        """What ``agent_id`` may still reserve this period: limit - spent - reserved; None if unlimited."""
        limit = self.get_limit(agent_id)
        if limit is None:
            return None
        spent, reserved = self._ledger(agent_id)
        return max(from_units(to_units(limit) - spent - reserved), 0.0)

    def record_spend(self, agent_id: str, cost: float) -> None:
        """Add spend made outside any grant."""
        self._store.spend(self._prefix + agent_id, to_units(_check_amount("cost", cost)), self._current())

    def reset(self, agent_id: str) -> None:
        """Start ``agent_id``'s spend over at zero."""
        self._store.clear(self._prefix + agent_id)

    def reset_all(self) -> None:
        """Start every agent's spend over at zero."""
        for key in self._store.keys(self._prefix):
            self._store.clear(key)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The latest over-limit events in every mode (at most 100), oldest first.

        Each is ``{"agent_id", "current", "task_cost", "limit", "action"}``,
        ``action`` being the mode: ``"reject"``, ``"alert"`` or ``"downgrade"``.
        """
        return list(self._alerts)

    def check(self, agent_id: str, task_cost: Task | float = 0.0) -> bool:
        """Whether a task (or a bare cost) fits in ``agent_id``'s budget now; reserves nothing.

        A task that does not fit is recorded in ``alerts``; in ``"reject"``
        mode it raises ``BudgetExceededError``, in the other modes the answer
        is False.
        """
        if isinstance(task_cost, Task):
            cost = task_cost.estimated_cost
        else:
            cost = _check_amount("task_cost", task_cost)
        limit = self.get_limit(agent_id)
        if limit is None:
            return True
        spent, reserved = self._ledger(agent_id)
        if spent + reserved + to_units(cost) <= to_units(limit):
            return True
        current = from_units(spent + reserved)
        self._exceeded(agent_id, current, cost, limit)
        if self.on_exceeded == "reject":
            raise BudgetExceededError(agent_id, current, limit, cost, self.name)
        return False

    def record(self, agent_id: str, task: Task) -> None:
        """Add ``task``'s estimated cost to the spend, for callers that check and record by hand.

        The schedulers settle the reservation of their own check instead.
        """
        self.record_spend(agent_id, task.estimated_cost)

    def admit(self, agent_id: str, task: Task) -> Decision:
        cost = task.cost
        if cost is None:
            cost = task.weight
        units = to_units(cost)
        limit = self._limits.get(agent_id, self.default_limit)
        key = self._prefix + agent_id
        now = self._clock()
        window = self._window.index(now)
        limit_units = None if limit is None else to_units(limit)
        cap = limit_units if self.on_exceeded == "reject" else None
        health = self._health
        if health.down and not health.should_try():
            return self._without_store(key, units, None)
        try:
            lease_id, spent, reserved = self._store.reserve(key, units, cap, window, now, self.lease)
        except StoreError as exc:
            health.failed(exc)
            return self._without_store(key, units, exc)
        if health.down:
            health.answered()
        if limit is None or limit_units is None:
            return _Held(self.name, (lease_id, units))
        if cap is not None:
            if lease_id is None:
                current = from_units(spent + reserved)
                self._exceeded(agent_id, current, cost, limit)
                raise BudgetExceededError(agent_id, current, limit, cost, self.name)
            return _Held(self.name, (lease_id, units))
        if spent + reserved + units <= limit_units:
            return Decision(_ALLOW, self.name, reservation=(lease_id, units))
        current = from_units(spent + reserved)
        detail = f"cost {cost:g} brings spend to {current + cost:g}, over the limit of {limit:g}"
        self._exceeded(agent_id, current, cost, limit)
        if self.on_exceeded == "alert":
            logger.warning("budget alert for agent %r: %s", agent_id, detail)
            return Decision(Action.LOG, self.name, detail, reservation=(lease_id, units))
        return Decision(_ALLOW, self.name, detail, downgrade=True, reservation=(lease_id, units))

    def _exceeded(self, agent_id: str, current: float, cost: float, limit: float) -> None:
        self._alerts.append(
            {
                "agent_id": agent_id,
                "current": current,
                "task_cost": cost,
                "limit": limit,
                "action": self.on_exceeded,
            }
        )

    def _without_store(self, key: str, units: int, error: StoreError | None) -> Decision:
        """Decide while the store is down: refuse (``"closed"``) or allow unchecked (``"open"``)."""
        if self.on_store_error == "closed":
            count_fallback("budget", "closed")
            if error is not None:
                raise error
            raise StoreError(
                f"{self._health.name} is down, so budget {self.name!r} refuses calls "
                f"(on_store_error='closed'); it is tried again every {self._health.probe_interval:g}s"
            )
        count_fallback("budget", "open")
        return Decision(
            _ALLOW,
            self.name,
            "the store is down: allowed unchecked (on_store_error='open'); spend is counted on its return",
            reservation=_Unchecked(units),
        )

    def rollback(self, agent_id: str, task: Task, decision: Decision) -> None:
        held = decision.reservation
        if isinstance(held, tuple) and held[0] is not None:
            lease_id, key = held[0], self._prefix + agent_id
            self._health.settle(lambda: self._store.release(key, lease_id))

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        """Replace the task's reservation by its actual cost (the estimate when none was reported); once.

        While the store is down the settle waits in this process and is made
        when the store answers again (in the period current then); a
        settle is idempotent on its lease, so one that timed out but ran
        still counts once.
        """
        held = decision.reservation
        key = self._prefix + agent_id
        if isinstance(held, _Unchecked):
            actual = held.units if outcome.cost is None else to_units(outcome.cost)
            self._health.settle(_WriteSpend(self, key, actual))
            return
        if not isinstance(held, tuple) or held[0] is None:
            return
        lease_id, units = held
        actual = units if outcome.cost is None else to_units(outcome.cost)
        health = self._health
        if health.down:
            health.settle(lambda: self._store.settle(key, lease_id, actual, self._current()))
            return
        try:  # the usual path, without a closure
            self._store.settle(key, lease_id, actual, self._current())
        except StoreError as exc:
            health.failed(exc)
            health.defer(lambda: self._store.settle(key, lease_id, actual, self._current()))

    def summary(self) -> dict[str, Any]:
        """``{agent: {"limit", "spent", "remaining"}}`` for agents with a limit of their own or with spend.

        Spend here is this period's, committed or reserved.
        """
        agents = set(self._limits)
        now = self._clock()
        window = self._window_at(now)
        for key in self._store.keys(self._prefix):
            if any(self._store.get(key, window, now)):
                agents.add(key[len(self._prefix) :])
        return {
            agent: {
                "limit": self.get_limit(agent),
                "spent": self.spent(agent),
                "remaining": self.remaining(agent),
            }
            for agent in sorted(agents)
        }

    def _ledger(self, agent_id: str) -> tuple[int, int]:
        now = self._clock()
        window = self._window_at(now)
        return self._store.get(self._prefix + agent_id, window, now)

    def _current(self) -> int:
        return self._window_at(self._clock())

    def _window_at(self, now: float) -> int:
        """The index of the period ``now`` falls in; 0 when spend never starts over."""
        window = self._window
        return 0 if window.period is None else window.index(now)


BudgetManager = BudgetPolicy
"""The name of ``BudgetPolicy`` in earlier releases; the same class."""


class _Held(Decision):
    """An allow decision holding a reservation: one is made per admitted task, so without keywords."""

    __slots__ = ()

    def __init__(self, policy: str, reservation: tuple[int | None, int]) -> None:
        self.action = _ALLOW
        self.blocks = False
        self.policy = policy
        self.detail = ""
        self.downgrade = False
        self.reservation = reservation


class _Unchecked:
    """The reservation of a call allowed while the store was down: the estimate, and nothing held."""

    __slots__ = ("units",)

    def __init__(self, units: int) -> None:
        self.units = units


class _WriteSpend:
    """Writes spend allowed during an outage to the ledger, once, even when a try times out.

    A plain ``spend`` that timed out may have run, so trying it again could
    count it twice. This reserves the amount (a reservation that timed out but
    ran holds nothing for long: it expires after ``_WRITE_LEASE`` seconds) and
    then settles that one lease, which is idempotent.
    """

    __slots__ = ("actual", "key", "lease_id", "policy")

    def __init__(self, policy: BudgetPolicy, key: str, actual: int) -> None:
        self.policy = policy
        self.key = key
        self.actual = actual
        self.lease_id: int | None = None

    def __call__(self) -> None:
        policy, lease_id = self.policy, self.lease_id
        if lease_id is None:
            now = policy._clock()
            lease_id, _, _ = policy._store.reserve(
                self.key, self.actual, None, policy._window_at(now), now, _WRITE_LEASE
            )
            self.lease_id = lease_id
        if lease_id is not None:  # always: without a limit nothing refuses it
            policy._store.settle(self.key, lease_id, self.actual, policy._current())


class _Window:
    """Numbers the budget periods: spend in different periods never adds up.

    A period's number is its start as a Unix timestamp, so numbers grow with time.
    """

    __slots__ = ("_end", "_seconds", "_start", "_tz", "_unit", "period")

    def __init__(self, period: str | float | None, seconds: float, unit: str, tz: tzinfo | None) -> None:
        self.period = period
        self._seconds = seconds
        self._unit = unit
        self._tz = tz
        self._start = 0.0
        self._end = 0.0

    @classmethod
    def parse(cls, period: str | float | None, tz: tzinfo | None) -> _Window:
        if period is None:
            return cls(None, 0.0, "", tz)
        if isinstance(period, str):
            if period not in _CALENDAR_PERIODS:
                raise ConfigurationError(
                    f"period must be 'hour', 'day', 'month' or a number of seconds, got {period!r}"
                )
            return cls(period, 0.0, period, tz)
        if not is_amount(period, inclusive=False):
            raise ConfigurationError(f"period in seconds must be a finite number > 0, got {period!r}")
        return cls(period, float(period), "", tz)

    def index(self, now: float) -> int:
        if self.period is None:
            return 0
        if self._seconds:
            return math.floor(now / self._seconds)
        if not self._start <= now < self._end:
            self._start, self._end = self._calendar(now)
        return int(self._start)

    def bounds(self, now: float) -> tuple[float, float]:
        """The start and end of the period holding ``now``, as Unix times (infinite without a period)."""
        if self.period is None:
            return -math.inf, math.inf
        if self._seconds:
            start = math.floor(now / self._seconds) * self._seconds
            return start, start + self._seconds
        return self._calendar(now)

    def _calendar(self, now: float) -> tuple[float, float]:
        # Naive datetimes are local time, and their wall-clock arithmetic and
        # .timestamp() follow daylight saving; so do aware ones with a ZoneInfo.
        moment = datetime.fromtimestamp(now, self._tz)
        if self._unit == "hour":
            start = moment.replace(minute=0, second=0, microsecond=0)
            end = start + timedelta(hours=1)
        elif self._unit == "day":
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + timedelta(days=1)
        else:
            start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            end = (start + timedelta(days=32)).replace(day=1)
        return start.timestamp(), end.timestamp()
