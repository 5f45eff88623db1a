"""``@runlog``: check every call of a function, and every tool call inside it, against rules.

A call of a decorated function with no run around it starts a run; decorated
functions called inside it (also across ``await`` and in threads started with
``contextvars.copy_context``) are its tool calls. Each call is checked before
it runs (and, for rules that read ``output``, after): deny, require_approval,
modify, log and terminate act as the policy file says.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from zoneinfo import ZoneInfo

from proctor._numbers import from_units, is_amount, to_units
from proctor._signals import leave_signals_to_main_thread
from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.approvals.callback import CallbackChannel
from proctor.approvals.durable import DurableChannel
from proctor.decision import Action
from proctor.errors import ConfigurationError, PolicyViolationError, RuleViolationError
from proctor.outcome import Outcome, Status
from proctor.pii.detector import PIIDetector
from proctor.policy.daily import DailySpend, Hold
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.resource import SharedResource
from proctor.rules.facts import MISSING, Facts
from proctor.rules.limits import FileLimits
from proctor.rules.patch import apply_patches
from proctor.rules.ruleset import RuleSet, Verdict
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.default import process_run_log, run_log
from proctor.runs.log import NO_RESULT, ActionRecord, RunLog
from proctor.runtime.context import Frame, active, replaying
from proctor.runtime.run import Run, RunTerminated, WatchedRun
from proctor.scheduling.async_scheduler import AsyncLOCOScheduler
from proctor.scheduling.base import status_of
from proctor.scheduling.thread_scheduler import LOCOScheduler
from proctor.stores._default import resolve_store, shared_store
from proctor.stores.base import Store
from proctor.stores.memory import MemoryStore
from proctor.task import Task

if TYPE_CHECKING:
    from proctor.runtime.playback import Playback

__all__ = ["runlog", "set_approval_channel"]

logger = logging.getLogger("proctor.rules")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_dailies: dict[Store, DailySpend] = {}  # the cost_today ledgers, per store they live in
_private_daily = MemoryStore()  # where they live when there is neither a store nor a run log
_reads_daily = False
"""Whether rules of this process read cost_today: from then on every call's spend is kept for it."""
_replay_deciding = threading.RLock()  # a replay reads its recorded cost_today and charges it in one step


def _daily_spend() -> DailySpend:
    """The cost_today ledgers: on the process's store (``set_store``, ``PROCTOR_STORE``), else in the
    database of the process's run log (shared by the host's processes, kept across restarts), else
    (recording off) in this process's memory."""
    store = resolve_store(None)
    if store is None:
        log = process_run_log()
        store = shared_store(f"sqlite:///{log.path.resolve()}") if log is not None else _private_daily
    daily = _dailies.get(store)
    if daily is None:
        daily = _dailies.setdefault(store, DailySpend(store))
    return daily


_file_limits: weakref.WeakKeyDictionary[RuleSet, FileLimits] = weakref.WeakKeyDictionary()
_file_limits_lock = threading.Lock()


def _limits_of(rules: RuleSet) -> FileLimits:
    """The budgets and rate limits of ``rules``, on the store of the cost_today ledgers."""
    store = _daily_spend().store
    limits = _file_limits.get(rules)
    if limits is None or limits.store is not store:
        with _file_limits_lock:
            limits = _file_limits.get(rules)
            if limits is None or limits.store is not store:
                limits = _file_limits[rules] = FileLimits(rules, store)
    return limits


_store_threads: ThreadPoolExecutor | None = None
_store_threads_lock = threading.Lock()


def _store_executor() -> ThreadPoolExecutor:
    """The threads that make the store calls of async calls (created at the first such call)."""
    global _store_threads
    if _store_threads is None:
        with _store_threads_lock:
            if _store_threads is None:
                _store_threads = ThreadPoolExecutor(
                    4, thread_name_prefix="proctor-store", initializer=leave_signals_to_main_thread
                )
    return _store_threads


