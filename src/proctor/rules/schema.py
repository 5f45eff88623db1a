"""The shape of a policy file, as pydantic models.

A policy file is YAML::

    version: 1                # optional
    defaults: {action: allow, approval_timeout: 300}
    pii: {kinds: [email, phone]}
    policies:
      - id: cost_control      # required, unique
        when: {cost: {gt: 1.00}}
        action: deny
        message: "Too expensive"
    budgets:                  # spend limits, as BudgetPolicy keeps them
      - {id: daily-spend, per: agent, limit: 20.0, period: day, mode: reject}
    rate_limits:              # token buckets, as RatePolicy keeps them
      - {id: llm-calls, per: agent, limit: 60, period: minute}
    costs: {"search_*": 0.01}  # the estimated cost of an MCP tool call, by tool glob

Unknown keys are errors. ``when`` is checked by the compiler, which knows the
facts and operators.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proctor.pii.kinds import PIIKind

__all__ = ["ACTIONS", "Budget", "Defaults", "PIISettings", "PolicyFile", "RateLimit", "Rule"]

ACTIONS = ("allow", "log", "modify", "require_approval", "deny", "terminate")
"""Every action a rule may take, from the mildest to the strictest."""

PII_KINDS = frozenset(kind.value for kind in PIIKind)
"""Every PII kind by name; ``person`` and ``location`` need a detector with a backend that finds them."""

ActionName = Literal["log", "modify", "require_approval", "deny", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _Identified(_Strict):
    """A rule, budget or rate limit: something a file names with an id of its own."""

    id: str = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if value != value.strip() or any(c.isspace() for c in value):
            raise ValueError("an id may not contain spaces")
        return value


class Clamp(_Strict):
    """Bounds for a numeric argument; values outside are moved to the nearest bound."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Clamp:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        return self


class Rule(_Identified):
    """One rule: when its conditions hold for an action, it takes its action."""

    name: str | None = None
    description: str | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    action: ActionName
    message: str | None = None
    priority: int = 0
    enabled: bool = True
    # deny
    on_deny: Literal["raise", "return"] = "raise"
    returns: Any = None
    # require_approval
    approvers: tuple[str, ...] = ()
    timeout: float | None = Field(default=None, gt=0)
    on_timeout: Literal["deny", "allow"] = "deny"
    quorum: int = Field(default=1, ge=1)
    # modify
    set: dict[str, Any] = Field(default_factory=dict)
    redact: tuple[str, ...] = ()
    clamp: dict[str, Clamp] = Field(default_factory=dict)

    @field_validator("set", "redact", "clamp")
    @classmethod
    def _patch_targets(cls, targets: Any) -> Any:
        for target in targets:
            parts = target.split(".")
            if parts[0] != "args" or len(parts) < 2 or not all(parts):
                raise ValueError(f"cannot patch {target!r}: a patch target is args.<name>[.<key>...]")
        return targets

    @model_validator(mode="after")
    def _options_fit_the_action(self) -> Rule:
        patches = bool(self.set or self.redact or self.clamp)
        if self.action == "modify" and not patches:
            raise ValueError("a modify rule needs set, redact or clamp")
        if self.action != "modify" and patches:
            raise ValueError(f"set, redact and clamp belong to modify rules, not {self.action}")
        if self.action != "require_approval" and (
            self.approvers or self.timeout is not None or self.quorum != 1
        ):
            raise ValueError(
                f"approvers, timeout and quorum belong to require_approval rules, not {self.action}"
            )
        if self.action != "deny" and (self.on_deny != "raise" or self.returns is not None):
            raise ValueError(f"on_deny and returns belong to deny rules, not {self.action}")
        return self


class Defaults(_Strict):
    """File-wide defaults: the action when no rule matches, the approval timeout in seconds,
    the time zone (IANA name) of ``cost_today``'s midnight and of ``time.*`` (the machine's
    own when not given), and the lease: seconds a running call's estimate is held in
    ``cost_today`` and in budgets before it is given back, its process taken for dead."""

    action: Literal["allow", "deny"] = "allow"
    approval_timeout: float = Field(default=300.0, gt=0)
    timezone: str | None = None
    lease: float = Field(default=300.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {zone!r}; use an IANA name such as Europe/Paris"
                ) from None
        return zone


class PIISettings(_Strict):
    """Which kinds of personal data ``contains_pii: true`` looks for, and where phone numbers are from.

    None means the built-in detector's defaults: every built-in kind, and
    phone numbers of the regions in ``proctor.pii.DEFAULT_PHONE_REGIONS``.
    """

    kinds: tuple[str, ...] | None = None
    phone_regions: tuple[str, ...] | None = None

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for kind in kinds or ():
            if kind not in PII_KINDS:
                raise ValueError(f"unknown PII kind {kind!r}; kinds are: {', '.join(sorted(PII_KINDS))}")
        return kinds


PerKey = Literal["agent", "service", "tool"]
"""Whose calls share one ledger or bucket: each agent's, each service's (``@runlog(service=...)``) or
each tool's."""

RATE_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
"""The names a rate limit's period may have, in seconds."""


def _period(period: Any, names: tuple[str, ...], *, none: bool) -> Any:
    """``period`` if it is one of ``names`` or a number of seconds > 0 (or None, when allowed)."""
    if period is None and none:
        return None
    if isinstance(period, str) and period in names:
        return period
    if isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0:
        return float(period)
    raise ValueError(f"the period is one of {', '.join(names)} or a number of seconds > 0; got {period!r}")


