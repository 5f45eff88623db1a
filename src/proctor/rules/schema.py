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

Unknown keys are errors. ``when`` is checked by the compiler, which knows the
facts and operators.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proctor.pii.kinds import PIIKind

__all__ = ["ACTIONS", "Defaults", "PIISettings", "PolicyFile", "Rule"]

ACTIONS = ("allow", "log", "modify", "require_approval", "deny", "terminate")
"""Every action a rule may take, from the mildest to the strictest."""

PII_KINDS = frozenset(kind.value for kind in PIIKind)
"""Every PII kind by name; ``person`` and ``location`` need a detector with a backend that finds them."""

ActionName = Literal["log", "modify", "require_approval", "deny", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


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


class Rule(_Strict):
    """One rule: when its conditions hold for an action, it takes its action."""

    id: str = Field(min_length=1)
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

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if value != value.strip() or any(c.isspace() for c in value):
            raise ValueError("an id may not contain spaces")
        return value

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
    and the time zone (IANA name) of ``cost_today``'s midnight and of ``time.*``, the
    machine's own when not given."""

    action: Literal["allow", "deny"] = "allow"
    approval_timeout: float = Field(default=300.0, gt=0)
    timezone: str | None = None

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


class PolicyFile(_Strict):
    """A whole policy file."""

    version: Literal[1] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    pii: PIISettings = Field(default_factory=PIISettings)
    policies: tuple[Rule, ...]
