"""``proctor demo``: six agents share one LLM API under rate, access and budget policies.

By default everything runs in this process on the embedded default (state in
memory); the LLM calls are simulated by sleeps. Each agent session is a
decorated run and each LLM call one of its actions, recorded in the run log.
``Demo.run`` plays the workload and returns the numbers; ``run_demo`` shows it
live, prints the results, and re-evaluates the recorded runs against stricter
rules. With several processes, ``SharedDemo`` deals the workload out to worker
processes whose budget and rate limit live in one SQLite store, and checks
that the shared ledger is exact.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Empty
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from proctor import (
    AccessPolicy,
    Agent,
    AgentStats,
    AsyncLOCOScheduler,
    BudgetPolicy,
    PolicyEnforcer,
    PolicyViolationError,
    RatePolicy,
    SecurityLabel,
    SharedResource,
    Task,
    current_run,
    runlog,
)
from proctor._numbers import from_units, to_units
from proctor.rules import parse_policies
from proctor.runs import ImpactReport, RunLog, recording_into
from proctor.runs.whatif import what_if
from proctor.stores import MemoryStore, SQLiteStore, Store

__all__ = [
    "MAX_PROCESSES",
    "POLICIES",
    "AgentResult",
    "Count",
    "Demo",
    "DemoError",
    "DemoResult",
    "SessionLog",
    "SharedDemo",
    "SharedResult",
    "plan_workloads",
    "run_demo",
    "share",
]

CAPACITY = 3
"""Concurrent calls the simulated LLM API allows."""
POLICIES = ("rate", "access", "budget")
"""The policies' names, in the order the enforcer checks them."""
BURST_TIMES = (0.3, 3.0, 5.7)
BURST_SIZE = 30
BATCH_RATE = 8.0
RATE_PERIOD = 4.0
BATCH_QUOTA = 36
"""With several processes: the calls batch may make per ``QUOTA_PERIOD``, all processes together."""
QUOTA_PERIOD = 86_400.0
"""A demo day: the quota's bucket refills one call per 2400 demo seconds, none during the demo."""
MAX_PROCESSES = 32
DEFAULT_LIMIT = 50.0
LIMITS = {"batch": 120.0, "research": 35.0}
ANALYST_CALLS = 24
ANALYST_CONFIDENTIAL = 5
SUMMARY_RESERVE = 3.0
QUICK_SECONDS = 0.1
"""A wait under this many demo seconds counts as quick."""
REFRESH_SECONDS = 0.125
PLAIN_WIDTH = 120
"""Columns of the output when it is not a terminal and $COLUMNS is unset."""
SERVICE = "demo"
"""The service of the demo's recorded runs."""
STRICTER = """\
# Stricter rules, tested against the demo's recorded runs before they are deployed:
#   proctor replay --policies {path} --filter service=demo
# (the demo's own what-if counts only its own runs in cost_today; replay over the whole log also
# counts what earlier demos recorded in it spent today)
version: 1
policies:
  - id: confidential-needs-review
    when: {{tool: llm.complete, args.label: confidential, agent: {{not_in: [auditor]}}}}
    action: require_approval
    message: confidential data outside the audit team needs a reviewer
  - id: research-cost-cap
    when: {{tool: llm.complete, cost: {{gt: 3.5}}}}
    action: deny
    message: calls over 3.5 need a cheaper model
  - id: batch-burst-guard
    when: {{agent: batch, cost_today: {{gt: 30}}}}
    action: deny
    message: batch spends at most 30 a day
  - id: long-session
    when: {{tool_calls_in_run: {{gt: 20}}}}
    action: terminate
    message: a session of more than 20 calls is probably looping
"""
"""The stricter policy file the demo writes next to the run log and re-evaluates its runs against."""


class SessionLog(RunLog):
    """The demo's run log, whose what-if sees only the runs of this demo (``session``).

    ``what_if`` charges ``cost_today`` with the recorded spend of the log's runs it does not
    re-evaluate, read through ``run_rows``; here that reads only ``session``, so earlier demos
    recorded in the same file do not change this demo's figures.
    """

    session: frozenset[str] = frozenset()

    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        """``RunLog.run_rows``, of the runs in ``session`` only."""
        rows = super().run_rows(("run_id", *columns), since=since, until=until)
        return [row[1:] for row in rows if row[0] in self.session]


