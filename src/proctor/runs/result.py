"""What replaying recorded runs under other policies found: per run, and summed up per rule."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

__all__ = [
    "DEFAULT_RULE",
    "ActionDecision",
    "Divergence",
    "ImpactReport",
    "ReplayBatch",
    "ReplayResult",
    "RuleImpact",
    "effective_action",
]

DEFAULT_RULE = "(default)"
"""The name the impact report gives to a file's default action when no rule matched."""

_COLUMN = {
    "deny": "denied",
    "require_approval": "approval",
    "modify": "modified",
    "terminate": "terminated",
    "log": "logged",
}


def effective_action(decisions: Sequence[dict[str, Any]] | None) -> tuple[str, str | None]:
    """The action that took effect, and its rule, from an action's stored ``decisions``.

    Stored decisions are ``{"phase": "before" | "after" | "policy" | "limit", "rule": id | None,
    "action": ..., "decided": bool}``. A deny or terminate after the call (or by a code
    policy, a budget or a rate limit) overrides what was decided before it; a ``log`` after
    an allowed call is a log, and so is a budget's alert; a budget's downgrade of an allowed
    call is a ``modify``.
    """
    before: tuple[str, str | None] = ("allow", None)
    later: tuple[str, str | None] | None = None
    for decision in decisions or ():
        if not decision.get("decided"):
            continue
        pair = (str(decision["action"]), decision.get("rule"))
        if decision.get("phase") == "before":
            before = pair
        elif pair[0] in ("deny", "terminate") or (pair[0] in _MILD and later is None):
            later = pair
    if later is not None and (later[0] not in _MILD or before[0] == "allow"):
        return later
    return before


