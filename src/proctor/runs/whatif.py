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
import itertools
import json
import math
import operator
from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from proctor.decision import Action
from proctor.rules.facts import Facts
from proctor.rules.ruleset import RuleSet, Verdict
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.log import ActionRecord, RunLog, RunRecord
from proctor.runs.result import ActionDecision, ReplayResult, effective_action

__all__ = ["what_if"]

_DENY = Action.DENY
_TERMINATE = Action.TERMINATE
_LOG = Action.LOG
_ALLOW = Action.ALLOW
_STATUS = {Action.DENY: "denied", Action.TERMINATE: "terminated"}
_DAY = 86_400.0
_LABELS_KEPT = 4096  # decoded labels kept by their text: few distinct ones, given per decorated function
_loads = json.JSONDecoder().decode
_UNKNOWN: Any = object()
_RUN_ID = operator.attrgetter("run_id")


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
    if "cost_today" in rules.uses:
        return evaluator.on_one_clock(log, runs)
    return [evaluator.walk(_Walk(run, actions)) for run, actions in _grouped(log, runs)]


class _Needs:
    """Which facts the rules that can match one tool read, before or after its calls.

    ``fixed`` is the verdict on every call of a tool that no rule can match: the file's default.
    """

    __slots__ = ("after", "args", "cost_run", "cost_today", "fixed", "labels", "same", "text", "time")

    def __init__(self, uses: frozenset[str], after: bool, fixed: Verdict | None) -> None:
        self.fixed = fixed
        self.after = after
        self.args = "args" in uses
        self.same = "same_call_in_run" in uses
        self.text = self.args or self.same
        self.labels = "labels" in uses
        self.time = "time" in uses
        self.cost_run = "cost_run" in uses
        self.cost_today = "cost_today" in uses


