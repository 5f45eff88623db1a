"""What-if: recorded runs re-evaluated under other policies, from the run log alone; no code runs.

Each run is walked on a virtual clock made of its recorded times. Its top-level call is action 0
(the run's tool; its input as ``args`` and ``input``; its estimated cost and labels; at the run's
start, with nothing spent or called before it). Its actions follow in order, with facts rebuilt
from the recording:

- ``args``: the arguments as requested (before any ``modify``); ``cost``: the estimated cost;
  ``labels``, ``input``, ``agent``, ``service`` and ``tool`` as recorded;
- ``cost_run``: the recorded cost of the run's calls that ended by the time this one began;
- ``tool_calls_in_run``: the run's earlier actions; ``same_call_in_run``: those of them with the
  same tool and the same stored arguments;
- ``time``: the recorded start, in the policies' time zone (``defaults.timezone``; else local);
- ``cost_today``: what the action's service and agent spent since midnight (same zone) before it
  began: the re-evaluated spend of the runs given, and the recorded spend of the log's other runs
  (those that started at most a day before that midnight).

Rules on ``output`` see the recorded result (the run's output, for action 0) of a call that
returned, with the other facts as the call began (as live calls see them). The decision is the
verdict before the call, unless a rule on the output denies or terminates (or logs an allowed
call). ``require_approval`` is taken as granted. A deny or terminate stops the run there: later
actions are not evaluated, and the run spends only what its calls that ended by then spent (a
call stopped by a rule on its output ran and is charged; the top-level call only when it ran to
its end). A run not stopped ends as recorded, with its recorded status and cost (for a run
still ``running``, a process that died, what its recorded actions spent). A call the
recording denied that the policies allow now has no recorded result or cost: it counts as free,
and the run goes on.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, tzinfo
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from proctor._numbers import from_units, to_units
from proctor.decision import Action
from proctor.rules.facts import Facts
from proctor.rules.ruleset import RuleSet, Verdict
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.accounts import Account, day_of
from proctor.runs.log import RunLog, RunRecord
from proctor.runs.result import ActionDecision, ReplayResult, effective_action
from proctor.runs.whatif_limits import LimitBook
from proctor.runtime.playback import FactClock

__all__ = ["what_if"]

_DENY = Action.DENY
_TERMINATE = Action.TERMINATE
_LOG = Action.LOG
_ALLOW = Action.ALLOW
_STATUS = {Action.DENY: "denied", Action.TERMINATE: "terminated"}
_STOPS = ("deny", "terminate")  # the stored actions that stop a call
_DAY = 86_400.0
_KEPT = 4096  # decoded labels and arguments kept by their text: labels and many arguments repeat
_loads = json.JSONDecoder().decode
_WHEN = itemgetter(0)

# The columns of the actions read, as plain tuples after their run_id; then ``labels`` when rules read
# them, and ``status`` and ``result`` when rules read the output.
_COLUMNS = (
    "seq",
    "tool",
    "service",
    "agent",
    "started",
    "duration",
    "args",
    "requested_args",
    "estimated_cost",
    "actual_cost",
    "decisions",
)
_SEQ, _TOOL, _SERVICE, _AGENT, _STARTED, _DURATION, _ARGS, _REQUESTED, _ESTIMATED, _ACTUAL, _DECISIONS = (
    range(1, len(_COLUMNS) + 1)
)


def _decode(text: str | None) -> Any:
    """The value of a stored JSON column; None for NULL."""
    return None if text is None else _loads(text)


def what_if(log: RunLog, runs: Sequence[RunRecord], policies: PolicySpec) -> list[ReplayResult]:
    """Re-evaluate ``runs`` of ``log`` (distinct ones, as ``select_runs`` gives) under ``policies``.

    Returns one ``mode="what-if"`` result per run, in the order given. ``policies`` is a
    ``RuleSet``, a policy file path or a list of them, or a parsed mapping (``PolicyConfigError``
    when they do not load). See the module docstring for the semantics.
    """
    rules = policies if isinstance(policies, RuleSet) else PolicySource(policies).current()
    evaluator = _Evaluator(rules)
    walks = _walks(log, runs, evaluator.columns)
    if "cost_today" in rules.uses or rules.budgets or rules.rate_limits:
        return evaluator.on_one_clock(log, walks)
    return [evaluator.walk(walk) for walk in walks]


def _walks(log: RunLog, runs: Sequence[RunRecord], columns: tuple[str, ...]) -> Iterator[_Walk]:
    """One walk per logical run of ``runs``: a resume chain is walked once, as its last run.

    A run that ``proctor.resume`` continued is left out (its continuation stands for it); a
    continuation takes the chain's actions, each from the first run in which it finished, the
    chain's start, and the chain's cost.
    """
    continued = log.continued([run.run_id for run in runs])
    chains = [
        log.chain(run) if run.resumed_from is not None else [run]
        for run in runs
        if run.run_id not in continued
    ]
    rows = log.action_rows([member.run_id for chain in chains for member in chain], columns)
    for chain in chains:
        if len(chain) == 1:
            yield _Walk(chain[0], next(rows))
            continue
        parts = [next(rows) for _ in chain]
        run = chain[-1]._replace(started=chain[0].started, cost=sum(member.cost for member in chain))
        yield _Walk(run, _chained(parts), tuple(member.run_id for member in chain))


def _chained(parts: list[list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """The actions of a resume chain: each seq from the first run that finished it (the last run's as is)."""
    taken: dict[int, tuple[Any, ...]] = {}
    last = len(parts) - 1
    for index, actions in enumerate(parts):
        for action in actions:
            if action[_SEQ] not in taken and (index == last or action[_DURATION] is not None):
                taken[action[_SEQ]] = action
    return [taken[seq] for seq in sorted(taken)]


class _Decoded(dict[str | None, Any]):
    """Decoded JSON texts, kept by their text: the first ``_KEPT`` distinct ones (rules only read them)."""

    __slots__ = ()

    def __missing__(self, text: str | None) -> Any:
        value = _decode(text)
        if len(self) < _KEPT:
            self[text] = value
        return value


class _Needs:
    """Which facts the rules that can match one tool read, before or after its calls.

    ``fixed`` is the verdict on every call of a tool that no rule can match: the file's default.
    """

    __slots__ = (
        "after",
        "args",
        "context",
        "cost_run",
        "cost_today",
        "fixed",
        "labels",
        "same",
        "text",
        "time",
    )

    def __init__(self, uses: frozenset[str], after: bool, fixed: Verdict | None) -> None:
        self.fixed = fixed
        self.after = after
        self.context = not uses.isdisjoint(("agent", "service", "input"))
        self.args = "args" in uses
        self.same = "same_call_in_run" in uses
        self.text = self.args or self.same
        self.labels = "labels" in uses
        self.time = "time" in uses
        self.cost_run = "cost_run" in uses
        self.cost_today = "cost_today" in uses


class _Walk:
    """One run on its way through the rules: what it counted so far, and how it ends.

    ``actions`` are its recorded actions as rows of ``_COLUMNS`` (after the run_id), in order;
    ``members`` the recorded runs it is made of (more than one for a resume chain).
    """

    __slots__ = (
        "actions",
        "cost",
        "decisions",
        "ended",
        "held",
        "holding",
        "input",
        "limited",
        "members",
        "position",
        "recorded",
        "run",
        "same",
        "spent",
        "status",
        "stop",
        "top",
        "top_facts",
    )

    def __init__(
        self, run: RunRecord, actions: list[tuple[Any, ...]], members: tuple[str, ...] | None = None
    ) -> None:
        self.run = run
        self.actions = actions
        self.members = members or (run.run_id,)
        self.position = 0  # 0: the top-level call is next; n: action n - 1 of ``actions``
        # Set by begin(), as the walk sets off: only the walks under way hold them (less for the GC).
        self.decisions: list[ActionDecision]
        self.ended: list[tuple[float, float]]  # (end, cost) of calls charged, not yet in ``spent``
        self.input: Any = None
        self.same: dict[tuple[str, str | None], int] | None = None
        self.spent = 0.0  # recorded cost of the calls that ended by the last action's start
        self.held = 0  # estimates of the calls running at the last action's start, in units
        self.holding: list[tuple[float, int]] = []  # (end, units) of the calls whose estimate is held
        self.stop: float | None = None  # when the run was stopped, on the recorded clock
        self.status = run.status
        self.recorded = run.cost
        if run.status == "running":  # the run's total was never recorded: what its actions spent
            self.recorded = sum(action[_ACTUAL] or 0.0 for action in actions)
        self.cost = self.recorded
        self.top: Verdict | None = None
        self.top_facts: Facts | None = None
        self.limited: tuple[str, str] | None = None  # what a budget or rate limit said on the top-level call

    def spent_by(self, at: float) -> float:
        """The recorded cost of the calls that ended by ``at``; ``at`` never goes back."""
        ended = self.ended
        if ended:
            open_ = []
            for end, cost in ended:
                if end <= at:
                    self.spent += cost
                else:
                    open_.append((end, cost))
            self.ended = open_
        return self.spent

    def hold(self, end: float, estimate: float) -> None:
        """A call of the run holds ``estimate`` in its cost_run from now until ``end``."""
        units = to_units(estimate)
        self.held += units
        self.holding.append((end, units))

    def held_by(self, at: float) -> int:
        """The estimates of the run's calls still running at ``at``, in units; ``at`` never goes back."""
        left = []
        for end, units in self.holding:
            if end <= at:
                self.held -= units
            else:
                left.append((end, units))
        self.holding = left
        return self.held

    def charged_by(self, count: int, at: float) -> float:
        """The recorded cost of the first ``count`` actions whose calls ended by ``at``."""
        total = 0.0
        for action in self.actions[:count]:
            cost = action[_ACTUAL]
            if cost and action[_STARTED] + (action[_DURATION] or 0.0) <= at:
                total += cost
        return total


class _DailySpend(dict[tuple[str, str], Account]):
    """The accounts of every (service, agent), opened on first use."""

    __slots__ = ("zone",)

    def __init__(self, zone: tzinfo | None) -> None:
        super().__init__()
        self.zone = zone

    def __missing__(self, key: tuple[str, str]) -> Account:
        zone = self.zone
        account = self[key] = Account(lambda at: day_of(at, zone))
        return account


class _RecordedClock:
    """What-if's ``FactClock``: the recorded moment the action being decided began, and what the
    recorded traffic spent by then (the what-if ledgers, in the rules' time zone)."""

    __slots__ = ("at", "daily")

    def __init__(self) -> None:
        self.at = 0.0
        self.daily: _DailySpend | None = None

    def now(self, tz: tzinfo | None) -> datetime:
        return datetime.fromtimestamp(self.at, tz)

    def cost_today(self, service: str, agent: str, zone: str | None) -> float:
        daily = self.daily
        return 0.0 if daily is None else daily[service, agent].spent_at(self.at)


_: FactClock = _RecordedClock()  # what-if builds its time facts and cost_today as live calls and replays do


class _Evaluator:
    """The rules, the facts object they read (reused for every action), and what is cached per tool."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.after = rules.after
        zone = rules.defaults.timezone
        self.zone: tzinfo | None = ZoneInfo(zone) if zone else None
        uses = rules.uses
        self.uses_input = "input" in uses
        self.track_run = "cost_run" in uses
        self.clock = _RecordedClock()
        self.columns: tuple[str, ...] = _COLUMNS
        self.labels_at = self.status_at = 0  # where the labels, status and result are in an action's row
        if "labels" in uses:
            self.columns += ("labels",)
            self.labels_at = len(self.columns)
        if self.after is not None:
            self.columns += ("status", "result")
            self.status_at = len(self.columns) - 1
        self.daily: _DailySpend | None = None
        self.book: LimitBook | None = None
        self.facts = Facts()
        self.needs: dict[str, _Needs] = {}
        self.recorded: dict[str | None, tuple[str, bool]] = {}
        self.labels = _Decoded()
        self.args = _Decoded()
        self.made: dict[tuple[Any, ...], ActionDecision] = {}
        self.known: dict[tuple[Any, ...], tuple[ActionDecision, Verdict, Verdict]] = {}

    # -- one run after another, or all of them on one clock

    def walk(self, walk: _Walk) -> ReplayResult:
        """Walk one run from its top-level call to where it ends or stops."""
        while not self.advance(walk, math.inf):
            pass
        return self.finish(walk)

    def on_one_clock(self, log: RunLog, walks: Iterable[_Walk]) -> list[ReplayResult]:
        """Walk ``walks`` together in the order of their recorded times, for ``cost_today``."""
        # The clock holds each walk until it is over: a finished one and its actions are let go.
        clock = [(walk.run.started, index, walk) for index, walk in enumerate(walks)]
        rules = self.rules
        daily = self.daily = self.clock.daily = _DailySpend(self.zone) if "cost_today" in rules.uses else None
        book = self.book = LimitBook(rules) if rules.budgets or rules.rate_limits else None
        _charge_others(log, [walk for _, _, walk in clock], daily, book, self.recorded_of)
        finished: dict[int, ReplayResult] = {}
        count = len(clock)
        heapq.heapify(clock)
        while clock:
            _, index, walk = heapq.heappop(clock)
            # Go on with this run while its next action begins before any other run's.
            if self.advance(walk, clock[0][0] if clock else math.inf):
                finished[index] = self.finish(walk)
            else:
                heapq.heappush(clock, (walk.actions[walk.position - 1][_STARTED], index, walk))
        return [finished[index] for index in range(count)]

    # -- the top-level call, before its actions and after them

    def begin(self, walk: _Walk) -> bool:
        """Evaluate the top-level call before it runs; True when that stops the run."""
        run = walk.run
        walk.decisions = []
        walk.ended = []
        needs = self.needs_of(run.tool)
        if self.uses_input or needs.args:  # the run's input is its top-level call's arguments
            walk.input = _decode(run.input)
        facts = Facts() if needs.after else self.facts  # kept for the rules on the output
        facts.agent = run.agent
        facts.service = run.service
        facts.tool = run.tool
        facts.args = facts.input = walk.input
        facts.cost = run.estimated_cost or 0.0
        facts.cost_run = 0.0
        facts.tool_calls_in_run = facts.same_call_in_run = 0
        if needs.labels:
            facts.labels = self.labels[run.labels]
        clock = self.clock
        clock.at = run.started
        if needs.time:
            facts.now = clock.now(self.zone)
        if needs.cost_today and self.daily is not None:
            facts.cost_today = clock.cost_today(run.service, run.agent, None)
        verdict = self.rules.evaluate(facts)
        walk.top = verdict
        if verdict.action is _DENY or verdict.action is _TERMINATE:
            walk.stop = run.started
            walk.status = _STATUS[verdict.action]
            walk.cost = 0.0
            return True
        if self.book is not None:
            names = (run.agent, run.service, run.tool)
            end = run.ended or run.started
            limited = walk.limited = self.book.check(
                names, run.started, end, run.estimated_cost or 0.0, run.actual_cost or 0.0, walk
            )
            if limited is not None and limited[0] == "deny" and self.recorded_of(run.decisions)[0] != "deny":
                walk.stop = run.started
                walk.status = "denied"
                walk.cost = 0.0
                return True
        if needs.after:
            walk.top_facts = facts
        if self.daily is not None and run.estimated_cost:  # held while the run's own call ran
            self.daily[run.service, run.agent].hold(run.started, run.ended or run.started, run.estimated_cost)
        return False

    def finish(self, walk: _Walk) -> ReplayResult:
        """Evaluate the top-level call's output if the run went on to its end, and sum the run up."""
        run = walk.run
        verdict = walk.top
        assert verdict is not None
        decided = verdict
        recorded, stopped_after = self.recorded_of(run.decisions)
        facts = walk.top_facts
        if walk.stop is None:
            if (
                facts is not None
                and self.after is not None
                and run.ended is not None
                and (run.status == "succeeded" or stopped_after)
            ):
                facts.output = _decode(run.output)
                late = self.after.evaluate(facts)
                if late.action is _DENY or late.action is _TERMINATE:
                    decided = late
                    walk.status = _STATUS[late.action]
                elif late.action is _LOG and verdict.action is _ALLOW:
                    decided = late
            if self.daily is not None and run.actual_cost and run.ended is not None:
                self.daily[run.service, run.agent].charge(run.ended, run.actual_cost)
        top = self.decision(0, run.tool, decided, verdict, recorded)
        limited = walk.limited
        if limited is not None and (limited[0] == "deny" or decided.action is _ALLOW):
            top = _by_limit(0, run.tool, limited, verdict, recorded)
        return ReplayResult(
            run_id=run.run_id,
            mode="what-if",
            status_before=run.status,
            status_after=walk.status,
            cost_before=walk.recorded,
            cost_after=walk.cost,
            decisions=(top, *walk.decisions),
        )

    # -- the actions

    def advance(self, walk: _Walk, until: float) -> bool:
        """Go on with ``walk`` until its next action begins at ``until`` or later; True when it is over.

        The top-level call, or the action a walk resumes with, is evaluated whatever ``until``.
        """
        actions = walk.actions
        count = len(actions)
        index = walk.position - 1  # of the next action
        if index < 0:
            if self.begin(walk) or not count:
                return True
            index = 0
            if actions[0][_STARTED] >= until:
                walk.position = 1
                return False
        facts = self.facts
        evaluate = self.rules.evaluate
        after = self.after
        needs_of = self.needs.get
        recorded_of = self.recorded.get
        decision = self.decision
        append = walk.decisions.append
        daily = self.daily
        book = self.book
        track_run = self.track_run
        args = self.args
        status_at = self.status_at
        clock = self.clock
        account: Account | None = None
        service = agent = None  # of ``account``
        while True:
            action = actions[index]
            tool = action[_TOOL]
            needs = needs_of(tool) or self.needs_of(tool)
            started = action[_STARTED]
            if daily is not None and (action[_SERVICE] != service or action[_AGENT] != agent):
                service, agent = action[_SERVICE], action[_AGENT]
                account = daily[service, agent]
            verdict = needs.fixed
            if verdict is None:
                facts.tool = tool
                if needs.context:
                    facts.agent = action[_AGENT]
                    facts.service = action[_SERVICE]
                    facts.input = walk.input
                facts.cost = action[_ESTIMATED] or 0.0
                facts.tool_calls_in_run = index
                if needs.text:
                    text = action[_REQUESTED] or action[_ARGS]
                    if needs.args:
                        facts.args = args[text]
                    if needs.same:
                        same = walk.same
                        if same is None:
                            same = walk.same = {}
                        call = (tool, text)
                        seen = same.get(call, 0)
                        same[call] = seen + 1
                        facts.same_call_in_run = seen
                if needs.labels:
                    facts.labels = self.labels[action[self.labels_at]]
                clock.at = started
                if needs.time:
                    facts.now = clock.now(self.zone)
                if needs.cost_run:
                    facts.cost_run = walk.spent_by(started) if walk.ended else walk.spent
                    if walk.holding:
                        facts.cost_run = from_units(to_units(facts.cost_run) + walk.held_by(started))
                if needs.cost_today and account is not None:
                    facts.cost_today = clock.cost_today(action[_SERVICE], action[_AGENT], None)
                verdict = evaluate(facts)
            before = verdict.action
            text = action[_DECISIONS]
            recorded = recorded_of(text) or self.recorded_of(text)
            if before is _DENY or before is _TERMINATE:
                append(decision(action[_SEQ], tool, verdict, verdict, recorded[0]))
                if recorded[0] != before:
                    return self.stopped(walk, index, started, before)
                # Refused in the recording too: the run went on as recorded (its code may have
                # caught the refusal), and the call spent nothing.
            else:
                end = started + (action[_DURATION] or 0.0)
                cost = action[_ACTUAL]
                estimate = action[_ESTIMATED]
                limited = None
                if book is not None:
                    names = (action[_AGENT], action[_SERVICE], tool)
                    limited = book.check(names, started, end, estimate or 0.0, cost or 0.0, walk)
                    if limited is not None and limited[0] == "deny":
                        append(_by_limit(action[_SEQ], tool, limited, verdict, recorded[0]))
                        if recorded[0] != "deny":
                            return self.stopped(walk, index, started, _DENY)
                        index += 1  # refused in the recording too: the run went on as recorded
                        if index == count:
                            return True
                        if actions[index][_STARTED] >= until:
                            walk.position = index + 1
                            return False
                        continue
                if estimate:  # the call runs: its estimate counts while it does (live calls hold it)
                    if track_run:
                        walk.hold(end, estimate)
                    if account is not None:
                        account.hold(started, end, estimate)
                if cost:  # what it cost counts from its end
                    if track_run:
                        walk.ended.append((end, cost))
                    if account is not None:
                        due = account.due
                        if due and end < due[-1][0]:
                            account.charge(end, cost, walk)
                        else:
                            due.append((end, cost, walk, False))
                decided = verdict
                if needs.after and after is not None and (action[status_at] == "succeeded" or recorded[1]):
                    facts.output = _decode(action[status_at + 1])
                    late = after.evaluate(facts)
                    if late.action is _DENY or late.action is _TERMINATE:
                        append(decision(action[_SEQ], tool, late, verdict, recorded[0]))
                        return self.stopped(walk, index + 1, end, late.action)
                    if late.action is _LOG and before is _ALLOW:
                        decided = late
                if limited is not None and decided.action is _ALLOW:
                    append(_by_limit(action[_SEQ], tool, limited, verdict, recorded[0]))
                else:
                    append(decision(action[_SEQ], tool, decided, verdict, recorded[0]))
            index += 1
            if index == count:
                return True
            if actions[index][_STARTED] >= until:
                walk.position = index + 1
                return False

    def stopped(self, walk: _Walk, charged: int, at: float, action: Action) -> bool:
        """Stop ``walk`` at ``at``: it spent what its first ``charged`` actions spent by then."""
        walk.stop = at
        walk.status = _STATUS[action]
        walk.cost = walk.charged_by(charged, at)
        return True

    # -- caches

    def needs_of(self, tool: str) -> _Needs:
        """What the rules that can match ``tool`` read, worked out on its first call."""
        needs = self.needs.get(tool)
        if needs is None:
            candidates = self.rules.candidates(tool)
            later = self.after.candidates(tool) if self.after is not None else ()
            uses = frozenset().union(*(compiled.uses for compiled in (*candidates, *later)))
            fixed = None if candidates or later else self.rules.evaluate(Facts(tool=tool))
            needs = self.needs[tool] = _Needs(uses, bool(later), fixed)
        return needs

    def recorded_of(self, text: str | None) -> tuple[str, bool]:
        """The effective recorded action, and whether a rule on the output stopped the call."""
        known = self.recorded.get(text)
        if known is None:
            decisions = json.loads(text) if text else []
            action = effective_action(decisions)[0]
            after = any(
                item.get("decided") and item.get("phase") == "after" and item.get("action") in _STOPS
                for item in decisions
            )
            known = self.recorded[text] = (action, after)
        return known

    def decision(
        self, seq: int, tool: str, decided: Verdict, verdict: Verdict, recorded: str
    ) -> ActionDecision:
        """The decision on one action: ``decided`` took effect; ``verdict``, before the call, patched."""
        key = (seq, tool, id(decided), id(verdict), recorded)
        known = self.known.get(key)
        if known is not None:
            return known[0]
        rule = decided.rule
        patches = verdict.patches
        made_key = (
            seq,
            tool,
            str(decided.action),
            None if rule is None else rule.id,
            recorded,
            tuple(patch.id for patch in patches) if patches else (),
        )
        made = self.made.get(made_key)
        if made is None:
            made = self.made[made_key] = ActionDecision(*made_key)
        if len(decided.matched) < 2 and len(verdict.matched) < 2:  # the rule set's own, not made per call
            self.known[key] = (made, decided, verdict)  # kept alive: their ids stay theirs
        return made


def _charge_others(
    log: RunLog,
    walks: list[_Walk],
    daily: _DailySpend | None,
    book: LimitBook | None,
    recorded_of: Callable[[str | None], tuple[str, bool]],
) -> None:
    """Charge the recorded spend (and rate-limit tokens) of the log's runs not walked, in the days
    the walks cover. ``recorded_of`` reads a stored decision list (see ``_Evaluator.recorded_of``)."""
    if not walks or (daily is None and book is None):
        return
    first = min(walk.run.started for walk in walks)
    last = max(max(walk.run.started, walk.actions[-1][_STARTED] if walk.actions else 0.0) for walk in walks)
    walked = {member for walk in walks for member in walk.members}
    # A run that began more than a day before the first midnight is taken to have ended by then.
    zone = daily.zone if daily is not None else None
    since = day_of(first, zone)[0] - _DAY
    run_columns = (
        "run_id",
        "service",
        "agent",
        "tool",
        "started",
        "ended",
        "estimated_cost",
        "actual_cost",
        "decisions",
    )
    others = [run for run in log.run_rows(run_columns, since=since, until=last) if run[0] not in walked]
    for _, service, agent, tool, started, ended, estimate, cost, decisions in others:
        end = ended or started
        if daily is not None:
            if estimate:
                daily[service, agent].hold(started, end, estimate)
            if cost and ended is not None:
                daily[service, agent].charge(ended, cost)
        if book is not None:
            action, stopped_after = recorded_of(decisions)
            if action not in _STOPS or stopped_after:  # its own call passed the limits and ran
                spent = cost if ended is not None else 0.0
                book.other((agent, service, tool), started, end, estimate or 0.0, spent or 0.0)
    columns = (
        "service",
        "agent",
        "tool",
        "started",
        "duration",
        "estimated_cost",
        "actual_cost",
        "status",
        "decisions",
    )
    for actions in log.action_rows([run[0] for run in others], columns):
        for _, service, agent, tool, started, duration, estimate, cost, status, decisions in actions:
            end = started + (duration or 0.0)
            if daily is not None:
                if estimate and status != "denied":
                    daily[service, agent].hold(started, end, estimate)
                if cost:
                    daily[service, agent].charge(end, cost)
            if book is not None:
                action, stopped_after = recorded_of(decisions)
                if action not in _STOPS or stopped_after:  # it passed the limits and ran
                    book.other((agent, service, tool), started, end, estimate or 0.0, cost or 0.0)


def _by_limit(
    seq: int, tool: str, limited: tuple[str, str], verdict: Verdict, recorded: str
) -> ActionDecision:
    """The decision on an action that a budget or rate limit refused, or let run over its limit."""
    action, limit_id = limited
    patched = tuple(patch.id for patch in verdict.patches)
    return ActionDecision(
        seq, tool, action, limit_id, recorded, (*patched, limit_id) if action == "modify" else patched
    )