@dataclass(frozen=True, slots=True)
class Call:
    """One planned LLM call, in demo seconds (divided by the speed when played).

    ``think`` is the pause before asking for a slot, ``duration`` the call's
    latency, ``actual_cost`` the cost reported with ``grant.cost`` (None: the
    estimate stands), ``burst`` the batch burst the call belongs to.
    """

    think: float
    task: Task
    duration: float
    actual_cost: float | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One agent's workload: its sessions run concurrently, each session's calls one after another."""

    agent_id: str
    workload: str
    sessions: tuple[tuple[Call, ...], ...]

    @property
    def calls(self) -> list[Call]:
        """Every call of every session."""
        return [call for session in self.sessions for call in session]


def share(plan: Plan, part: int, parts: int) -> Plan:
    """What process ``part`` of ``parts`` plays of ``plan``: every ``parts``-th session, or, of a plan
    with fewer sessions than ``parts``, every ``parts``-th call of each session."""
    if len(plan.sessions) >= parts:
        return Plan(plan.agent_id, plan.workload, plan.sessions[part::parts])
    sessions = tuple(calls for session in plan.sessions if (calls := session[part::parts]))
    return Plan(plan.agent_id, plan.workload, sessions)


def plan_workloads(rng: random.Random) -> list[Plan]:
    """The six agents' workloads, drawn from ``rng`` in a fixed order (same seed, same plan)."""
    batch = tuple(
        (Call(when, Task(weight=3.0, task_type="batch_job"), rng.uniform(0.1, 0.2), burst=index),)
        for index, when in enumerate(BURST_TIMES)
        for _ in range(BURST_SIZE)
    )
    chat = tuple(
        Call(rng.uniform(0.1, 0.25), Task(weight=1.0, task_type="chat"), rng.uniform(0.02, 0.08))
        for _ in range(30)
    )
    confidential = set(rng.sample(range(ANALYST_CALLS), ANALYST_CONFIDENTIAL))
    analyst = tuple(
        Call(
            rng.uniform(0.1, 0.3),
            Task(
                weight=2.0,
                task_type="query",
                labels={
                    "input": SecurityLabel.CONFIDENTIAL
                    if index in confidential
                    else rng.choice([SecurityLabel.PUBLIC, SecurityLabel.INTERNAL]),
                    "output": SecurityLabel.INTERNAL,
                },
            ),
            rng.uniform(0.02, 0.2),
        )
        for index in range(ANALYST_CALLS)
    )
    auditor = tuple(
        Call(
            rng.uniform(0.35, 0.7),
            Task(weight=2.0, task_type="review", labels={"input": SecurityLabel.CONFIDENTIAL}),
            rng.uniform(0.02, 0.2),
        )
        for _ in range(12)
    )
    research = tuple(
        Call(
            rng.uniform(0.1, 0.35),
            Task(weight=2.0, task_type="research", cost=round(rng.uniform(2.0, 4.0), 2)),
            rng.uniform(0.05, 0.2),
        )
        for _ in range(20)
    )
    summariser = tuple(
        Call(
            rng.uniform(0.15, 0.35),
            Task(weight=1.0, task_type="summary", cost=SUMMARY_RESERVE),
            rng.uniform(0.02, 0.2),
            actual_cost=round(rng.uniform(0.8, 2.4), 2),
        )
        for _ in range(20)
    )
    return [
        Plan("batch", f"{len(BURST_TIMES)} bursts of {BURST_SIZE} heavy calls", batch),
        Plan("chat", f"{len(chat)} light calls, one at a time", (chat,)),
        Plan("analyst", f"{ANALYST_CALLS} queries, {ANALYST_CONFIDENTIAL} confidential", (analyst,)),
        Plan("auditor", f"{len(auditor)} confidential reviews", (auditor,)),
        Plan("research", f"{len(research)} calls at 2-4 each", (research,)),
        Plan("summariser", f"{len(summariser)} calls, reports actual cost", (summariser,)),
    ]


@dataclass(slots=True)
class _Tally:
    """What the demo saw of one agent so far; updated on the event loop only."""

    waiting: int = 0
    running: int = 0
    finished: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POLICIES, 0))
    reasons: dict[str, str] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    reserved: float = 0.0
    cost: int = 0
    """The actual cost of the granted calls, in units (``proctor._numbers.to_units``)."""
    granted_by_burst: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Count:
    """What one process made of one agent's calls (or a sum of such): ``planned`` calls, ``made``
    so far, ``admitted``, ``refused`` by policy name, and ``cost``, the actual cost of the admitted
    ones as the process reported it, in units (``proctor._numbers.to_units``)."""

    planned: int
    made: int = 0
    admitted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POLICIES, 0))
    cost: int = 0

    @classmethod
    def total(cls, counts: Iterable[Count]) -> Count:
        """The sum of ``counts``."""
        total = cls(0)
        for count in counts:
            total = cls(
                total.planned + count.planned,
                total.made + count.made,
                total.admitted + count.admitted,
                {name: total.refused[name] + count.refused.get(name, 0) for name in POLICIES},
                total.cost + count.cost,
            )
        return total


@dataclass(frozen=True, slots=True)
class AgentResult:
    """One agent's numbers at the end of the demo.

    ``stats`` are the scheduler's counters; ``rejected`` splits
    ``stats.rejected`` by policy name and ``reasons`` holds the message of the
    first rejection by each policy; ``waits`` holds the seconds each request
    waited for its slot, granted or rejected; ``spent`` and ``limit`` come from
    ``enforcer.summary()``; ``reserved`` sums the estimates of granted calls.
    """

    agent_id: str
    workload: str
    tasks: int
    stats: AgentStats
    rejected: dict[str, int]
    reasons: dict[str, str]
    waits: tuple[float, ...]
    spent: float
    limit: float | None
    reserved: float

    @property
    def mean_wait(self) -> float:
        """Mean of ``waits`` in seconds; 0.0 when there are none."""
        return sum(self.waits) / len(self.waits) if self.waits else 0.0

    @property
    def p95_wait(self) -> float:
        """95th percentile of ``waits`` in seconds (nearest rank); 0.0 when there are none."""
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class DemoResult:
    """The demo's numbers: per agent (in plan order), the budget summary, and the run's facts."""

    speed: float
    agents: dict[str, AgentResult]
    budget: dict[str, dict[str, float | None]]
    elapsed: float
    analyst_confidential: int
    burst_granted: tuple[int, ...]
    rate_limit: float
    rate_period: float


