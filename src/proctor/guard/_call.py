"""Call: one decorated call on its way through the flow, and what the run log stores of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proctor._numbers import is_amount
from proctor.decision import Action
from proctor.errors import PolicyViolationError, RunTerminated
from proctor.rules.ruleset import Verdict
from proctor.runtime.context import Frame

if TYPE_CHECKING:
    from proctor.guard._recorder import Recorder
    from proctor.policy.daily import Hold
    from proctor.policy.enforcer import PolicyEnforcer
    from proctor.rules.facts import Facts
    from proctor.rules.limits import FileLimits
    from proctor.rules.ruleset import RuleSet
    from proctor.runs.log import ActionRecord
    from proctor.runtime.run import Run

__all__ = [
    "ALLOW",
    "LIVE",
    "PROCEED",
    "RUNS",
    "Call",
    "Refusal",
    "call_key",
    "decisions_of",
    "status_of",
    "usage_cost",
]

ALLOW = Verdict(Action.ALLOW)
"""The verdict of a call no rule matched."""
RUNS = frozenset((Action.ALLOW, Action.LOG, Action.MODIFY))
"""The actions after which a call runs."""
PROCEED: Any = object()
"""What a driver's decision step returns when the call goes on."""
LIVE: Any = object()
"""What a recorder answers for a call that must run (it has no recorded answer)."""
_PLAIN = frozenset((str, int, float, bool, bytes, list, tuple))


class Call:
    """One checked call: its run, facts, arguments after patches, and what to do.

    ``bound`` is the arguments by name as called (after patches), ``requested``
    as the caller passed them when a rule changed them; the rest is kept for
    the run log: ``seq`` (0 for the run's own call), the verdict ``after`` the
    call, the ``actual`` cost, the ``approval``, and the ``recorded`` action a
    replay matched.
    """

    __slots__ = (
        "actual",
        "after",
        "approval",
        "args",
        "bound",
        "decided_at",
        "downgraded",
        "enforcer",
        "estimate",
        "facts",
        "frame",
        "held",
        "hold",
        "kwargs",
        "limits",
        "off_loop",
        "parent",
        "policy_error",
        "recorded",
        "recorder",
        "requested",
        "rules",
        "run",
        "seq",
        "settled",
        "started",
        "verdict",
    )

    def __init__(
        self,
        run: Run,
        parent: Frame | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: dict[str, Any],
        recorder: Recorder,
    ) -> None:
        self.run = run
        self.parent = parent
        self.frame = Frame(run)
        self.args = args
        self.kwargs = kwargs
        self.bound = bound
        self.recorder = recorder
        self.started = 0.0  # when a recorded call began (Unix time); its recorder sets it
        self.requested: dict[str, Any] | None = None
        self.estimate = 0.0
        self.verdict = ALLOW
        self.after: Verdict | None = None
        self.facts: Facts | None = None
        self.seq = 0
        self.actual = 0.0
        self.decided_at: float | None = None  # when the rules decided it: its recorded start
        self.held = 0  # the estimate (in billionths) counted in cost_run while it runs; ``hold``: cost_today
        self.hold: Hold | None = None
        self.settled = False  # its spend is counted: nothing more may be
        self.approval: dict[str, Any] | None = None
        self.policy_error: PolicyViolationError | None = None
        self.rules: RuleSet | None = None  # the rules it was checked by
        self.enforcer: PolicyEnforcer | None = None  # the code's, or the file's budgets and rate limits
        self.limits: FileLimits | None = None
        self.off_loop = False  # an async call whose store steps run on proctor's store threads
        self.downgraded: list[dict[str, Any]] = []  # the limits that let it run over their limit
        self.recorded: ActionRecord | None = None


class Refusal:
    """Why a call that asked for approval may not run."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


def status_of(error: BaseException) -> str:
    """How a call that raised ``error`` ended, in the run log's words."""
    if isinstance(error, RunTerminated):
        return "terminated"
    if isinstance(error, PolicyViolationError):
        return "denied"
    if isinstance(error, Exception):
        return "failed"
    return "cancelled"  # CancelledError, KeyboardInterrupt, SystemExit, a replay leaving its recording


def decisions_of(call: Call) -> list[dict[str, Any]]:
    """The call's decisions as the run log stores them (see ``proctor.runs.result.effective_action``)."""
    before = call.verdict
    if (
        before.rule is None
        and before.action is Action.ALLOW
        and call.after is None
        and call.policy_error is None
        and not call.downgraded
    ):
        return []  # the common case: no rule matched
    decisions: list[dict[str, Any]] = []
    for phase, verdict in (("before", before), ("after", call.after)):
        if verdict is None or (verdict.rule is None and verdict.action is Action.ALLOW):
            continue
        decider = verdict.rule
        decisions.append(
            {
                "phase": phase,
                "rule": None if decider is None else decider.id,
                "action": verdict.action.value,
                "decided": True,
            }
        )
        decisions.extend(
            {"phase": phase, "rule": rule.id, "action": rule.action, "decided": False}
            for rule in verdict.matched
            if rule is not decider
        )
    decisions.extend(call.downgraded)
    error = call.policy_error
    if error is not None:
        phase = "limit" if call.limits is not None else "policy"
        decisions.append({"phase": phase, "rule": error.policy_name, "action": "deny", "decided": True})
    return decisions


def call_key(tool: str, bound: Mapping[str, Any]) -> str | None:
    """What makes two calls "the same call": the tool and its arguments' repr."""
    try:
        return f"{tool}:{bound!r}"
    except Exception:  # an argument whose repr fails cannot be compared; count nothing
        return None


def usage_cost(result: Any) -> float | None:
    """The cost a result reports in ``usage.cost`` (attribute or key), if it does."""
    if result is None or type(result) in _PLAIN:
        return None
    usage = result.get("usage") if isinstance(result, Mapping) else getattr(result, "usage", None)
    if usage is None:
        return None
    value = usage.get("cost") if isinstance(usage, Mapping) else getattr(usage, "cost", None)
    if not is_amount(value):
        return None
    return float(value)