_MILD = ("log", "modify")  # decided after the rules, they change only an allowed call's action


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """What the policies decided on one action of a replayed run.

    ``seq`` is the action's number in its run (0: the run's own top-level
    call); ``action`` the effective action now (``allow``, ``log``, ``modify``,
    ``require_approval``, ``deny``, ``terminate``) and ``rule`` the rule that
    decided it (None: no rule matched); ``recorded`` the effective action
    when the run was recorded; ``modified_by`` every rule that patched the
    arguments.
    """

    seq: int
    tool: str
    action: str
    rule: str | None
    recorded: str
    modified_by: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the policies decide differently from the recording."""
        return self.action != self.recorded


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where a replay left its recording: at action ``seq``, ``expected`` vs ``got`` (None: nothing)."""

    seq: int
    expected: str | None
    got: str | None
    reason: str

    def __str__(self) -> str:
        expected, got = self.expected or "nothing", self.got or "nothing"
        return f"action {self.seq}: {self.reason} (expected {expected}, got {got})"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """One recorded run replayed (``mode="replay"``) or re-evaluated (``mode="what-if"``).

    ``status_before``/``cost_before`` are the recording's; ``status_after``/
    ``cost_after`` what the replay ended with (in what-if mode: the recorded
    spend up to the action that the policies now deny or terminate).
    ``output``/``error`` are the replayed top-level call's (replay mode only).
    """

    run_id: str
    mode: Literal["replay", "what-if"]
    status_before: str
    status_after: str
    cost_before: float
    cost_after: float
    decisions: tuple[ActionDecision, ...]
    divergence: Divergence | None = None
    output: Any = None
    error: BaseException | None = field(default=None, compare=False)

    @property
    def identical(self) -> bool:
        """Same path, decisions and outcome as the recording."""
        return (
            self.divergence is None
            and self.status_after == self.status_before
            and not any(decision.changed for decision in self.decisions)
        )

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeds under the replayed policies."""
        return self.status_after == "succeeded"

    @property
    def cost_saved(self) -> float:
        """Recorded spend that the replayed policies would not have spent (negative: more spent)."""
        return self.cost_before - self.cost_after


@dataclass(slots=True)
class RuleImpact:
    """Per rule: actions it denies, sends for approval, modifies, terminates or logs; runs it touches."""

    rule: str
    denied: int = 0
    approval: int = 0
    modified: int = 0
    terminated: int = 0
    logged: int = 0
    runs: int = 0


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """The effect of a policy change over replayed runs, summed up from their results."""

    runs: int
    actions: int
    rules: tuple[RuleImpact, ...]
    runs_affected: int
    actions_changed: int
    cost_before: float
    cost_after: float
    success_rate_before: float
    success_rate_after: float

    @property
    def cost_saved(self) -> float:
        """Recorded spend the policies would not have spent."""
        return self.cost_before - self.cost_after

    @classmethod
    def of(cls, results: Iterable[ReplayResult]) -> ImpactReport:
        """Sum up ``results``: per rule (deciding rule; every patching rule for ``modify``), runs, cost."""
        impacts: dict[str, RuleImpact] = {}
        runs_of: dict[str, set[str]] = {}
        runs = actions = affected = changed = succeeded_before = succeeded_after = 0
        cost_before = cost_after = 0.0
        for result in results:
            runs += 1
            actions += len(result.decisions)
            cost_before += result.cost_before
            cost_after += result.cost_after
            succeeded_before += result.status_before == "succeeded"
            succeeded_after += result.status_after == "succeeded"
            if not result.identical:
                affected += 1
            for decision in result.decisions:
                changed += decision.changed
                counted: list[tuple[str, str]] = []
                column = _COLUMN.get(decision.action)
                if column is not None and decision.action != "modify":
                    counted.append((decision.rule or DEFAULT_RULE, column))
                counted += [(rule, "modified") for rule in decision.modified_by]
                for rule, column in counted:
                    impact = impacts.get(rule)
                    if impact is None:
                        impact = impacts[rule] = RuleImpact(rule)
                    setattr(impact, column, getattr(impact, column) + 1)
                    runs_of.setdefault(rule, set()).add(result.run_id)
        for rule, impact in impacts.items():
            impact.runs = len(runs_of[rule])
        return cls(
            runs=runs,
            actions=actions,
            rules=tuple(sorted(impacts.values(), key=lambda impact: impact.rule)),
            runs_affected=affected,
            actions_changed=changed,
            cost_before=cost_before,
            cost_after=cost_after,
            success_rate_before=succeeded_before / runs if runs else 1.0,
            success_rate_after=succeeded_after / runs if runs else 1.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON types, for ``--format json``."""
        return {
            "runs": self.runs,
            "actions": self.actions,
            "runs_affected": self.runs_affected,
            "actions_changed": self.actions_changed,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "cost_saved": self.cost_saved,
            "success_rate_before": self.success_rate_before,
            "success_rate_after": self.success_rate_after,
            "rules": [
                {
                    "rule": impact.rule,
                    "denied": impact.denied,
                    "approval": impact.approval,
                    "modified": impact.modified,
                    "terminated": impact.terminated,
                    "logged": impact.logged,
                    "runs": impact.runs,
                }
                for impact in self.rules
            ],
        }


class ReplayBatch(Sequence[ReplayResult]):
    """The results of ``replay_batch``, in the order the runs started, with their ``impact`` report."""

    __slots__ = ("_results", "impact")

    def __init__(self, results: Iterable[ReplayResult]) -> None:
        self._results = tuple(results)
        self.impact = ImpactReport.of(self._results)

    @property
    def success_rate(self) -> float:
        """The share of runs that succeed under the replayed policies (1.0 for no runs)."""
        return self.impact.success_rate_after

    @property
    def success_rate_before(self) -> float:
        """The share of runs that succeeded when they were recorded."""
        return self.impact.success_rate_before

    @overload
    def __getitem__(self, index: int) -> ReplayResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ReplayResult]: ...

    def __getitem__(self, index: int | slice) -> ReplayResult | Sequence[ReplayResult]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[ReplayResult]:
        return iter(self._results)

    def __repr__(self) -> str:
        impact = self.impact
        return (
            f"<ReplayBatch {impact.runs} runs, {impact.runs_affected} affected, success rate "
            f"{impact.success_rate_before:.0%} -> {impact.success_rate_after:.0%}>"
        )