def budget_policy(store: Store | None) -> BudgetPolicy:
    """The demo's budget: ``DEFAULT_LIMIT`` per agent, ``LIMITS`` for some; its ledger in ``store``
    (None: the process's default store, else memory)."""
    budget = BudgetPolicy(default_limit=DEFAULT_LIMIT, store=store)
    for agent_id, limit in LIMITS.items():
        budget.set_limit(agent_id, limit)
    return budget


def quota_policy(speed: float, store: Store) -> RatePolicy:
    """The rate limit of a demo in several processes: ``BATCH_QUOTA`` calls per demo day for batch,
    counted in ``store``; it does not refill during the demo, so exactly that many calls pass."""
    return RatePolicy(limits={"batch": BATCH_QUOTA}, period=QUOTA_PERIOD / speed, store=store)


class Demo:
    """One run of the demo workload for ``seed``, played ``speed`` times faster than demo time.

    Build it, then ``await run()`` once; while it runs, ``live_view()``
    renders its progress. With a ``store``, this is process ``part`` of
    ``parts`` that play the workload together (see ``share``): the rate limit
    is batch's quota (``quota_policy``), and it and the budget keep their
    state in ``store``, shared with the other processes.
    """

    def __init__(
        self, *, seed: int, speed: float, store: Store | None = None, part: int = 0, parts: int = 1
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        if not 0 <= part < parts:
            raise ValueError(f"part must be in 0..{parts - 1}, got {part!r}")
        self.speed = speed
        self.shared = store is not None
        self.plans = [share(plan, part, parts) for plan in plan_workloads(random.Random(seed))]
        self.rate = (
            RatePolicy(limits={"batch": BATCH_RATE}, period=RATE_PERIOD / speed)
            if store is None
            else quota_policy(speed, store)
        )
        self.access = AccessPolicy(
            rules={
                "analyst": {"labels": [SecurityLabel.PUBLIC, SecurityLabel.INTERNAL]},
                "auditor": {"labels": list(SecurityLabel)},
            }
        )
        self.budget = budget_policy(store)
        self.enforcer = PolicyEnforcer([self.rate, self.access, self.budget])
        self.resource = SharedResource("llm_api", capacity=CAPACITY)
        self.scheduler = AsyncLOCOScheduler(
            agents=[Agent(agent_id=plan.agent_id) for plan in self.plans],
            resource=self.resource,
            enforcer=self.enforcer,
        )
        self._tallies = {plan.agent_id: _Tally() for plan in self.plans}
        self._started = time.monotonic()
        # Per agent, a decorated session (a run) and LLM call (its actions): @runlog's agent is fixed.
        self._sessions = {
            plan.agent_id: runlog(service=SERVICE, agent=plan.agent_id, name="session")(self._session)
            for plan in self.plans
        }
        self._llm = {
            plan.agent_id: runlog(service=SERVICE, agent=plan.agent_id, name="llm.complete", cost=_estimate)(
                self._complete
            )
            for plan in self.plans
        }

    def policy_lines(self) -> list[str]:
        """The policies in words, in the order they are checked."""
        access = ", ".join(
            f"{agent_id} may handle {'+'.join(sorted(labels, key=lambda label: SecurityLabel(label).rank))}"
            for agent_id in ("analyst", "auditor")
            if (labels := self.access.allowed_labels(agent_id)) is not None
        )
        limits = ", ".join(f"{agent_id} {limit:g}" for agent_id, limit in LIMITS.items())
        if self.shared:
            rate = (
                f"1. rate: batch may make {BATCH_QUOTA} calls a day, all processes together (a bucket of "
                f"{BATCH_QUOTA} that refills one call per {QUOTA_PERIOD / BATCH_QUOTA:g} demo seconds: "
                "none during the demo); others are unlimited"
            )
        else:
            rate = (
                f"1. rate: batch may make {BATCH_RATE:g} calls per {self.rate.period:g} s (a bucket of "
                f"{BATCH_RATE:g} that refills {BATCH_RATE / self.rate.period:g}/s); others are unlimited"
            )
        return [
            rate,
            f"2. access: {access}; others anything",
            f"3. budget: {DEFAULT_LIMIT:g} per agent ({limits}); each call reserves its estimate, "
            "then settles at its actual cost"
            + (": one ledger per agent, shared by all processes" if self.shared else ""),
        ]

    def counts(self) -> dict[str, Count]:
        """What this demo made of each agent's calls so far."""
        counts = {}
        for plan in self.plans:
            tally = self._tallies[plan.agent_id]
            counts[plan.agent_id] = Count(
                planned=len(plan.calls),
                made=tally.finished,
                admitted=tally.finished - sum(tally.rejected.values()),
                refused=dict(tally.rejected),
                cost=tally.cost,
            )
        return counts

    async def run(self, on_tick: Callable[[], None] | None = None) -> DemoResult:
        """Play every agent's plan to the end and return the numbers.

        ``on_tick`` is called every ``REFRESH_SECONDS`` while the demo runs
        (to redraw a live view).
        """
        self._started = time.monotonic()
        ticker = asyncio.create_task(self._tick(on_tick)) if on_tick is not None else None
        try:
            async with asyncio.TaskGroup() as group:
                for plan in self.plans:
                    for index in range(len(plan.sessions)):
                        group.create_task(self._sessions[plan.agent_id](plan.agent_id, index))
        finally:
            if ticker is not None:
                ticker.cancel()
        return self._result(time.monotonic() - self._started)

    async def _tick(self, on_tick: Callable[[], None]) -> None:
        while True:
            on_tick()
            await asyncio.sleep(REFRESH_SECONDS)

    async def _session(self, agent_id: str, index: int) -> int:
        """One session of ``agent_id``: its calls one after another; returns how many were granted."""
        plan = next(plan for plan in self.plans if plan.agent_id == agent_id)
        granted = 0
        for number, call in enumerate(plan.sessions[index]):
            await asyncio.sleep(call.think / self.speed)
            granted += await self._call(agent_id, number, call)
        return granted

    async def _call(self, agent_id: str, number: int, call: Call) -> bool:
        """Make the simulated LLM call through the agent's decorated tool, and count the outcome."""
        tally = self._tallies[agent_id]
        tally.waiting += 1
        asked = time.monotonic()
        labels = call.task.labels or {}
        label = max(labels.values(), key=lambda label: SecurityLabel(label).rank, default=None)
        try:
            await self._llm[agent_id](
                agent_id,
                call=number,
                kind=call.task.task_type,
                label=None if label is None else str(label),
                estimate=call.task.estimated_cost,
                task=call,
            )
        except PolicyViolationError as exc:
            tally.waiting -= 1
            tally.waits.append(time.monotonic() - asked)
            tally.rejected[exc.policy_name] = tally.rejected.get(exc.policy_name, 0) + 1
            tally.reasons.setdefault(exc.policy_name, str(exc))
            tally.finished += 1
            return False
        tally.reserved += call.task.estimated_cost
        if call.burst is not None:
            tally.granted_by_burst[call.burst] = tally.granted_by_burst.get(call.burst, 0) + 1
        tally.finished += 1
        return True

    async def _complete(
        self, agent_id: str, call: int, kind: str, label: str | None, estimate: float, task: Call
    ) -> dict[str, object]:
        """The simulated LLM call: a slot of the API, the latency, the cost it reports."""
        tally = self._tallies[agent_id]
        async with self.scheduler.acquire(agent_id, task.task) as grant:
            # Nothing in this block raises PolicyViolationError: the caller's except sees only rejections.
            tally.waiting -= 1
            tally.running += 1
            tally.waits.append(grant.waited)
            await asyncio.sleep(task.duration / self.speed)
            cost = task.actual_cost if task.actual_cost is not None else estimate
            grant.cost = cost
            current_run().add_cost(cost)
            tally.cost += to_units(cost)
            tally.running -= 1
        return {"text": f"{kind} #{call} done", "tokens": int(estimate * 100)}

    def _result(self, elapsed: float) -> DemoResult:
        budget: dict[str, dict[str, float | None]] = self.enforcer.summary()["budget"]
        agents: dict[str, AgentResult] = {}
        for plan in self.plans:
            tally = self._tallies[plan.agent_id]
            spend = budget.get(plan.agent_id, {})
            agents[plan.agent_id] = AgentResult(
                agent_id=plan.agent_id,
                workload=plan.workload,
                tasks=len(plan.calls),
                stats=self.scheduler.get_agent(plan.agent_id).stats,
                rejected=dict(tally.rejected),
                reasons=dict(tally.reasons),
                waits=tuple(tally.waits),
                spent=spend.get("spent") or 0.0,
                limit=self.budget.get_limit(plan.agent_id),
                reserved=tally.reserved,
            )
        batch = self._tallies["batch"].granted_by_burst
        analyst = next(plan for plan in self.plans if plan.agent_id == "analyst")
        return DemoResult(
            speed=self.speed,
            agents=agents,
            budget=budget,
            elapsed=elapsed,
            analyst_confidential=sum(
                1
                for call in analyst.calls
                if call.task.labels and SecurityLabel.CONFIDENTIAL in call.task.labels.values()
            ),
            burst_granted=tuple(batch.get(index, 0) for index in range(len(BURST_TIMES))),
            rate_limit=BATCH_RATE,
            rate_period=self.rate.period,
        )

    def live_view(self) -> RenderableType:
        """The progress so far: the resource's slots and queue, then a row per agent."""
        held, waiting = self.resource.holder_count, self.resource.waiter_count
        slots = Text.assemble(
            (f"{self.resource.name} ", "bold"),
            ("■" * held, "green"),
            ("□" * (self.resource.capacity - held), "dim"),
            f"  {held}/{self.resource.capacity} calls in flight, {waiting} waiting for a slot",
            (f"   {time.monotonic() - self._started:4.1f} s", "dim"),
        )
        table = Table(box=None, pad_edge=False)
        table.add_column("agent", style="bold")
        table.add_column("progress")
        table.add_column("done", justify="right")
        table.add_column("granted", justify="right", style="green")
        table.add_column("rejected by", style="red")
        table.add_column("mean wait", justify="right")
        table.add_column("now")
        for plan in self.plans:
            tally = self._tallies[plan.agent_id]
            total = len(plan.calls)
            table.add_row(
                plan.agent_id,
                ProgressBar(total=total, completed=tally.finished, width=24),
                f"{tally.finished}/{total}",
                str(tally.finished - sum(tally.rejected.values())),
                _rejections(tally.rejected),
                _ms(sum(tally.waits) / len(tally.waits)) if tally.waits else "-",
                f"{tally.running} in call, {tally.waiting} waiting",
            )
        return Group(slots, table)


def _estimate(agent_id: str, **call: object) -> float:
    """The cost estimate of a simulated LLM call: its task's."""
    estimate = call["estimate"]
    assert isinstance(estimate, (int, float))
    return float(estimate)


def _rejections(rejected: dict[str, int]) -> str:
    """``"rate 12, budget 3"``; ``"-"`` when nothing was rejected."""
    return ", ".join(f"{name} {count}" for name, count in rejected.items() if count) or "-"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def results_table(result: DemoResult) -> Table:
    """One row per agent: workload, tasks, granted, rejections by policy, waits, spend against limit."""
    table = Table(title=f"Results after {result.elapsed:.1f} s", title_style="bold", expand=False)
    table.add_column("agent", style="bold", no_wrap=True)
    table.add_column("workload")
    table.add_column("tasks", justify="right", no_wrap=True)
    table.add_column("granted", justify="right", style="green", no_wrap=True)
    table.add_column("rejected by", style="red")
    table.add_column("mean\nwait", justify="right", no_wrap=True)
    table.add_column("p95\nwait", justify="right", no_wrap=True)
    table.add_column("spend /\nlimit", justify="right")
    for agent in result.agents.values():
        limit = "none" if agent.limit is None else f"{agent.limit:.1f}"
        table.add_row(
            agent.agent_id,
            agent.workload,
            str(agent.tasks),
            str(agent.stats.granted),
            _rejections(agent.rejected),
            _ms(agent.mean_wait),
            _ms(agent.p95_wait),
            f"{agent.spent:.1f} / {limit}",
        )
    table.caption = (
        "wait: from asking for a slot to getting one, granted or rejected. "
        "spend / limit: from enforcer.summary()['budget']."
    )
    return table


def first_rejections(result: DemoResult) -> list[str]:
    """The first rejection by each policy that rejected anything, as the agent's exception said it."""
    lines = []
    for policy in POLICIES:
        for agent in result.agents.values():
            if policy in agent.reasons:
                lines.append(agent.reasons[policy])
                break
    return lines


def takeaways(result: DemoResult) -> list[str]:
    """What to notice, in sentences built from ``result``'s numbers."""
    agents = result.agents
    batch, chat, analyst, auditor = agents["batch"], agents["chat"], agents["analyst"], agents["auditor"]
    research, summariser = agents["research"], agents["summariser"]
    quick_seconds = QUICK_SECONDS / result.speed
    quick = {agent.agent_id: sum(wait < quick_seconds for wait in agent.waits) for agent in (chat, batch)}
    bursts = ", ".join(str(count) for count in result.burst_granted)
    access_matches = (
        "exactly the" if analyst.rejected["access"] == result.analyst_confidential else "while it sent"
    )
    at_estimate = summariser.tasks * SUMMARY_RESERVE
    at_estimate_note = (
        f" (at {SUMMARY_RESERVE:.1f} each they would have needed {at_estimate:.1f})"
        if summariser.limit is not None and at_estimate > summariser.limit
        else ""
    )
    refused = summariser.rejected["budget"]
    over = [
        agent.agent_id for agent in agents.values() if agent.limit is not None and agent.spent > agent.limit
    ]
    return [
        f"Fairness: chat's calls waited {_ms(chat.mean_wait)} on average (p95 {_ms(chat.p95_wait)}), "
        f"batch's {_ms(batch.mean_wait)} (p95 {_ms(batch.p95_wait)}); {quick['chat']} of chat's {chat.tasks} "
        f"calls got a slot within {_ms(quick_seconds)}, {quick['batch']} of batch's {batch.tasks}. "
        "A free slot goes to the waiting agent with the highest load score L(i), which grows with how "
        "long its oldest request has waited and how much it has queued: a burst already in the queue is "
        "served first, but no agent waits indefinitely (chat's slowest call waited "
        f"{_ms(max(chat.waits, default=0.0))}).",
        f"Rate: batch's bursts got {bursts} of their {BURST_SIZE} calls through and the rate policy turned "
        f"away {batch.rejected['rate']} ({result.rate_limit:g} calls per {result.rate_period:g} s allowed); "
        "a rejected call hands its slot straight to the next waiter, so a burst holds the API only for the "
        "calls it may make.",
        f"Access: analyst lost {analyst.rejected['access']} queries, {access_matches} "
        f"{result.analyst_confidential} labelled confidential, which it may not handle; auditor, cleared "
        f"for confidential data, ran {auditor.stats.granted} of its {auditor.tasks} confidential reviews.",
        f"Budget: research spent {research.spent:.1f} of its {research.limit or 0:.1f}; its other "
        f"{research.rejected['budget']} calls were refused, as each would have gone over. Summariser "
        f"reserves {SUMMARY_RESERVE:.1f} per call but reports the actual cost with grant.cost, and the "
        f"budget settles on that: its {summariser.stats.granted} calls cost {summariser.spent:.1f} of its "
        f"{summariser.limit or 0:.1f}{at_estimate_note} and "
        f"{'none was' if not refused else f'{refused} were'} refused.",
        f"No agent spent more than its limit, though {CAPACITY} calls ran at once: each call reserves its "
        "estimate before it starts."
        if not over
        else f"Spend went over the limit for {', '.join(over)}: that is a bug in proctor, please report it.",
    ]


class DemoError(RuntimeError):
    """A worker process of the demo failed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class SharedResult:
    """The numbers of a demo played by several processes on one store.

    ``parts`` holds each process's counts per agent, as it reported them;
    ``spent`` and ``reserved`` what the shared ledger holds per agent at the
    end (in units, as ``Count.cost``), ``limits`` the budget's limits;
    ``quota`` is batch's rate allowance and ``quota_left`` the calls its bucket
    still allows.
    """

    elapsed: float
    parts: tuple[dict[str, Count], ...]
    spent: dict[str, int]
    reserved: dict[str, int]
    limits: dict[str, float]
    quota: int
    quota_left: float

    def agent(self, agent_id: str) -> Count:
        """``agent_id``'s calls in every process."""
        return Count.total(part[agent_id] for part in self.parts)

    def process(self, part: int) -> Count:
        """Every agent's calls in process ``part``."""
        return Count.total(self.parts[part].values())

    @property
    def total(self) -> Count:
        """Every call in every process."""
        return Count.total(self.process(part) for part in range(len(self.parts)))

    @property
    def spend_is_exact(self) -> bool:
        """Whether each agent's ledger holds exactly the actual costs the processes reported, within
        its limit, with nothing left reserved."""
        return all(
            self.spent[agent_id] == self.agent(agent_id).cost
            and self.reserved[agent_id] == 0
            and self.spent[agent_id] <= to_units(limit)
            for agent_id, limit in self.limits.items()
        )

    @property
    def quota_is_exact(self) -> bool:
        """Whether batch's calls admitted in all processes are exactly its rate allowance."""
        return self.agent("batch").admitted == self.quota and self.quota_left == 0


def play_part(
    part: int,
    parts: int,
    seed: int,
    speed: float,
    store_path: str,
    db: str | None,
    queue: Queue[tuple[str, int, Any]],
    start: Event,
) -> None:
    """Worker process ``part`` of ``parts``: play its share of the workload on the store at
    ``store_path``, recording into ``db``, once ``start`` is set. Puts ``("ready" | "progress" |
    "done", part, counts)`` on ``queue`` as it goes, or ``("failed", part, traceback)``."""
    try:
        store = SQLiteStore(store_path)
        demo = Demo(seed=seed, speed=speed, store=store, part=part, parts=parts)
        with SessionLog(db) as log, recording_into(log):
            queue.put(("ready", part, demo.counts()))
            parent = multiprocessing.parent_process()
            while not start.wait(REFRESH_SECONDS):
                if parent is not None and not parent.is_alive():
                    raise RuntimeError("the demo ended before this process started its work")
            asyncio.run(demo.run(lambda: queue.put(("progress", part, demo.counts()))))
        queue.put(("done", part, demo.counts()))
    except BaseException:
        queue.put(("failed", part, traceback.format_exc()))
        raise SystemExit(1) from None


class SharedDemo:
    """The demo workload played by ``processes`` worker processes (``play_part``) whose budget and
    rate limit live in one SQLite store at ``store_path``; each records its runs into ``db``.

    Build it, then ``run()`` once; while it runs, ``live_view()`` renders its progress.
    """

    def __init__(self, *, seed: int, speed: float, processes: int, store_path: Path, db: str | None) -> None:
        if not 1 <= processes <= MAX_PROCESSES:
            raise ValueError(f"processes must be in 1..{MAX_PROCESSES}, got {processes!r}")
        self.seed = seed
        self.speed = speed
        self.processes = processes
        self.store_path = store_path
        self.db = db
        self.counts: list[dict[str, Count] | None] = [None] * processes
        """Each process's counts as last reported; None until it is ready."""
        self.started: float | None = None

    def run(self, on_tick: Callable[[], None] | None = None) -> SharedResult:
        """Start the processes, start their work together once all are ready, wait for them to finish,
        and read the shared store. ``on_tick`` is called every ``REFRESH_SECONDS`` or more often.

        Raises ``DemoError`` when a process fails.
        """
        context = multiprocessing.get_context("spawn")
        queue: Queue[tuple[str, int, Any]] = context.Queue()
        start = context.Event()
        SQLiteStore(self.store_path).close()  # its tables, before the processes race to make them
        workers = [
            context.Process(
                target=play_part,
                args=(
                    part,
                    self.processes,
                    self.seed,
                    self.speed,
                    str(self.store_path),
                    self.db,
                    queue,
                    start,
                ),
                name=f"proctor-demo-{part + 1}",
                daemon=True,
            )
            for part in range(self.processes)
        ]
        for worker in workers:
            worker.start()
        try:
            self._await("ready", queue, workers, on_tick)
            self.started = time.monotonic()
            start.set()
            self._await("done", queue, workers, on_tick)
            elapsed = time.monotonic() - self.started
            for worker in workers:
                worker.join()
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()
        return self._result(elapsed)

    def _await(
        self,
        kind: str,
        queue: Queue[tuple[str, int, Any]],
        workers: Sequence[multiprocessing.process.BaseProcess],
        on_tick: Callable[[], None] | None,
    ) -> None:
        """Take the processes' reports until each has sent ``kind``."""
        waiting = set(range(len(workers)))
        while waiting:
            if on_tick is not None:
                on_tick()
            try:
                message, part, payload = queue.get(timeout=REFRESH_SECONDS)
            except Empty:
                for part in waiting:
                    if workers[part].exitcode not in (None, 0):
                        raise DemoError(
                            f"process {part + 1} of the demo ended with exit code {workers[part].exitcode}"
                        ) from None
                continue
            if message == "failed":
                raise DemoError(f"process {part + 1} of the demo failed:\n{payload}")
            self.counts[part] = payload
            if message == kind:
                waiting.discard(part)

    def _result(self, elapsed: float) -> SharedResult:
        store = SQLiteStore(self.store_path)
        try:
            budget = budget_policy(store)
            rate = quota_policy(self.speed, store)
            agents = [plan.agent_id for plan in plan_workloads(random.Random(self.seed))]
            parts = tuple(counts for counts in self.counts if counts is not None)
            return SharedResult(
                elapsed=elapsed,
                parts=parts,
                spent={agent_id: to_units(budget.spent(agent_id)) for agent_id in agents},
                reserved={agent_id: to_units(budget.reserved(agent_id)) for agent_id in agents},
                limits={agent_id: LIMITS.get(agent_id, DEFAULT_LIMIT) for agent_id in agents},
                quota=BATCH_QUOTA,
                quota_left=rate.remaining("batch") or 0.0,
            )
        finally:
            store.close()

    def live_view(self) -> RenderableType:
        """The progress so far: a row per process."""
        ready = sum(counts is not None for counts in self.counts)
        if self.started is None:
            return Text(f"Starting {self.processes} processes: {ready} ready", style="dim")
        header = Text.assemble(
            (f"{self.processes} processes", "bold"),
            " share the budget and the rate limit in one SQLite store",
            (f"   {time.monotonic() - self.started:4.1f} s", "dim"),
        )
        table = Table(box=None, pad_edge=False)
        table.add_column("process", style="bold")
        table.add_column("progress")
        table.add_column("done", justify="right")
        table.add_column("admitted", justify="right", style="green")
        table.add_column("refused by", style="red")
        table.add_column("spend", justify="right")
        for part, counts in enumerate(self.counts):
            count = Count.total((counts or {}).values())
            table.add_row(
                str(part + 1),
                ProgressBar(total=count.planned, completed=count.made, width=24),
                f"{count.made}/{count.planned}",
                str(count.admitted),
                _rejections(count.refused),
                f"{from_units(count.cost):.2f}",
            )
        return Group(header, table)


def processes_table(result: SharedResult) -> Table:
    """One row per process and a total: calls made, admitted, refused by each policy, spend."""
    table = Table(title=f"Per process, after {result.elapsed:.1f} s", title_style="bold", expand=False)
    table.add_column("process", style="bold", no_wrap=True)
    table.add_column("calls", justify="right")
    table.add_column("admitted", justify="right", style="green")
    for policy in POLICIES:
        table.add_column(f"refused by\n{policy}", justify="right", style="red")
    table.add_column("spend", justify="right")
    rows = [(str(part + 1), result.process(part)) for part in range(len(result.parts))]
    for index, (name, count) in enumerate([*rows, ("total", result.total)]):
        table.add_row(
            name,
            str(count.made),
            str(count.admitted),
            *(str(count.refused[policy]) for policy in POLICIES),
            f"{from_units(count.cost):.2f}",
            end_section=index == len(rows) - 1,
            style="bold" if name == "total" else None,
        )
    table.caption = "spend: the actual cost of the admitted calls, as each process reported it."
    return table


def ledger_table(result: SharedResult) -> Table:
    """One row per agent, all processes together: what they reported against the shared ledger."""
    table = Table(title="Per agent, all processes: the shared ledger", title_style="bold", expand=False)
    table.add_column("agent", style="bold", no_wrap=True)
    table.add_column("processes", justify="right")
    table.add_column("admitted", justify="right", style="green")
    table.add_column("refused by\nrate", justify="right", style="red")
    table.add_column("refused by\nbudget", justify="right", style="red")
    table.add_column("reported\nspend", justify="right")
    table.add_column("ledger\nspent", justify="right")
    table.add_column("limit", justify="right")
    for agent_id, limit in result.limits.items():
        count = result.agent(agent_id)
        table.add_row(
            agent_id,
            str(sum(part[agent_id].planned > 0 for part in result.parts)),
            str(count.admitted),
            str(count.refused["rate"]),
            str(count.refused["budget"]),
            f"{from_units(count.cost):.2f}",
            f"{from_units(result.spent[agent_id]):.2f}",
            f"{limit:g}",
        )
    table.caption = "processes: how many played some of the agent's calls. ledger spent: read from the store."
    return table


def exactness(result: SharedResult) -> list[str]:
    """What proves that the limits held across processes, in sentences built from ``result``."""
    reported = sum(result.agent(agent_id).cost for agent_id in result.limits)
    spent = sum(result.spent.values())
    closest = max(
        result.limits, key=lambda agent_id: result.spent[agent_id] / to_units(result.limits[agent_id])
    )
    batch = result.agent("batch")
    processes = len(result.parts)
    bug = " That is a bug in proctor, please report it."
    return [
        f"Spend: the shared ledger holds {from_units(spent):.2f}, and the {processes} processes reported "
        f"{from_units(reported):.2f} of actual costs for the calls they made"
        + (
            ": equal to the billionth, every agent within its limit (the closest, "
            f"{closest}, at {from_units(result.spent[closest]):.2f} of {result.limits[closest]:g}), "
            "nothing left reserved."
            if result.spend_is_exact
            else f": not equal, over a limit, or still reserved.{bug}"
        ),
        f"Rate: batch's calls came from {sum(part['batch'].planned > 0 for part in result.parts)} "
        f"processes; {batch.admitted} were admitted"
        + (
            f", exactly its allowance of {result.quota}, and its bucket is empty; "
            f"the other {batch.refused['rate']} were refused."
            if result.quota_is_exact
            else f", while its allowance is {result.quota} ({result.quota_left:g} left).{bug}"
        ),
    ]


def run_demo(*, seed: int, speed: float, db: str | None = None, processes: int = 1) -> int:
    """Run the demo, showing live progress on a terminal (plain lines otherwise), then the results,
    recording its runs in ``db`` (the default run log when None) and re-evaluating them. With more
    than one process, the workload is dealt out to that many processes sharing one store.

    Returns the exit status: 0; with several processes, 1 when one failed or a limit was not exact.
    """
    log = SessionLog(db)
    try:
        if processes > 1:
            return _run_shared(seed=seed, speed=speed, processes=processes, db=db, log=log)
        with recording_into(log):
            return _run_demo(seed=seed, speed=speed, log=log)
    finally:
        log.close()


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PLAIN_WIDTH
    return console


def _run_demo(*, seed: int, speed: float, log: SessionLog) -> int:
    console = _console()
    demo = Demo(seed=seed, speed=speed)
    started = time.time()
    console.print(
        f"[bold]proctor demo[/] (seed {seed}, speed {speed:g}): {len(demo.plans)} agents share "
        f"[bold]{demo.resource.name}[/], a simulated LLM API: {CAPACITY} calls at a time, "
        f"{20 / speed:g}-{200 / speed:g} ms each."
    )
    console.print("After an agent gets a slot, a PolicyEnforcer checks, in order:")
    for line in demo.policy_lines():
        console.print(f"  {line}")
    if console.is_terminal:
        with Live(demo.live_view(), console=console, auto_refresh=False, transient=True) as live:
            result = asyncio.run(demo.run(lambda: live.update(demo.live_view(), refresh=True)))
    else:
        console.print("Running (no live progress: output is not a terminal)...")
        result = asyncio.run(demo.run())
    granted = sum(agent.stats.granted for agent in result.agents.values())
    rejected = sum(agent.stats.rejected for agent in result.agents.values())
    console.print(f"Finished in {result.elapsed:.1f} s: {granted} calls granted, {rejected} rejected.")
    console.print()
    console.print(results_table(result))
    console.print()
    console.print("[bold]The first rejection by each policy[/] (the PolicyViolationError the agent caught)")
    for line in first_rejections(result):
        console.print(f"- {line}")
    console.print()
    console.print("[bold]What to notice[/]")
    for line in takeaways(result):
        console.print(f"- {line}")
    console.print()
    what_if_stricter(console, log, since=started)
    return 0


def _run_shared(*, seed: int, speed: float, processes: int, db: str | None, log: SessionLog) -> int:
    console = _console()
    demo = Demo(seed=seed, speed=speed, store=MemoryStore())  # for its policies in words
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="proctor-demo-") as directory:
        shared = SharedDemo(
            seed=seed, speed=speed, processes=processes, store_path=Path(directory) / "store.db", db=db
        )
        console.print(
            f"[bold]proctor demo[/] (seed {seed}, speed {speed:g}, {processes} processes): "
            f"{len(demo.plans)} agents call [bold]{demo.resource.name}[/], a simulated LLM API, "
            f"{20 / speed:g}-{200 / speed:g} ms a call. Their calls are dealt out to {processes} "
            f"processes, each with its own scheduler of {CAPACITY} slots; the rate limit and the "
            "budget keep their state in one SQLite store that all of them use (a temporary file)."
        )
        console.print("After an agent gets a slot, a PolicyEnforcer checks, in order:")
        for line in demo.policy_lines():
            console.print(f"  {line}")
        try:
            if console.is_terminal:
                with Live(shared.live_view(), console=console, auto_refresh=False, transient=True) as live:
                    result = shared.run(lambda: live.update(shared.live_view(), refresh=True))
            else:
                console.print("Running (no live progress: output is not a terminal)...")
                result = shared.run()
        except DemoError as exc:
            console.print(str(exc), style="red", markup=False)
            return 1
    total = result.total
    console.print(
        f"Finished in {result.elapsed:.1f} s: {total.admitted} calls admitted, "
        f"{total.made - total.admitted} refused."
    )
    console.print()
    console.print(processes_table(result))
    console.print()
    console.print(ledger_table(result))
    console.print()
    console.print("[bold]Exact across processes[/]")
    for line in exactness(result):
        console.print(f"- {line}")
    console.print()
    what_if_stricter(console, log, since=started)
    return 0 if result.spend_is_exact and result.quota_is_exact else 1