class _Walk:
    """One run on its way through the rules: what it counted so far, and how it ends."""

    __slots__ = (
        "actions",
        "calls",
        "cost",
        "decisions",
        "ended",
        "input",
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

    def __init__(self, run: RunRecord, actions: list[ActionRecord]) -> None:
        self.run = run
        self.actions = actions
        self.position = 0  # 0: the top-level call is next; n: action n - 1 of ``actions``
        self.calls = 0
        self.decisions: list[ActionDecision] = []
        self.input: Any = None
        self.same: dict[tuple[str, str | None], int] | None = None
        self.spent = 0.0  # recorded cost of the calls that ended by the last action's start
        self.ended: list[tuple[float, float]] = []  # (end, cost) of calls charged, not yet in ``spent``
        self.stop: float | None = None  # when the run was stopped, on the recorded clock
        self.status = run.status
        self.recorded = run.cost
        if run.status == "running":  # the run's total was never recorded: what its actions spent
            self.recorded = sum(action.actual_cost or 0.0 for action in actions)
        self.cost = self.recorded
        self.top: Verdict | None = None
        self.top_facts: Facts | None = None

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

    def charged_by(self, count: int, at: float) -> float:
        """The recorded cost of the first ``count`` actions whose calls ended by ``at``."""
        total = 0.0
        for action in self.actions[:count]:
            cost = action.actual_cost
            if cost and action.started + (action.duration or 0.0) <= at:
                total += cost
        return total


class _DailySpend:
    """Spend per (service, agent) since midnight on the virtual clock; a charge counts from when it is made.

    Queries come in time order. A charge by a walked run is dropped when the run was stopped
    before the charged call ended.
    """

    __slots__ = ("_charges", "_days", "_order", "_zone")

    def __init__(self, zone: tzinfo | None) -> None:
        self._zone = zone
        self._charges: dict[tuple[str, str], list[tuple[float, int, float, _Walk | None]]] = {}
        self._days: dict[tuple[str, str], list[float]] = {}  # [midnight, next midnight, spent]
        self._order = itertools.count()

    def charge(self, key: tuple[str, str], at: float, amount: float, walk: _Walk | None = None) -> None:
        """Spend ``amount`` at ``at``; by ``walk``, unless it is stopped before ``at``."""
        charges = self._charges.get(key)
        if charges is None:
            charges = self._charges[key] = []
        heapq.heappush(charges, (at, next(self._order), amount, walk))

    def spent(self, key: tuple[str, str], at: float) -> float:
        """What ``key`` spent since the midnight before ``at``, up to ``at``."""
        day = self._days.get(key)
        if day is None or not day[0] <= at < day[1]:
            day = self._days[key] = [*self.day_of(at), 0.0]
        charges = self._charges.get(key)
        while charges and charges[0][0] <= at:
            when, _, amount, walk = heapq.heappop(charges)
            if when >= day[0] and (walk is None or walk.stop is None or when <= walk.stop):
                day[2] += amount
        return day[2]

    def day_of(self, at: float) -> tuple[float, float]:
        """The midnight before ``at`` and the one after, as Unix seconds."""
        date = datetime.fromtimestamp(at, self._zone).date()
        start = datetime.combine(date, time(), self._zone).timestamp()
        return start, datetime.combine(date + timedelta(days=1), time(), self._zone).timestamp()


class _Evaluator:
    """The rules, the facts object they read (reused for every action), and what is cached per tool."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.after = rules.after
        zone = rules.defaults.timezone
        self.zone: tzinfo | None = ZoneInfo(zone) if zone else None
        uses = rules.uses
        self.uses_input = "input" in uses or "args" in uses
        self.track_run = "cost_run" in uses
        self.daily: _DailySpend | None = None
        self.facts = Facts()
        self.needs: dict[str, _Needs] = {}
        self.recorded: dict[str | None, tuple[str, bool]] = {}
        self.labels: dict[str | None, Any] = {}
        self.made: dict[tuple[Any, ...], ActionDecision] = {}

    # -- one run after another, or all of them on one clock

    def walk(self, walk: _Walk) -> ReplayResult:
        """Walk one run from its top-level call to where it ends or stops."""
        if not self.begin(walk):
            step = self.step
            for action in walk.actions:
                if step(walk, action):
                    break
        return self.finish(walk)

    def on_one_clock(self, log: RunLog, runs: Sequence[RunRecord]) -> list[ReplayResult]:
        """Walk ``runs`` together in the order of their recorded times, for ``cost_today``."""
        walks = [_Walk(run, actions) for run, actions in _grouped(log, runs)]
        daily = self.daily = _DailySpend(self.zone)
        _charge_others(log, walks, daily)
        finished: dict[int, ReplayResult] = {}
        clock = [(walk.run.started, index) for index, walk in enumerate(walks)]
        heapq.heapify(clock)
        while clock:
            _, index = heapq.heappop(clock)
            walk = walks[index]
            actions = walk.actions
            # Go on with this run while its next action begins before any other run's.
            other = clock[0][0] if clock else math.inf
            while True:
                position = walk.position
                stopped = self.begin(walk) if position == 0 else self.step(walk, actions[position - 1])
                walk.position = position + 1
                if stopped or position == len(actions):
                    finished[index] = self.finish(walk)
                    break
                following = actions[position].started
                if following >= other:
                    heapq.heappush(clock, (following, index))
                    break
        return [finished[index] for index in range(len(walks))]

    # -- the top-level call, before its actions and after them

    def begin(self, walk: _Walk) -> bool:
        """Evaluate the top-level call before it runs; True when that stops the run."""
        run = walk.run
        needs = self.needs_of(run.tool)
        if self.uses_input:
            walk.input = _decode(run.input)
        facts = Facts(
            agent=run.agent,
            service=run.service,
            tool=run.tool,
            args=walk.input,
            input=walk.input,
            cost=run.estimated_cost or 0.0,
            cost_run=0.0,
            tool_calls_in_run=0,
            same_call_in_run=0,
        )
        if needs.labels:
            facts.labels = self.labels_of(run.labels)
        if needs.time:
            facts.now = datetime.fromtimestamp(run.started, self.zone)
        if needs.cost_today and self.daily is not None:
            facts.cost_today = self.daily.spent((run.service, run.agent), run.started)
        verdict = self.rules.evaluate(facts)
        walk.top = verdict
        if verdict.action is _DENY or verdict.action is _TERMINATE:
            walk.stop = run.started
            walk.status = _STATUS[verdict.action]
            walk.cost = 0.0
            return True
        if needs.after:
            walk.top_facts = facts
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
                self.daily.charge((run.service, run.agent), run.ended, run.actual_cost)
        top = self.decision(0, run.tool, decided, verdict, recorded)
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

    def step(self, walk: _Walk, action: ActionRecord) -> bool:
        """Evaluate ``action``, the next one of ``walk``; True when it stops the run."""
        tool = action.tool
        needs = self.needs.get(tool) or self.needs_of(tool)
        index = walk.calls
        walk.calls = index + 1
        started = action.started
        daily = self.daily
        facts = self.facts
        verdict = needs.fixed
        if verdict is None:
            facts.tool = tool
            facts.agent = action.agent
            facts.service = action.service
            facts.input = walk.input
            facts.cost = action.estimated_cost or 0.0
            facts.tool_calls_in_run = index
            if needs.text:
                text = action.requested_args or action.args
                if needs.args:
                    facts.args = _decode(text)
                if needs.same:
                    same = walk.same
                    if same is None:
                        same = walk.same = {}
                    key = (tool, text)
                    seen = same.get(key, 0)
                    same[key] = seen + 1
                    facts.same_call_in_run = seen
            if needs.labels:
                facts.labels = self.labels_of(action.labels)
            if needs.time:
                facts.now = datetime.fromtimestamp(started, self.zone)
            if needs.cost_run:
                facts.cost_run = walk.spent_by(started)
            if needs.cost_today and daily is not None:
                facts.cost_today = daily.spent((action.service, action.agent), started)
            verdict = self.rules.evaluate(facts)
        before = verdict.action
        text = action.decisions
        recorded = self.recorded.get(text) or self.recorded_of(text)
        if before is _DENY or before is _TERMINATE:
            walk.decisions.append(self.decision(action.seq, tool, verdict, verdict, recorded[0]))
            return self.stopped(walk, index, started, before)
        end = started + (action.duration or 0.0)
        cost = action.actual_cost
        if cost:  # the call runs: what it cost counts from its end
            if self.track_run:
                walk.ended.append((end, cost))
            if daily is not None:
                daily.charge((action.service, action.agent), end, cost, walk)
        decided = verdict
        after = self.after
        if needs.after and after is not None and (action.status == "succeeded" or recorded[1]):
            facts.output = _decode(action.result)
            late = after.evaluate(facts)
            if late.action is _DENY or late.action is _TERMINATE:
                walk.decisions.append(self.decision(action.seq, tool, late, verdict, recorded[0]))
                return self.stopped(walk, index + 1, end, late.action)
            if late.action is _LOG and before is _ALLOW:
                decided = late
        walk.decisions.append(self.decision(action.seq, tool, decided, verdict, recorded[0]))
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

    def labels_of(self, text: str | None) -> Any:
        """Decoded labels, kept by their text."""
        labels = self.labels.get(text, _UNKNOWN)
        if labels is _UNKNOWN:
            labels = _decode(text)
            if len(self.labels) < _LABELS_KEPT:
                self.labels[text] = labels
        return labels

    def recorded_of(self, text: str | None) -> tuple[str, bool]:
        """The effective recorded action, and whether a rule on the output stopped the call."""
        known = self.recorded.get(text)
        if known is None:
            decisions = json.loads(text) if text else []
            action = effective_action(decisions)[0]
            after = any(
                item.get("decided")
                and item.get("phase") == "after"
                and item.get("action") in _STATUS.values()
                for item in decisions
            )
            known = self.recorded[text] = (action, after)
        return known

    def decision(
        self, seq: int, tool: str, decided: Verdict, verdict: Verdict, recorded: str
    ) -> ActionDecision:
        """The decision on one action: ``decided`` took effect; ``verdict``, before the call, patched."""
        rule = decided.rule
        patches = verdict.patches
        key = (
            seq,
            tool,
            str(decided.action),
            None if rule is None else rule.id,
            recorded,
            tuple(patch.id for patch in patches) if patches else (),
        )
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = ActionDecision(*key)
        return made


def _grouped(log: RunLog, runs: Sequence[RunRecord]) -> Iterator[tuple[RunRecord, list[ActionRecord]]]:
    """Each run with its recorded actions, in order."""
    groups = itertools.groupby(log.actions_of([run.run_id for run in runs]), _RUN_ID)
    group = next(groups, None)
    for run in runs:
        if group is not None and group[0] == run.run_id:
            yield run, list(group[1])
            group = next(groups, None)
        else:
            yield run, []


def _charge_others(log: RunLog, walks: list[_Walk], daily: _DailySpend) -> None:
    """Charge the recorded spend of the log's runs not walked, in the days the walks cover."""
    if not walks:
        return
    first = min(walk.run.started for walk in walks)
    last = max(max(walk.run.started, walk.actions[-1].started if walk.actions else 0.0) for walk in walks)
    walked = {walk.run.run_id for walk in walks}
    # A run that began more than a day before the first midnight is taken to have ended by then.
    others = [
        run
        for run in log.runs(since=daily.day_of(first)[0] - _DAY, until=last, limit=None, oldest_first=True)
        if run.run_id not in walked
    ]
    for run in others:
        if run.actual_cost and run.ended is not None:
            daily.charge((run.service, run.agent), run.ended, run.actual_cost)
    for action in log.actions_of([run.run_id for run in others]):
        if action.actual_cost:
            end = action.started + (action.duration or 0.0)
            daily.charge((action.service, action.agent), end, action.actual_cost)
