"""Guard: the call flow of one decorated function, the same for every driver.

It decides and accounts, and never waits: binding, the run a call belongs to,
facts, the rules' verdict, holds on ``cost_run`` and ``cost_today``, patches,
the approval request and what a decision means, the actual cost, the rules on
the output. The drivers (``_sync``, ``_async``, ``_generators``) do what waits:
asking a person, taking a slot, calling the function, and (for async calls on a
store that can wait) the store steps on a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from proctor._numbers import from_units, is_amount, to_units
from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.decision import Action
from proctor.errors import RuleViolationError
from proctor.guard import _ledgers
from proctor.guard._call import PROCEED, RUNS, Call, Refusal, call_key, usage_cost
from proctor.guard._channels import default_channel
from proctor.guard._recorder import NULL_RECORDER, RECORDER
from proctor.guard._signature import Signature
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.rules.facts import MISSING, Facts, call_facts
from proctor.rules.patch import apply_patches
from proctor.rules.ruleset import RuleSet, Verdict
from proctor.rules.source import PolicySource
from proctor.runs.default import run_log
from proctor.runtime.context import Frame, replaying
from proctor.runtime.playback import LIVE_CLOCK
from proctor.runtime.run import Run, RunTerminated, WatchedRun
from proctor.task import Task

if TYPE_CHECKING:
    from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler

__all__ = ["Guard", "replaying_only", "spends_live"]

logger = logging.getLogger("proctor.rules")

_replay_deciding = threading.RLock()  # a replay reads its recorded cost_today and charges it in one step


class Guard:
    """Everything a decorated function needs per call, computed once at decoration."""

    def __init__(
        self,
        function: Callable[..., Any],
        service: str,
        source: PolicySource | None,
        agent: str | None,
        name: str | None,
        cost: float | Callable[..., float] | None,
        labels: Mapping[str, Any] | None,
        on_deny: str,
        approvals: ApprovalChannel | None,
        enforcer: PolicyEnforcer | None,
        scheduler: LOCOScheduler | AsyncLOCOScheduler | None,
        record: bool,
    ) -> None:
        self.function = function
        self.service = service
        self.source = source
        self.agent = agent if agent is not None else service
        self.tool = name if name is not None else function.__qualname__
        self.spender = f"{service}/{self.agent}"
        """Whose spend ``cost_today`` adds up."""
        self.names = (service, self.agent)
        """The service and agent, as telemetry counts calls by them."""
        self.cost = cost
        self.cost_units = to_units(cost) if cost is not None and not callable(cost) else None
        """A constant estimate in billionths, converted once."""
        self.labels = dict(labels) if labels is not None else MISSING
        self.stored_labels = dict(labels) if labels else None
        self.on_deny = on_deny
        self.approvals = approvals
        self.enforcer = enforcer
        self.scheduler = scheduler
        self.record = record
        self.path = f"{function.__module__}:{function.__qualname__}"
        """Where replay imports the function from."""
        signature = Signature(function)
        self.bind = signature.bind
        self.unbind = signature.unbind

    def start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], parent: Frame | None, *, watch: bool = True
    ) -> Call:
        """The call, in its parent's run or a new one: recorded (in the run log, or a replay) when the
        run is; with ``watch=False`` (generators) never recorded."""
        bound = self.bind(args, kwargs)
        recorder = NULL_RECORDER
        if parent is None:
            run: Run | None = None
            if watch:
                replay = replaying.get()
                if replay is not None:  # a replay is not recorded; a resume is, as a new run in its log
                    log = replay.log if replay.resuming else None
                    run = WatchedRun(self.service, self.agent, bound, log, replay)
                    recorder = RECORDER
                elif self.record:
                    log = run_log()
                    if log is not None:
                        run = WatchedRun(self.service, self.agent, bound, log, None)
                        recorder = RECORDER
            if run is None:
                run = Run(self.service, self.agent, bound)
        else:
            run = parent.run
            if run.terminated is not None:
                raise run.terminated
            if watch and run.watched:
                recorder = RECORDER
        call = Call(run, parent, args, kwargs, bound, recorder)
        cost = self.cost
        if cost is not None:
            if callable(cost):
                estimate = cost(*args, **kwargs)
                if not is_amount(estimate):
                    raise ValueError(
                        f"the cost function of {self.tool} returned {estimate!r}; it must be a number >= 0"
                    )
                call.estimate = float(estimate)
            else:
                call.estimate = float(cost)  # checked when decorated
        return call

    def rules_for(self, run: Run) -> RuleSet | None:
        """The rules for a call of ``run``: a replay's own, else the decorator's, if any."""
        replay = run.replay
        if replay is not None and replay.rules is not None:
            return replay.rules
        return self.source.current() if self.source is not None else None

    def check(self, call: Call, rules: RuleSet | None) -> None:
        """Count the call in its run and apply the rules' verdict; raises ``RunTerminated`` to terminate."""
        run = call.run
        call.rules = rules
        call.enforcer = self.enforcer
        if rules is not None and (rules.budgets or rules.rate_limits):
            limits = call.limits = _ledgers.limits_of(rules)
            call.enforcer = limits.enforcer(agent=self.agent, service=self.service, tool=self.tool)
        if call.parent is None:
            calls_before = same_before = 0
        else:
            key = (
                call_key(self.tool, call.bound)
                if rules is not None and "same_call_in_run" in rules.uses
                else None
            )
            calls_before, same_before = run._count_call(key)
        if rules is None:
            if call.recorder is RECORDER:
                call.decided_at = time.time()
            self._hold(call)
            return
        if not _ledgers.reads_daily and "cost_today" in rules.uses:
            _ledgers.note_rules(rules)
        if "cost_today" in rules.uses and run.replay is not None:
            with _replay_deciding:  # a replay's own recorded spend, not the shared ledgers
                self._decide(call, rules, calls_before, same_before)
        else:
            self._decide(call, rules, calls_before, same_before)

    def _decide(self, call: Call, rules: RuleSet, calls_before: int, same_before: int) -> None:
        """Evaluate the rules; hold the estimate of a call they let run; raises to terminate."""
        run = call.run
        bound = call.bound
        facts = call.facts = self._facts(rules, run, bound, call.estimate, calls_before, same_before)
        if "cost_today" in rules.uses and run.replay is None:
            # Reading today's spend, deciding and holding this call's estimate are one step on the
            # ledger's store: a call running at the same time, in any process, sees this one's estimate.
            def admit(spent: float) -> bool:
                facts.cost_today = spent
                verdict = call.verdict = rules.evaluate(facts)
                call.decided_at = time.time()  # inside the step: the order of decisions
                return verdict.action in RUNS

            defaults = rules.defaults
            call.hold = _ledgers.daily_spend().decide(
                self.spender, defaults.timezone, call.estimate, admit, defaults.lease
            )
        else:
            call.verdict = rules.evaluate(facts)
            if call.recorder is RECORDER:  # the run log's start of the call
                call.decided_at = time.time()
        verdict = call.verdict
        action = verdict.action
        if action is Action.ALLOW:
            self._hold(call)
            return
        if action is Action.LOG or action is Action.MODIFY:
            if action is Action.MODIFY:
                self._patch(call, bound)
            for rule in verdict.matched:
                if rule.action == "log":
                    logger.warning(
                        "rule %r matched %s: %s", rule.id, self.tool, rule.message or rule.name or ""
                    )
            self._hold(call)
            return
        if action is Action.TERMINATE:
            self._terminate(run, verdict)
        # deny and require_approval are decided by the caller (sync or async)

    def _facts(
        self, rules: RuleSet, run: Run, bound: dict[str, Any], estimate: float, calls: int, same: int
    ) -> Facts:
        uses = rules.uses
        facts = call_facts(
            self.agent,
            self.service,
            self.tool,
            bound,
            run.input,
            estimate,
            # in billionths, as what-if counts
            from_units(to_units(run.cost) + run.held) if "cost_run" in uses else MISSING,
            calls,
            same,
            self.labels,
        )
        zone = rules.defaults.timezone
        clock = run.replay or LIVE_CLOCK
        if "cost_today" in uses and run.replay is not None:  # live: _decide reads it in the ledger's step
            facts.cost_today = clock.cost_today(self.service, self.agent, zone)
        if "time" in uses:
            facts.now = clock.now(ZoneInfo(zone) if zone else None)
        return facts

    def _hold(self, call: Call) -> None:
        """The call will run: count its estimate in cost_run and cost_today until it ends."""
        estimate = call.estimate
        if not estimate or call.held:
            return
        units = call.held = self.cost_units if self.cost_units is not None else to_units(estimate)
        if call.parent is not None:  # the run's own call is what cost_run adds up, not part of it
            with call.run._lock:
                call.run.held += units
        if _ledgers.reads_daily and call.hold is None and spends_live(call):
            rules = call.rules
            call.hold = _ledgers.daily_spend().hold(
                self.spender, estimate, rules.defaults.lease if rules else None
            )

    def _let_go(self, call: Call, actual: float, charged: float = 0.0) -> None:
        """The call ended having cost ``actual``: that replaces its estimate in cost_run and cost_today.

        ``charged`` is what it adds to the run's cost now (not what ``add_cost`` counted already).
        """
        call.settled = True
        held, call.held = call.held, 0
        if (held and call.parent is not None) or charged:
            run = call.run
            with run._lock:  # one step: cost_run never counts the call twice, nor not at all
                run.cost += charged
                if call.parent is not None:
                    run.held -= held
        hold, call.hold = call.hold, None
        if hold is not None:
            hold.settle(actual)
        elif actual:
            replay = call.run.replay
            if spends_live(call):
                if _ledgers.reads_daily:
                    _ledgers.daily_spend().record(self.spender, actual)
            elif replay is not None:
                replay.charge(self.service, self.agent, actual)

    def abandon(self, call: Call) -> None:
        """The call ended without a result (it raised, or a policy stopped it): what it reported counts."""
        if not call.settled and (call.held or call.frame.reported):
            self._let_go(call, call.frame.reported or 0.0)

    def _patch(self, call: Call, bound: dict[str, Any]) -> None:
        patched, changes = apply_patches(bound, call.verdict.patches)
        call.args, call.kwargs = self.unbind(patched)
        call.requested, call.bound = bound, patched
        for change in changes:
            logger.info("rule %r changed %s of %s", change.rule_id, change.target, self.tool)

    def _terminate(self, run: Run, verdict: Verdict) -> None:
        rule = verdict.rule
        assert rule is not None
        run.terminated = RunTerminated(run.run_id, rule.id, verdict.message)
        raise run.terminated

    def refusal(self, verdict: Verdict, detail: str) -> Any:
        """Deny the call: raise, or return the value an LLM agent should read."""
        rule = verdict.rule
        rule_id = rule.id if rule is not None else "default"
        if rule is None:
            detail = "no rule allows it, and the policy file's default action is deny"
        if self.on_deny == "return" or (rule is not None and rule.on_deny == "return"):
            if rule is not None and rule.returns is not None:
                return rule.returns
            return f"Denied by policy {rule_id}: {detail}"
        raise RuleViolationError(rule_id, rule.name if rule is not None else None, self.agent, detail)

    def approval_request(self, call: Call) -> tuple[ApprovalChannel, ApprovalRequest]:
        rule = call.verdict.rule
        assert rule is not None
        rules = call.rules
        assert rules is not None
        timeout = rule.timeout or rules.defaults.approval_timeout
        request = ApprovalRequest(
            rule_id=rule.id,
            message=call.verdict.message,
            approvers=rule.approvers,
            timeout=timeout,
            service=self.service,
            agent=self.agent,
            tool=self.tool,
            run_id=call.run.replay.record.run_id if call.run.replay is not None else call.run.run_id,
            args=call.bound,
            rule_name=rule.name,
            quorum=rule.quorum,
            seq=call.seq,
            resuming=call.run.replay is not None and call.run.replay.resuming,
        )
        return self.approvals or default_channel(), request

    def replayed_approval(self, call: Call) -> tuple[bool, ApprovalDecision | None]:
        """``(True, answer)`` when a replay answers the call's approval request from its recording
        (None: it timed out); ``(False, None)`` when a person must be asked."""
        replay = call.run.replay
        if replay is not None and (not replay.resuming or call.recorded is not None):
            return True, replay.approval(call.seq)
        return False, None

    def approved(self, call: Call, decision: ApprovalDecision | None) -> Any:
        """After a person's decision (None: no answer in time): go on, or the refusal to give."""
        rule = call.verdict.rule
        assert rule is not None
        call.approval = {
            "rule": rule.id,
            "approved": None if decision is None else decision.approved,
            "approver": None if decision is None else decision.approver,
            "comment": None if decision is None else decision.comment,
        }
        if decision is None:
            if rule.on_timeout == "allow":
                logger.warning("approval for %s timed out; rule %r allows on timeout", self.tool, rule.id)
                self._hold(call)
                return PROCEED
            return Refusal("approval timed out")
        if not decision.approved:
            reason = f"approval refused by {decision.approver or 'an approver'}"
            return Refusal(f"{reason}: {decision.comment}" if decision.comment else reason)
        if call.verdict.patches:
            self._patch(call, call.bound)
        self._hold(call)
        return PROCEED

    def actual_cost(self, call: Call, result: Any) -> float:
        """What the call cost: its add_cost reports, else usage.cost on the result, else the estimate."""
        return self._cost_of(call, result)[0]

    @staticmethod
    def _cost_of(call: Call, result: Any) -> tuple[float, bool]:
        """The actual cost, and whether it is the result's ``usage.cost``.

        A result that came from a tool call already charged its usage is not charged again.
        """
        frame = call.frame
        if frame.reported is not None:
            return frame.reported, False
        usage = usage_cost(result)
        if usage is None or (frame.charged is not None and any(result is seen for seen in frame.charged)):
            return call.estimate, False
        return usage, True

    def finish(self, call: Call, result: Any) -> Any:
        """Account the actual cost and check the rules that read the output; returns what the caller gets."""
        self.account(call, result)
        if call.facts is None:
            return result
        assert call.rules is not None  # facts are only built for calls checked by rules
        after = call.rules.after
        if after is None:
            return result
        return self._after(call, after, result)

    def account(self, call: Call, result: Any) -> None:
        """The call returned ``result``: its actual cost replaces its estimate in run and daily spend."""
        if call.settled:
            return
        actual, from_usage = self._cost_of(call, result)
        call.actual = actual
        charged = 0.0
        if call.frame.reported is None:  # add_cost already counted what it reported
            charged = actual
            parent = call.parent
            if from_usage and parent is not None:
                if parent.charged is None:
                    parent.charged = []
                parent.charged.append(result)
        self._let_go(call, actual, charged)

    def _after(self, call: Call, after: RuleSet, result: Any) -> Any:
        """The verdict of the rules that read the output; what the caller gets."""
        assert call.facts is not None
        call.facts.output = result
        verdict = call.after = after.evaluate(call.facts)
        if verdict.action is Action.LOG:
            rule = verdict.rule
            assert rule is not None
            logger.warning("rule %r matched the output of %s: %s", rule.id, self.tool, verdict.message)
        elif verdict.action is Action.TERMINATE:
            self._terminate(call.run, verdict)
        elif verdict.action is Action.DENY:  # the loader lets rules on output only deny, log or terminate
            return self.refusal(verdict, verdict.message)
        return result

    def task(self, call: Call) -> Task:
        labels = self.labels if isinstance(self.labels, dict) else None
        return Task(task_type=self.tool, cost=call.estimate, labels=labels)

    def admitted(self, call: Call, admission: Admission) -> None:
        """Note the limits that let the call run over them; apply the downgrade budgets' patches."""
        limits = call.limits
        if limits is None:
            return
        for decision in admission.decisions:
            if decision.downgrade or decision.action is Action.LOG:
                action = "modify" if decision.downgrade else "log"
                call.downgraded.append(
                    {"phase": "limit", "rule": decision.policy, "action": action, "decided": True}
                )
        if admission.downgraded:
            patched, changes = apply_patches(call.bound, limits.downgrades(admission.decisions))
            call.args, call.kwargs = self.unbind(patched)
            call.requested = call.requested if call.requested is not None else call.bound
            call.bound = patched
            for change in changes:
                logger.info("budget %r downgraded %s: %s", change.rule_id, self.tool, change.target)

    def waits_on_stores(self, rules: RuleSet | None) -> bool:
        """Whether a call's checks and settles may wait on a store (SQLite): async calls then make
        them on proctor's store threads, and the event loop goes on meanwhile."""
        if self.enforcer is not None and self.enforcer.blocking:
            return True
        if rules is not None and (rules.budgets or rules.rate_limits or "cost_today" in rules.uses):
            return _ledgers.daily_spend().store.blocking
        return _ledgers.reads_daily and _ledgers.daily_spend().store.blocking


def spends_live(call: Call) -> bool:
    """Whether what the call spends counts in today's spend (not in a replay's recorded one)."""
    replay = call.run.replay
    return replay is None or (replay.resuming and call.recorded is None)


def replaying_only(run: Run) -> bool:
    """Whether ``run`` is a replay whose live calls skip slots and budgets (a resume takes them)."""
    return run.replay is not None and not run.replay.resuming