def what_if_stricter(console: Console, log: SessionLog, *, since: float) -> None:
    """Re-evaluate the runs recorded since ``since`` against ``STRICTER``, written next to the log.

    Only those runs count, ``cost_today`` included: earlier demos in the same log change nothing.
    """
    from proctor.cli.replay import rules_table, summary_table

    log.flush()
    runs = log.runs(service=SERVICE, since=since, limit=None, oldest_first=True)
    log.session = frozenset(run.run_id for run in runs)
    actions = sum(1 for _ in log.actions_of([run.run_id for run in runs]))
    path = log.path.parent / "demo-stricter.yaml"
    text = STRICTER.format(path=path)
    path.write_text(text, encoding="utf-8")
    results = what_if(log, runs, parse_policies(text, str(path)))
    impact = ImpactReport.of(results)
    console.print(
        f"[bold]Recorded[/] {len(runs)} runs (one per agent session) with {actions} LLM calls in {log.path}."
    )
    console.print(
        f"[bold]What if stricter rules had been in force?[/] {path} re-evaluated against this demo's "
        "runs (no code ran, nothing was called; cost_today counts what this demo spent, not earlier runs):"
    )
    console.print(summary_table(impact))
    console.print(rules_table(impact))
    console.print(
        f"Look at the runs with [bold]proctor runs list --db {log.path} --service {SERVICE}[/], "
        f"and test your own rules with [bold]proctor replay --db {log.path} --policies FILE[/]."
    )