class Budget(_Identified):
    """A spend limit, with ``BudgetPolicy``'s semantics: each call reserves its estimate (``cost=``)
    when it is checked, settles to its actual cost after, and gives the reservation back when a
    later check refuses it.

    ``limit`` applies to every key without its own in ``limits``; a key with
    neither is not limited. ``mode`` says what a call over the limit gets:
    ``reject`` refuses it (``BudgetExceededError``), ``alert`` lets it run and
    logs a warning, ``downgrade`` lets it run with the arguments changed by
    ``set``, ``redact`` and ``clamp`` (as a ``modify`` rule's), say to a
    cheaper model.
    """

    per: PerKey = "agent"
    limit: float | None = Field(default=None, ge=0)
    limits: dict[str, float] = Field(default_factory=dict)
    period: str | float | None = None
    mode: Literal["reject", "alert", "downgrade"] = "reject"
    lease: float | None = Field(default=None, gt=0)
    """Seconds a reservation is held; the file's ``defaults.lease`` when not given."""
    on_store_error: Literal["closed", "open"] = "closed"
    """While the store does not answer: refuse calls, or let them run unchecked and count their spend
    when it is back (``BudgetPolicy``'s ``on_store_error``)."""
    # downgrade
    set: dict[str, Any] = Field(default_factory=dict)
    redact: tuple[str, ...] = ()
    clamp: dict[str, Clamp] = Field(default_factory=dict)

    @field_validator("limits")
    @classmethod
    def _limits_at_least_zero(cls, limits: dict[str, float]) -> dict[str, float]:
        for key, limit in limits.items():
            if not limit >= 0:
                raise ValueError(f"the limit of {key!r} must be a number >= 0, got {limit!r}")
        return limits

    @field_validator("period", mode="before")
    @classmethod
    def _known_period(cls, period: Any) -> Any:
        return _period(period, ("hour", "day", "month"), none=True)

    @field_validator("set", "redact", "clamp")
    @classmethod
    def _patch_targets(cls, targets: Any) -> Any:
        return Rule._patch_targets(targets)

    @model_validator(mode="after")
    def _complete(self) -> Budget:
        if self.limit is None and not self.limits:
            raise ValueError("a budget needs limit, limits or both")
        patches = bool(self.set or self.redact or self.clamp)
        if self.mode == "downgrade" and not patches:
            raise ValueError("a downgrade budget needs set, redact or clamp: how a call gets cheaper")
        if self.mode != "downgrade" and patches:
            raise ValueError(f"set, redact and clamp belong to downgrade budgets, not {self.mode}")
        return self


class RateLimit(_Identified):
    """At most ``limit`` calls per ``period`` (seconds, or second, minute, hour, day) per key, as a
    token bucket with ``RatePolicy``'s semantics: ``limit`` is also the burst, and a call refused by
    a later check gets its token back. ``limits`` gives some keys their own."""

    per: PerKey = "agent"
    limit: float | None = Field(default=None, gt=0)
    limits: dict[str, float] = Field(default_factory=dict)
    period: str | float = "minute"
    on_store_error: Literal["closed", "local_share"] = "closed"
    """While the store does not answer: refuse calls, or check them against this process's share of
    the limit, ``limit / processes`` (``RatePolicy``'s ``on_store_error``)."""
    processes: int | None = Field(default=None, ge=1)
    """How many processes share the limit, for ``on_store_error: local_share``."""

    @field_validator("limits")
    @classmethod
    def _positive_limits(cls, limits: dict[str, float]) -> dict[str, float]:
        for key, limit in limits.items():
            if not limit > 0:
                raise ValueError(f"the limit of {key!r} must be a number > 0, got {limit!r}")
        return limits

    @field_validator("period", mode="before")
    @classmethod
    def _known_period(cls, period: Any) -> Any:
        return _period(period, tuple(RATE_PERIODS), none=False)

    @model_validator(mode="after")
    def _complete(self) -> RateLimit:
        if self.limit is None and not self.limits:
            raise ValueError("a rate limit needs limit, limits or both")
        if self.on_store_error == "local_share":
            if self.processes is None:
                raise ValueError(
                    "on_store_error: local_share needs processes: how many processes share the limit "
                    "(each then takes limit / processes while the store is down)"
                )
            limits = [self.limit] if self.limit is not None else []
            if any(limit / self.processes < 1 for limit in [*limits, *self.limits.values()]):
                raise ValueError(
                    f"shared by {self.processes} processes, a limit leaves each less than one call per "
                    "period while the store is down; use a longer period or fewer processes"
                )
        elif self.processes is not None:
            raise ValueError("processes goes with on_store_error: local_share")
        return self

    @property
    def seconds(self) -> float:
        """The period in seconds."""
        return RATE_PERIODS[self.period] if isinstance(self.period, str) else float(self.period)


class PolicyFile(_Strict):
    """A whole policy file: rules, and the budgets and rate limits that calls also pass."""

    version: Literal[1] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    pii: PIISettings = Field(default_factory=PIISettings)
    policies: tuple[Rule, ...] = ()
    budgets: tuple[Budget, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    costs: dict[str, float] = Field(default_factory=dict)
    """The estimated cost of a tool call through the MCP gateway, by tool name or glob (the first that
    matches, in file order); the result's ``_meta`` may report the actual cost."""

    @field_validator("costs")
    @classmethod
    def _amounts(cls, costs: dict[str, float]) -> dict[str, float]:
        for tool, amount in costs.items():
            if not amount >= 0 or amount == float("inf"):
                raise ValueError(f"the cost of {tool!r} must be a finite number >= 0, got {amount!r}")
        return costs