async def _off_loop(
    function: Callable[..., T],
    *args: Any,
    undo: Callable[[], object] | None = None,
    settle: PolicyEnforcer | None = None,
) -> T:
    """``function(*args)`` on proctor's store threads, so that a store that waits (a busy SQLite
    file) never holds up the event loop.

    A cancelled caller does not cut the step short: it ends on its thread, and what it took is
    given back (``undo()``; with ``settle``, the admission it returns is settled as cancelled).
    """
    future = asyncio.get_running_loop().run_in_executor(
        _store_executor(), contextvars.copy_context().run, functools.partial(function, *args)
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if undo is not None or settle is not None:
            future.add_done_callback(functools.partial(_give_back, undo, settle))
        raise


def _give_back(
    undo: Callable[[], object] | None, settle: PolicyEnforcer | None, future: asyncio.Future[Any]
) -> None:
    """After a cancelled caller's step ended: undo what it took (on a store thread: it may wait)."""
    if future.cancelled() or future.exception() is not None:
        return
    if settle is not None:
        cancelled = Outcome(Status.CANCELLED, 0.0, asyncio.CancelledError())  # it never ran: it spent nothing
        _store_executor().submit(settle.settle, future.result(), cancelled)
    elif undo is not None:
        _store_executor().submit(undo)


def _note_rules(rules: RuleSet) -> None:
    global _reads_daily
    if not _reads_daily and "cost_today" in rules.uses:
        _reads_daily = True


_channel: ApprovalChannel | None = None
_durable: DurableChannel | None = None


def _durable_channel() -> DurableChannel:
    """The default channel: the durable approval queue, made at the first request."""
    global _durable
    if _durable is None:
        _durable = DurableChannel()
    return _durable


def set_approval_channel(
    channel: ApprovalChannel | Callable[[ApprovalRequest], ApprovalDecision | bool | None] | None,
) -> None:
    """Register where ``require_approval`` rules ask, for decorators without their own ``approvals=``.

    Takes an ``ApprovalChannel`` or a function of the request returning a
    decision, True/False, or None (no answer). Without any (None), requests go
    to the durable approval queue (``DurableChannel``: the run log's database,
    decided with ``proctor approvals approve`` or in ``proctor serve``).
    """
    global _channel
    if channel is None or isinstance(channel, ApprovalChannel):
        _channel = channel
    elif callable(channel):
        _channel = CallbackChannel(channel)
    else:
        raise ConfigurationError(f"expected an ApprovalChannel or a function, got {type(channel).__name__}")


def runlog(
    func: F | None = None,
    /,
    *,
    service: str,
    policies: PolicySpec | PolicyEnforcer | None = None,
    agent: str | None = None,
    name: str | None = None,
    cost: float | Callable[..., float] | None = None,
    labels: Mapping[str, Any] | None = None,
    on_deny: str = "raise",
    approvals: ApprovalChannel | None = None,
    scheduler: LOCOScheduler | AsyncLOCOScheduler | None = None,
    resource: SharedResource | None = None,
    pii: PIIDetector | None = None,
    record: bool = True,
) -> Any:
    """Decorate a function so that its calls are checked against ``policies``.

    Parameters:
        service: the service the function belongs to (the ``service`` fact).
        policies: a policy file path, a list of paths, a parsed mapping or a
            ``RuleSet`` (files are reloaded when they change); or a
            ``PolicyEnforcer`` of code policies, checked with a ``Task`` of the
            call's estimated cost and labels.
        agent: the acting agent (the ``agent`` fact); the service when not given.
        name: the ``tool`` fact; the function's qualified name when not given.
        cost: the estimated cost of a call: a number, or a function called
            with the call's own arguments (the ``cost`` fact). The actual cost is what the
            call reports with ``current_run().add_cost(x)``, or a ``usage.cost``
            on its result, else the estimate.
        labels: data labels of the calls (the ``labels`` fact).
        on_deny: ``"raise"`` a ``RuleViolationError``, or ``"return"`` the
            rule's ``returns`` value (a refusal message when it has none), so
            an LLM agent can read the refusal. A rule's own ``on_deny: return``
            also returns.
        approvals: where ``require_approval`` asks; see ``set_approval_channel``
            (by default the durable approval queue).
        scheduler: take a fair slot of this scheduler for each call, after the
            rules (never while waiting for a person) and around the function;
            its enforcer's policies check the call too. A ``LOCOScheduler`` for
            plain functions, an ``AsyncLOCOScheduler`` for coroutine functions.
        resource: instead of ``scheduler``, a ``SharedResource``; every function
            decorated with the same resource shares one scheduler (default alpha).
        pii: the detector behind ``contains_pii``, for instance one with a
            backend for ``person`` and ``location``; the built-in one,
            configured by the policy file's ``pii:`` section, by default.
        record: whether a call of this function with no run around it is a
            recorded run (in the run log of ``set_run_log``, by default
            ``$PROCTOR_DB``). Inside a recorded run every decorated call is
            recorded as one of its actions, whatever its own ``record``.
    """
    if on_deny not in ("raise", "return"):
        raise ConfigurationError(f"on_deny must be 'raise' or 'return', got {on_deny!r}")
    if cost is not None and not callable(cost) and not is_amount(cost):
        raise ConfigurationError(f"cost must be a number >= 0 or a function, got {cost!r}")
    enforcer = policies if isinstance(policies, PolicyEnforcer) else None
    scan = pii.contains if pii is not None else None
    source = (
        None if policies is None or isinstance(policies, PolicyEnforcer) else PolicySource(policies, pii=scan)
    )

    if scheduler is not None and resource is not None:
        raise ConfigurationError("pass scheduler= or resource=, not both")

    def decorate(function: F) -> F:
        nonlocal scheduler
        if resource is not None:
            scheduler = _scheduler_for(resource, inspect.iscoroutinefunction(function))
        _check_scheduler(function, scheduler)
        guard = _Guard(function, service, source, agent, name, cost, labels, on_deny, approvals)
        if source is not None:
            _note_rules(source.current())  # before any call, so that the first calls' spend counts too
        guard.enforcer = enforcer
        guard.scheduler = scheduler
        guard.record = record
        if inspect.isasyncgenfunction(function):
            wrapper: Callable[..., Any] = guard.wrap_async_generator()
        elif inspect.iscoroutinefunction(function):
            wrapper = guard.wrap_async()
        elif inspect.isgeneratorfunction(function):
            wrapper = guard.wrap_generator()
        else:
            wrapper = guard.wrap_sync()
        functools.update_wrapper(wrapper, function)
        wrapper.__proctor_guard__ = guard  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate if func is None else decorate(func)


_resource_schedulers: weakref.WeakKeyDictionary[SharedResource, LOCOScheduler | AsyncLOCOScheduler] = (
    weakref.WeakKeyDictionary()
)


def _scheduler_for(resource: SharedResource, asynchronous: bool) -> LOCOScheduler | AsyncLOCOScheduler:
    """The one scheduler that grants ``resource``'s slots to decorated functions."""
    kind = AsyncLOCOScheduler if asynchronous else LOCOScheduler
    scheduler = _resource_schedulers.get(resource)
    if scheduler is None:
        scheduler = _resource_schedulers[resource] = kind([], resource)
    elif not isinstance(scheduler, kind):
        other = "plain" if asynchronous else "async"
        raise ConfigurationError(
            f"SharedResource {resource.name!r} already serves {other} functions; one scheduler grants "
            "a resource's slots, so decorate functions of one kind per resource"
        )
    return scheduler


def _check_scheduler(function: Callable[..., Any], scheduler: object) -> None:
    if scheduler is None:
        return
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise ConfigurationError(
            "scheduler= is not supported on generators: a slot would be held across yields"
        )
    if inspect.iscoroutinefunction(function):
        if not isinstance(scheduler, AsyncLOCOScheduler):
            raise ConfigurationError("an async function needs an AsyncLOCOScheduler as scheduler=")
    elif not isinstance(scheduler, LOCOScheduler):
        raise ConfigurationError("a plain function needs a LOCOScheduler (threads) as scheduler=")


class _Call:
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
        "requested",
        "rules",
        "run",
        "seq",
        "settled",
        "verdict",
    )

    def __init__(
        self,
        run: Run,
        parent: Frame | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: dict[str, Any],
    ) -> None:
        self.run = run
        self.parent = parent
        self.frame = Frame(run)
        self.args = args
        self.kwargs = kwargs
        self.bound = bound
        self.requested: dict[str, Any] | None = None
        self.estimate = 0.0
        self.verdict = _ALLOW
        self.after: Verdict | None = None
        self.facts: Facts | None = None
        self.seq = 0
        self.actual = 0.0
        self.decided_at: float | None = None  # when the rules decided it: its recorded start
        self.held = 0.0  # the estimate counted in cost_run (and, through ``hold``, cost_today) while it runs
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


class _Guard:
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
    ) -> None:
        self.function = function
        self.service = service
        self.source = source
        self.agent = agent if agent is not None else service
        self.tool = name if name is not None else function.__qualname__
        self.spender = f"{service}/{self.agent}"
        """Whose spend ``cost_today`` adds up."""
        self.cost = cost
        self.labels = dict(labels) if labels is not None else MISSING
        self.stored_labels = dict(labels) if labels else None
        self.on_deny = on_deny
        self.approvals = approvals
        self.enforcer: PolicyEnforcer | None = None
        self.scheduler: LOCOScheduler | AsyncLOCOScheduler | None = None
        self.record = True
        self.path = f"{function.__module__}:{function.__qualname__}"
        """Where replay imports the function from."""
        self.signature = inspect.signature(function)
        params = list(self.signature.parameters.values())
        simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
        )  # no *args, **kwargs or positional-only: arguments map to names by position
        self.positional = (
            tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD) if simple else None
        )
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        # For a call with n positional arguments: the defaults of the parameters after them.
        self.later_defaults = [
            [(p.name, p.default) for p in params[n:] if p.default is not p.empty]
            for n in range(len(params) + 1)
        ]

    # -- binding

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults included."""
        names = self.positional
        if names is not None and len(args) <= len(names):
            bound = dict(zip(names, args, strict=False))
            if kwargs:
                bound.update(kwargs)
                for name, default in self.later_defaults[len(args)]:
                    bound.setdefault(name, default)
            else:
                bound.update(self.later_defaults[len(args)])
            return bound
        bound_arguments = self.signature.bind(*args, **kwargs)
        bound_arguments.apply_defaults()
        return dict(bound_arguments.arguments)

    def unbind(self, bound: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments to call the function with, from a (patched) mapping by name."""
        arguments = inspect.BoundArguments(self.signature, dict(bound))
        return arguments.args, arguments.kwargs

    # -- before and after the call

    def enter(self, args: tuple[Any, ...], kwargs: dict[str, Any], parent: Frame | None) -> _Call:
        """Start or join the run, check the rules, and settle what to call with; raises to refuse."""
        call = self.start(args, kwargs, parent)
        self.check(call, self.source.current() if self.source is not None else None)
        return call

    def start(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: Frame | None,
        log: RunLog | None = None,
        replay: Playback | None = None,
    ) -> _Call:
        """The call, in a new run (recorded in ``log``, or replaying) or in its parent's."""
        bound = self.bind(args, kwargs)
        if parent is None:
            if replay is not None:  # a replay is not recorded; a resume is, as a new run in its log
                run: Run = WatchedRun(
                    self.service, self.agent, bound, replay.log if replay.resuming else None, replay
                )
            elif log is not None:
                run = WatchedRun(self.service, self.agent, bound, log, None)
            else:
                run = Run(self.service, self.agent, bound)
        else:
            run = parent.run
            if run.terminated is not None:
                raise run.terminated
        call = _Call(run, parent, args, kwargs, bound)
        if self.cost is not None:
            estimate = self.cost(*args, **kwargs) if callable(self.cost) else self.cost
            if not is_amount(estimate):
                raise ValueError(
                    f"the cost function of {self.tool} returned {estimate!r}; it must be a number >= 0"
                )
            call.estimate = float(estimate)
        return call

    def check(self, call: _Call, rules: RuleSet | None) -> None:
        """Count the call in its run and apply the rules' verdict; raises ``RunTerminated`` to terminate."""
        run = call.run
        call.rules = rules
        call.enforcer = self.enforcer
        if rules is not None and (rules.budgets or rules.rate_limits):
            limits = call.limits = _limits_of(rules)
            call.enforcer = limits.enforcer(agent=self.agent, service=self.service, tool=self.tool)
        if call.parent is None:
            calls_before = same_before = 0
        else:
            calls_before = run.tool_calls
            key = (
                _call_key(self.tool, call.bound)
                if rules is not None and "same_call_in_run" in rules.uses
                else None
            )
            same_before = run._count_call(key)
        if rules is None:
            call.decided_at = time.time()
            self._hold(call)
            return
        _note_rules(rules)
        if "cost_today" in rules.uses and run.replay is not None:
            with _replay_deciding:  # a replay's own recorded spend, not the shared ledgers
                self._decide(call, rules, calls_before, same_before)
        else:
            self._decide(call, rules, calls_before, same_before)

    def _decide(self, call: _Call, rules: RuleSet, calls_before: int, same_before: int) -> None:
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
                return verdict.action in _RUNS

            defaults = rules.defaults
            call.hold = _daily_spend().decide(
                self.spender, defaults.timezone, call.estimate, admit, defaults.lease
            )
        else:
            call.verdict = rules.evaluate(facts)
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
        facts = Facts(
            agent=self.agent,
            service=self.service,
            tool=self.tool,
            args=bound,
            input=run.input,
            cost=estimate,
            cost_run=from_units(to_units(run.cost) + run.held),  # in billionths, as what-if counts
            tool_calls_in_run=calls,
            same_call_in_run=same,
            labels=self.labels,
        )
        zone = rules.defaults.timezone
        if "cost_today" in uses and run.replay is not None:  # live: _decide reads it in the ledger's step
            facts.cost_today = run.replay.cost_today(self.service, self.agent, zone)
        if "time" in uses:
            tz = ZoneInfo(zone) if zone else None
            facts.now = datetime.now(tz) if run.replay is None else run.replay.now(tz)
        return facts

    def _hold(self, call: _Call) -> None:
        """The call will run: count its estimate in cost_run and cost_today until it ends."""
        estimate = call.estimate
        if not estimate or call.held:
            return
        call.held = estimate
        if call.parent is not None:  # the run's own call is what cost_run adds up, not part of it
            with call.run._lock:
                call.run.held += to_units(estimate)
        if _reads_daily and call.hold is None and _spends_live(call):
            rules = call.rules
            call.hold = _daily_spend().hold(self.spender, estimate, rules.defaults.lease if rules else None)

    def _let_go(self, call: _Call, actual: float) -> None:
        """The call ended having cost ``actual``: that replaces its estimate in cost_run and cost_today."""
        call.settled = True
        held, call.held = call.held, 0.0
        if held and call.parent is not None:
            with call.run._lock:
                call.run.held -= to_units(held)
        hold, call.hold = call.hold, None
        if hold is not None:
            hold.settle(actual)
        elif actual:
            replay = call.run.replay
            if _spends_live(call):
                if _reads_daily:
                    _daily_spend().record(self.spender, actual)
            elif replay is not None:
                replay.charge(self.service, self.agent, actual)

    def abandon(self, call: _Call) -> None:
        """The call ended without a result (it raised, or a policy stopped it): what it reported counts."""
        if not call.settled and (call.held or call.frame.reported):
            self._let_go(call, call.frame.reported or 0.0)

    def _patch(self, call: _Call, bound: dict[str, Any]) -> None:
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

    def approval_request(self, call: _Call) -> tuple[ApprovalChannel, ApprovalRequest]:
        rule = call.verdict.rule
        assert rule is not None
        timeout = rule.timeout or self._rules(call.run).defaults.approval_timeout
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
        return self.approvals or _channel or _durable_channel(), request

    def approved(self, call: _Call, decision: ApprovalDecision | None) -> Any:
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
                return _PROCEED
            return _Refusal("approval timed out")
        if not decision.approved:
            reason = f"approval refused by {decision.approver or 'an approver'}"
            return _Refusal(f"{reason}: {decision.comment}" if decision.comment else reason)
        if call.verdict.patches:
            self._patch(call, call.bound)
        self._hold(call)
        return _PROCEED

    def actual_cost(self, call: _Call, result: Any) -> float:
        """What the call cost: its add_cost reports, else usage.cost on the result, else the estimate."""
        return self._cost_of(call, result)[0]

    @staticmethod
    def _cost_of(call: _Call, result: Any) -> tuple[float, bool]:
        """The actual cost, and whether it is the result's ``usage.cost``.

        A result that came from a tool call already charged its usage is not charged again.
        """
        frame = call.frame
        if frame.reported is not None:
            return frame.reported, False
        usage = _usage_cost(result)
        if usage is None or (frame.charged is not None and any(result is seen for seen in frame.charged)):
            return call.estimate, False
        return usage, True

    def finish(self, call: _Call, result: Any) -> Any:
        """Account the actual cost and check the rules that read the output; returns what the caller gets."""
        actual, from_usage = self._cost_of(call, result)
        call.actual = actual
        if call.frame.reported is None:  # add_cost already counted what it reported
            if actual:
                with call.run._lock:
                    call.run.cost += actual
            parent = call.parent
            if from_usage and parent is not None:
                if parent.charged is None:
                    parent.charged = []
                parent.charged.append(result)
        self._let_go(call, actual)
        if call.facts is None:
            return result
        after = self._rules(call.run).after
        if after is None:
            return result
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

    def _rules(self, run: Run) -> RuleSet:
        """The rules in force for a call of ``run``: a replay's own, else the decorator's."""
        replay = run.replay
        if replay is not None and replay.rules is not None:
            return replay.rules
        assert self.source is not None
        return self.source.current()

    # -- wrappers

    def wrap_sync(self) -> Callable[..., Any]:
        function = self.function
        source = self.source

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            parent = active.get()
            if parent is None:
                log = run_log() if self.record else None
                replay = replaying.get()
                if log is not None or replay is not None:
                    return self._recorded_sync(args, kwargs, None, log, replay)
            elif parent.run.watched:
                return self._recorded_sync(args, kwargs, parent, None, None)
            call = self.start(args, kwargs, parent)
            self.check(call, source.current() if source is not None else None)
            decided = self._decide_sync(call)
            if decided is not _PROCEED:
                return decided
            token = active.set(call.frame)
            try:
                if self.scheduler is None and call.enforcer is None:
                    result = function(*call.args, **call.kwargs)
                else:
                    result = self._invoke_sync(call)
            except BaseException:
                self.abandon(call)
                raise
            finally:
                active.reset(token)
            return self.finish(call, result)

        return wrapper

    def _recorded_sync(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: Frame | None,
        log: RunLog | None,
        replay: Playback | None,
    ) -> Any:
        """A call of a recorded or replayed run: as ``wrapper``, and the run log told how it went."""
        started = time.time()
        call = self.start(args, kwargs, parent, log, replay)
        self._opened(call, started)
        began: float | None = None  # when the function was called (or answered from a replay)
        duration: float | None = None
        result: Any = NO_RESULT
        try:
            self.check(call, self._rules_of(call.run))
            decided = self._decide_sync(call)
            if decided is not _PROCEED:
                self._closed(call, "denied", started, None, NO_RESULT, decided, None)
                return decided
            token = active.set(call.frame)
            try:
                began = time.perf_counter()
                answer = _LIVE if call.run.replay is None else self._replayed(call)
                if answer is not _LIVE:
                    result = answer
                elif (self.scheduler is None and call.enforcer is None) or _replaying_only(call.run):
                    result = self.function(*call.args, **call.kwargs)
                else:
                    result = self._invoke_sync(call)
                duration = time.perf_counter() - began
            finally:
                active.reset(token)
            returned = self.finish(call, result)
        except BaseException as exc:
            if began is not None and duration is None:  # the function (or its slot or policies) raised
                duration = time.perf_counter() - began
            self._closed(call, _status_of(exc), started, duration, result, NO_RESULT, exc)
            raise
        after = call.after
        status = "denied" if after is not None and after.action is Action.DENY else "succeeded"
        self._closed(call, status, started, duration, result, returned, None)
        return returned

    def _rules_of(self, run: Run) -> RuleSet | None:
        """The rules for a call of a recorded or replayed run, if any apply."""
        replay = run.replay
        if replay is not None and replay.rules is not None:
            return replay.rules
        return self.source.current() if self.source is not None else None

    def _opened(self, call: _Call, started: float) -> None:
        run = call.run
        if call.parent is None:
            resumed_from = None
            if run.replay is not None:
                run.replay.continued_as = run.run_id
                if run.replay.resuming:
                    resumed_from = run.replay.record.run_id
            if run.log is not None:
                run.log.run_started(
                    run.run_id,
                    service=self.service,
                    agent=self.agent,
                    tool=self.tool,
                    function=self.path,
                    started=started,
                    input=call.bound,
                    labels=self.stored_labels,
                    resumed_from=resumed_from,
                )
            return
        call.seq = cast(WatchedRun, run)._next_seq()
        if run.replay is not None:
            call.recorded = run.replay.match(call.seq, self.tool, call.bound)

    def _replayed(self, call: _Call) -> Any:
        """In a replay, a tool call's recorded result (or error); ``_LIVE`` when the call must run.

        The call is charged what the recording says it cost: when that is not what its
        result's ``usage.cost`` or its estimate say, it is charged as ``add_cost`` would. In a
        resume, a call answered from the run it continues is charged nothing (that run paid).
        """
        replay = call.run.replay
        if replay is None or call.parent is None:
            return _LIVE
        recorded = call.recorded
        if replay.resuming:
            call.frame.reported = 0.0
            answered, result = replay.outcome(call.seq, self.tool, call.bound, recorded, call.frame)
            if not answered:
                call.frame.reported = None
                return _LIVE
            return result
        spent = recorded.actual_cost if recorded is not None else None
        if spent:
            call.frame.reported = spent  # a recorded error is charged this too; a result may say less
            with call.run._lock:
                call.run.cost += spent
        answered, result = replay.outcome(call.seq, self.tool, call.bound, recorded, call.frame)
        if not answered:
            if spent:
                call.frame.reported = None
                with call.run._lock:
                    call.run.cost -= spent
            return _LIVE
        if spent and self._cost_of_result(call, result) == spent:
            call.frame.reported = None  # finish() charges it from the result, as the recording did
            with call.run._lock:
                call.run.cost -= spent
        return result

    def _cost_of_result(self, call: _Call, result: Any) -> float:
        usage = _usage_cost(result)
        return call.estimate if usage is None else usage

    def _closed(
        self,
        call: _Call,
        status: str,
        started: float,
        duration: float | None,
        result: Any,
        returned: Any,
        error: BaseException | None,
    ) -> None:
        """Tell the run log (and a replay) how the call went."""
        if error is not None:
            call.actual = call.frame.reported or 0.0
            self.abandon(call)
        before = call.verdict
        if (
            before.rule is None
            and before.action is _ALLOWED
            and call.after is None
            and call.policy_error is None
            and not call.downgraded
        ):
            decisions: list[dict[str, Any]] = []  # the common case: no rule matched
        else:
            decisions = _decisions(call)
        run = call.run
        if call.parent is None:
            if run.replay is not None:
                run.replay.finished(status, returned, error, decisions, run.cost)
            if run.log is not None:
                run.log.run_finished(
                    run.run_id,
                    status=status,
                    ended=time.time(),
                    output=returned,
                    error=error,
                    estimated_cost=call.estimate,
                    actual_cost=call.actual,
                    cost=run.cost,
                    decisions=decisions,
                    approval=call.approval,
                    effects=run.effects,
                )
            return
        if run.replay is not None:
            run.replay.decided(call.seq, self.tool, decisions)
        if run.log is not None:
            if call.decided_at is not None:  # what-if sees calls in the order they were decided,
                started = call.decided_at  # and each running until it let go of its estimate
                if duration is not None and call.approval is None:
                    duration = time.time() - started
            run.log.action(  # positional: this is every recorded call's path
                run.run_id,
                call.seq,
                self.tool,
                self.service,
                self.agent,
                started,
                duration,
                status,
                call.bound,
                call.requested,
                result,
                error,
                self.stored_labels,
                call.estimate,
                call.actual,
                decisions,
                call.approval,
                run.effects,
            )

    def _task(self, call: _Call) -> Task:
        labels = self.labels if isinstance(self.labels, dict) else None
        return Task(task_type=self.tool, cost=call.estimate, labels=labels)

    def _invoke_sync(self, call: _Call) -> Any:
        """Call the function inside a scheduler slot, if any, and within its enforcer's check and settle."""
        if isinstance(self.scheduler, LOCOScheduler):
            granted = False
            try:
                with self.scheduler.acquire(self.agent, self._task(call)) as grant:
                    granted = True
                    result = self._checked_sync(call)
                    grant.cost = self.actual_cost(call, result)
            except PolicyViolationError as exc:
                if not granted:  # the scheduler's policies refused the call itself
                    call.policy_error = exc
                raise
            return result
        return self._checked_sync(call)

    def _checked_sync(self, call: _Call) -> Any:
        enforcer = call.enforcer
        if enforcer is None:
            return self.function(*call.args, **call.kwargs)
        try:
            admission = enforcer.admit(self.agent, self._task(call))
        except PolicyViolationError as exc:
            call.policy_error = exc
            raise
        try:
            self._admitted(call, admission)
            result = self.function(*call.args, **call.kwargs)
            actual = self.actual_cost(call, result)
        except BaseException as exc:
            enforcer.settle(admission, Outcome(status_of(exc), None, exc))
            raise
        enforcer.settle(admission, Outcome(Status.SUCCESS, actual))
        return result

    def _admit_items(self, call: _Call) -> tuple[PolicyEnforcer, Admission] | None:
        """A generator's check by its enforcer, before its first item; what to settle after its last."""
        enforcer = call.enforcer
        if enforcer is None or _replaying_only(call.run):
            return None
        try:
            admission = enforcer.admit(self.agent, self._task(call))
        except PolicyViolationError as exc:
            call.policy_error = exc
            self.abandon(call)
            raise
        try:
            self._admitted(call, admission)
        except BaseException as exc:
            enforcer.settle(admission, Outcome(status_of(exc), None, exc))
            self.abandon(call)
            raise
        return enforcer, admission

    def _admitted(self, call: _Call, admission: Admission) -> None:
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

    async def _invoke_async(self, call: _Call) -> Any:
        if isinstance(self.scheduler, AsyncLOCOScheduler):
            granted = False
            try:
                async with self.scheduler.acquire(self.agent, self._task(call)) as grant:
                    granted = True
                    result = await self._checked_async(call)
                    grant.cost = self.actual_cost(call, result)
            except PolicyViolationError as exc:
                if not granted:
                    call.policy_error = exc
                raise
            return result
        return await self._checked_async(call)

    async def _checked_async(self, call: _Call) -> Any:
        enforcer = call.enforcer
        if enforcer is None:
            return await self.function(*call.args, **call.kwargs)
        off = enforcer.blocking
        try:
            if off:
                admission = await _off_loop(
                    enforcer.admit, self.agent, self._task(call), undo=None, settle=enforcer
                )
            else:
                admission = enforcer.admit(self.agent, self._task(call))
        except PolicyViolationError as exc:
            call.policy_error = exc
            raise
        try:
            self._admitted(call, admission)
            result = await self.function(*call.args, **call.kwargs)
            outcome = Outcome(Status.SUCCESS, self.actual_cost(call, result))
        except BaseException as exc:
            failed = Outcome(status_of(exc), None, exc)
            if off:
                await _off_loop(enforcer.settle, admission, failed)
            else:
                enforcer.settle(admission, failed)
            raise
        if off:
            await _off_loop(enforcer.settle, admission, outcome)
        else:
            enforcer.settle(admission, outcome)
        return result

    def _decide_sync(self, call: _Call) -> Any:
        action = call.verdict.action
        if action is Action.DENY:
            return self.refusal(call.verdict, call.verdict.message)
        if action is Action.REQUIRE_APPROVAL:
            if call.run.replay is not None and (not call.run.replay.resuming or call.recorded is not None):
                decision = call.run.replay.approval(call.seq)
            else:
                channel, request = self.approval_request(call)
                try:
                    decision = channel.request(request)
                except BaseException:  # Ctrl-C, SystemExit, a failure: nobody may approve a call that stopped
                    channel.withdraw(request)
                    raise
            outcome = self.approved(call, decision)
            if isinstance(outcome, _Refusal):
                return self.refusal(call.verdict, outcome.detail)
        return _PROCEED

    def _waits_on_stores(self, rules: RuleSet | None) -> bool:
        """Whether a call's checks and settles may wait on a store (SQLite): async calls then make
        them on proctor's store threads, and the event loop goes on meanwhile."""
        if self.enforcer is not None and self.enforcer.blocking:
            return True
        if rules is not None and (rules.budgets or rules.rate_limits or "cost_today" in rules.uses):
            return _daily_spend().store.blocking
        return _reads_daily and _daily_spend().store.blocking

    def wrap_async(self) -> Callable[..., Any]:
        function = self.function
        source = self.source

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            parent = active.get()
            if parent is None:
                log = run_log() if self.record else None
                replay = replaying.get()
                if log is not None or replay is not None:
                    return await self._recorded_async(args, kwargs, None, log, replay)
            elif parent.run.watched:
                return await self._recorded_async(args, kwargs, parent, None, None)
            call = self.start(args, kwargs, parent)
            rules = source.current() if source is not None else None
            off = call.off_loop = self._waits_on_stores(rules)
            if off:
                await _off_loop(self.check, call, rules, undo=functools.partial(self.abandon, call))
            else:
                self.check(call, rules)
            decided = await self._decide_async(call)
            if decided is not _PROCEED:
                return decided
            token = active.set(call.frame)
            try:
                if self.scheduler is None and call.enforcer is None:
                    result = await function(*call.args, **call.kwargs)
                else:
                    result = await self._invoke_async(call)
            except BaseException:
                if off:
                    await _off_loop(self.abandon, call)
                else:
                    self.abandon(call)
                raise
            finally:
                active.reset(token)
            return await _off_loop(self.finish, call, result) if off else self.finish(call, result)

        return wrapper

    async def _recorded_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: Frame | None,
        log: RunLog | None,
        replay: Playback | None,
    ) -> Any:
        """``_recorded_sync`` for coroutine functions."""
        started = time.time()
        call = self.start(args, kwargs, parent, log, replay)
        self._opened(call, started)
        began: float | None = None  # when the function was called (or answered from a replay)
        duration: float | None = None
        result: Any = NO_RESULT
        rules = self._rules_of(call.run)
        off = call.off_loop = self._waits_on_stores(rules)
        try:
            if off:
                await _off_loop(self.check, call, rules, undo=functools.partial(self.abandon, call))
            else:
                self.check(call, rules)
            decided = await self._decide_async(call)
            if decided is not _PROCEED:
                self._closed(call, "denied", started, None, NO_RESULT, decided, None)
                return decided
            token = active.set(call.frame)
            try:
                began = time.perf_counter()
                answer = _LIVE if call.run.replay is None else self._replayed(call)
                if answer is not _LIVE:
                    result = answer
                elif (self.scheduler is None and call.enforcer is None) or _replaying_only(call.run):
                    result = await self.function(*call.args, **call.kwargs)
                else:
                    result = await self._invoke_async(call)
                duration = time.perf_counter() - began
            finally:
                active.reset(token)
            returned = await _off_loop(self.finish, call, result) if off else self.finish(call, result)
        except BaseException as exc:
            if began is not None and duration is None:  # the function (or its slot or policies) raised
                duration = time.perf_counter() - began
            closing = (call, _status_of(exc), started, duration, result, NO_RESULT, exc)
            if off:  # it may settle what the call held
                await _off_loop(self._closed, *closing)
            else:
                self._closed(*closing)
            raise
        after = call.after
        status = "denied" if after is not None and after.action is Action.DENY else "succeeded"
        self._closed(call, status, started, duration, result, returned, None)
        return returned

    async def _decide_async(self, call: _Call) -> Any:
        action = call.verdict.action
        if action is Action.DENY:
            return self.refusal(call.verdict, call.verdict.message)
        if action is Action.REQUIRE_APPROVAL:
            if call.run.replay is not None and (not call.run.replay.resuming or call.recorded is not None):
                decision = call.run.replay.approval(call.seq)
            else:
                channel, request = self.approval_request(call)
                # A person may take minutes: the channel waits as a coroutine (and withdraws when cancelled).
                decision = await channel.arequest(request)
            outcome = (
                await _off_loop(self.approved, call, decision)
                if call.off_loop
                else self.approved(call, decision)
            )
            if isinstance(outcome, _Refusal):
                return self.refusal(call.verdict, outcome.detail)
        return _PROCEED

    def wrap_generator(self) -> Callable[..., Any]:
        function = self.function

        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            parent = active.get()
            if parent is not None and parent.run.replay is not None:
                parent.run.replay.unrecorded(self.tool, self.bind(args, kwargs))
            call = self.enter(args, kwargs, parent)
            decided = self._decide_sync(call)
            if decided is not _PROCEED:
                yield decided  # the refusal is the one item, for an agent to read
                return None
            admission = self._admit_items(call)
            items = function(*call.args, **call.kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    # The call's frame is active only while the generator runs, not between items.
                    token = active.set(call.frame)
                    try:
                        item = items.send(sent) if thrown is None else items.throw(thrown)
                    except StopIteration as stop:
                        returned = stop.value
                        break
                    finally:
                        active.reset(token)
                    thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:  # thrown in by the consumer: pass it on
                        thrown, sent = exc, None
            except BaseException as exc:
                if admission is not None:
                    admission[0].settle(admission[1], Outcome(status_of(exc), None, exc))
                self.abandon(call)
                raise
            finally:
                # An early break or close() finishes the function inside its run, not outside.
                token = active.set(call.frame)
                try:
                    items.close()
                finally:
                    active.reset(token)
            if admission is not None:
                admission[0].settle(admission[1], Outcome(Status.SUCCESS, self.actual_cost(call, returned)))
            self.finish(call, returned)
            return returned

        return wrapper

    def wrap_async_generator(self) -> Callable[..., Any]:
        function = self.function

        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            parent = active.get()
            if parent is not None and parent.run.replay is not None:
                parent.run.replay.unrecorded(self.tool, self.bind(args, kwargs))
            call = self.enter(args, kwargs, parent)
            decided = await self._decide_async(call)
            if decided is not _PROCEED:
                yield decided
                return
            admission = self._admit_items(call)
            items = function(*call.args, **call.kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    token = active.set(call.frame)
                    try:
                        item = await (items.asend(sent) if thrown is None else items.athrow(thrown))
                    except StopAsyncIteration:
                        break
                    finally:
                        active.reset(token)
                    thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:
                        thrown, sent = exc, None
            except BaseException as exc:
                if admission is not None:
                    admission[0].settle(admission[1], Outcome(status_of(exc), None, exc))
                self.abandon(call)
                raise
            finally:
                token = active.set(call.frame)
                try:
                    await items.aclose()
                finally:
                    active.reset(token)
            if admission is not None:
                admission[0].settle(admission[1], Outcome(Status.SUCCESS, self.actual_cost(call, None)))
            self.finish(call, None)

        return wrapper


def _spends_live(call: _Call) -> bool:
    """Whether what the call spends counts in today's spend (not in a replay's recorded one)."""
    replay = call.run.replay
    return replay is None or (replay.resuming and call.recorded is None)


def _replaying_only(run: Run) -> bool:
    """Whether ``run`` is a replay whose live calls skip slots and budgets (a resume takes them)."""
    return run.replay is not None and not run.replay.resuming


def _status_of(error: BaseException) -> str:
    """How a call that raised ``error`` ended, in the run log's words."""
    if isinstance(error, RunTerminated):
        return "terminated"
    if isinstance(error, PolicyViolationError):
        return "denied"
    if isinstance(error, Exception):
        return "failed"
    return "cancelled"  # CancelledError, KeyboardInterrupt, SystemExit, a replay leaving its recording


def _decisions(call: _Call) -> list[dict[str, Any]]:
    """The call's decisions as the run log stores them (see ``proctor.runs.result.effective_action``)."""
    decisions: list[dict[str, Any]] = []
    for phase, verdict in (("before", call.verdict), ("after", call.after)):
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


class _Refusal:
    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


_PROCEED: Any = object()
_LIVE: Any = object()
_PLAIN = frozenset((str, int, float, bool, bytes, list, tuple))
_ALLOW = Verdict(Action.ALLOW)
_RUNS = frozenset((Action.ALLOW, Action.LOG, Action.MODIFY))  # the actions after which a call runs
_ALLOWED = Action.ALLOW


def _call_key(tool: str, bound: Mapping[str, Any]) -> str | None:
    """What makes two calls "the same call": the tool and its arguments' repr."""
    try:
        return f"{tool}:{bound!r}"
    except Exception:  # an argument whose repr fails cannot be compared; count nothing
        return None


def _usage_cost(result: Any) -> float | None:
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
