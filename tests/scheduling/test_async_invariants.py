"""AsyncLOCOScheduler keeps its invariants under random interleavings of every way a task can end.

Each hypothesis example drives one scheduler through a script of steps: tasks
acquire (with or without a timeout; with their own task, or serving their
agent's queue; with ``async with`` or with ``acquire_start`` and
``release_handle``), are cancelled while they wait, are cancelled just as their
slot is granted, time out just as their slot is granted, raise inside the
body, are rejected by a policy, release, and the scheduler shuts down; tasks
are queued with ``submit_task``, and ``serve_oldest_task`` takes them. The
event loop runs on a virtual clock that moves only when the script says so,
and the scheduler's own clock is that virtual clock, so an example replays
exactly.

The loop is stepped one ``asyncio.sleep(0)`` at a time, and after every step:

- ``holder_count <= capacity``;
- ``holder_count`` is exactly the number of tasks inside their body plus the
  tasks whose slot was granted but that have not resumed yet (their waiter
  future holds a result); a policy check sees itself counted, and a settle
  sees its own slot already released;
- ``waiter_count`` covers every task that waits;
- nobody is queued while a slot is free.

The task queues hold at every step too:

- each agent's Qi in the waiter queue is its callers' weights plus its queued
  tasks' weights (a caller serving the queue weighs nothing itself);
- every submitted task is in exactly one place: queued, being run by a job
  inside its body, completed, or dropped by a policy's rejection;
- a queued task is checked by a policy at most once, and each agent's grants
  take its queued tasks in the order they were submitted.

Once the loop is idle after a step, no granted-but-not-resumed task is left,
``waiter_count`` is exactly the number of waiting tasks, and each agent's
promised tasks (``_claims``) are its waiting callers that serve the queue. At the end
every task has finished with the outcome its script implies,
``holder_count == 0``, ``waiter_count == 0``, each admitted task was settled
exactly once with its status, and the agents' counters add up.
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proctor.decision import Decision
from proctor.errors import BackpressureError, PolicyViolationError, ShutdownError
from proctor.outcome import Outcome, Status
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.resource import SharedResource
from proctor.scheduling import _asyncio as async_scheduler
from proctor.scheduling.async_scheduler import AsyncLOCOScheduler
from proctor.task import Task

AGENTS = ("a", "b", "c")
SETTLE_ROUNDS = 500  # far more loop iterations than any chain of hand-offs in a script needs


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves ``now``.

    It also remembers the latest future each task created: for a task inside
    acquire(), that is the future the scheduler hands the slot over with.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.latest_future: dict[asyncio.Task[Any], asyncio.Future[Any]] = {}

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[Any]:
        future = super().create_future()
        task = asyncio.current_task(self)
        if task is not None:
            self.latest_future[task] = future
        return future

    def has_work(self) -> bool:
        """Whether any callback is ready or any timer is due: the loop would do more than resume us."""
        return bool(self._ready) or any(  # type: ignore[attr-defined]
            not timer.cancelled() and timer.when() <= self.now
            for timer in self._scheduled  # type: ignore[attr-defined]
        )


class Boom(Exception):
    """Raised inside a body."""


class PolicyBug(Exception):
    """Raised by a policy's check: not a rejection, a crash, which must not leak the slot either."""


@dataclass(eq=False)
class Job:
    """One task of the script and what the test knows about it."""

    number: int
    agent: str
    task: Task | None  # None: it serves its agent's queue, and learns its task at the policy check
    timeout: float | None
    verdict: str  # what the policy says: "allow", "false", "raise" or "bug"
    split: bool = False  # acquire_start() and release_handle() instead of `async with`
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False  # raise Boom when the gate opens
    runner: asyncio.Task[None] | None = None
    entered = False
    inside = False
    checked = 0
    cancelled_in_body = False
    outcome: str | None = None


class Gate(Policy):
    """Rejects the jobs the script chose; checks the slot invariants from inside check and settle."""

    name = "gate"

    def __init__(self, world: World) -> None:
        self.world = world
        self.settled: list[tuple[str, Status, float | None]] = []
        self.errors: list[AssertionError] = []  # the enforcer logs and swallows what settle() raises

    def check(self, agent_id: str, task: Task) -> bool:
        world = self.world
        job = world.by_runner[asyncio.current_task()]  # type: ignore[index]
        if job.task is None:
            # A caller serving the queue: its task is the oldest queued one, or a default one.
            job.task = task
            job.verdict = world.submitted.get(task.task_id, "allow")
            if task.task_id in world.submitted:
                world.claimed[agent_id].append(world.order[task.task_id])
        assert task is job.task
        world.checks[task.task_id] += 1
        job.checked += 1
        # The check runs after the grant and before the body: this job holds a slot already.
        assert not job.entered
        world.check_counts(holding=job)
        verdict = job.verdict
        if verdict == "false":
            return False
        if verdict == "raise":
            raise PolicyViolationError(self.name, agent_id, "chosen for rejection")
        if verdict == "bug":
            raise PolicyBug("the policy crashed")
        return True

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        # record() runs after the release: the slot is no longer counted for this job.
        try:
            self.world.check_counts()
        except AssertionError as exc:
            self.errors.append(exc)
        self.settled.append((task.task_id, outcome.status, outcome.cost))


class World:
    """One scheduler, its jobs, and the invariant checks."""

    def __init__(self, loop: VirtualClockLoop, capacity: int, alpha: float, max_waiters: int) -> None:
        self.loop = loop
        self.resource = SharedResource("llm_api", capacity=capacity)
        self.gate = Gate(self)
        self.scheduler = AsyncLOCOScheduler(
            None,
            self.resource,
            alpha=alpha,
            max_waiters=max_waiters,
            enforcer=PolicyEnforcer([self.gate]),
        )
        self.jobs: list[Job] = []
        self.by_runner: dict[asyncio.Task[None], Job] = {}
        self.shutdowns: list[asyncio.Task[dict[str, int]]] = []
        # The task queues: every submitted task, its verdict and number, and what happened to it.
        self.submitted: dict[str, str] = {}
        self.order: dict[str, int] = {}
        self.queued_tasks: list[Task] = []
        self.checks: Counter[str] = Counter()
        self.claimed: dict[str, list[int]] = {agent: [] for agent in AGENTS}

    # What the test can see of each job.

    def waiter_future(self, job: Job) -> asyncio.Future[Any] | None:
        """The future a job waits on inside acquire(), once it got that far and until it enters its body."""
        if job.runner is None or job.runner.done() or job.entered:
            return None
        return self.loop.latest_future.get(job.runner)

    def granted(self) -> list[Job]:
        """Jobs whose slot was handed over but that have not resumed to take it yet."""
        found = []
        for job in self.jobs:
            future = self.waiter_future(job)
            if future is not None and future.done() and not future.cancelled() and future.exception() is None:
                found.append(job)
        return found

    def waiting(self) -> list[Job]:
        return [job for job in self.jobs if (f := self.waiter_future(job)) is not None and not f.done()]

    def leaving(self) -> list[Job]:
        """Jobs whose wait was ended by a cancellation or a shutdown error that they have not seen yet."""
        found = []
        for job in self.jobs:
            future = self.waiter_future(job)
            if future is not None and future.done() and (future.cancelled() or future.exception()):
                found.append(job)
        return found

    def inside(self) -> list[Job]:
        return [job for job in self.jobs if job.inside]

    def check_counts(self, holding: Job | None = None) -> None:
        """Invariants that hold between any two steps of the event loop.

        ``holding``: the job whose policy check is running; it holds a slot even
        when it got it at once, without waiting.
        """
        resource = self.resource
        holders = resource.holder_count
        assert 0 <= holders <= resource.capacity
        granted = self.granted()
        extra = 1 if holding is not None and holding not in granted else 0
        assert holders == len(self.inside()) + len(granted) + extra, (holders, self.describe())
        waiting = len(self.waiting())
        # A job whose wait was cancelled stays queued until it runs again, unless a release skipped it.
        assert waiting <= resource.waiter_count <= waiting + len(self.leaving()), self.describe()
        if resource.waiter_count:  # nobody is queued while a slot is free
            assert holders == resource.capacity, self.describe()
        self.check_queues(holding.task if holding is not None else None)

    def check_queues(self, checking: Task | None) -> None:
        """The task queues' invariants, between any two steps; ``checking``: the task a policy checks now."""
        scheduler = self.scheduler
        inside_tasks = {id(job.task) for job in self.inside()}
        places: Counter[str] = Counter()
        for agent_id, agent in scheduler.agents.items():
            lane = scheduler._queue._lanes.get(agent_id)
            callers = [entry.weight for entry in lane.entries] if lane is not None else []
            expected = math.fsum(callers + [task.weight for task in agent._queued])
            assert scheduler._queue.depth(agent_id) == expected, (agent_id, self.describe())
            assert agent.queue_depth_weighted == math.fsum(task.weight for task in agent._queued)
            assert agent._claims >= 0
            # A task being run belongs to a job inside its body.
            assert all(id(task) in inside_tasks for task in agent._serving), self.describe()
            for task in (*agent._queued, *agent._serving, *agent._completed):
                places[task.task_id] += 1
        for task_id, verdict in self.submitted.items():
            assert self.checks[task_id] <= 1
            if checking is not None and task_id == checking.task_id:
                assert places[task_id] == 0  # taken off the queue, not yet running
                continue
            dropped = self.checks[task_id] == 1 and verdict != "allow"
            assert places[task_id] + dropped == 1, (task_id, places[task_id], dropped)
        for numbers in self.claimed.values():
            assert numbers == sorted(numbers)  # oldest first

    def check_idle(self) -> None:
        """Invariants once every job has run as far as it can."""
        resource = self.resource
        assert not self.granted(), self.describe()
        assert not self.leaving(), self.describe()
        assert resource.holder_count == len(self.inside())
        assert resource.waiter_count == len(self.waiting())
        if self.scheduler._closed:
            assert resource.waiter_count == 0
        # Each waiting caller that serves the queue is promised one queued task, and only those.
        for agent_id, agent in self.scheduler.agents.items():
            lane = self.scheduler._queue._lanes.get(agent_id)
            callers = sum(entry.weight == 0.0 for entry in lane.entries) if lane is not None else 0
            assert agent._claims == callers, (agent_id, agent._claims, callers)

    def describe(self) -> str:
        return (
            f"{self.resource!r} inside={[j.number for j in self.inside()]} "
            f"granted={[j.number for j in self.granted()]} waiting={[j.number for j in self.waiting()]}"
        )

    # Driving the loop.

    async def step(self) -> None:
        await asyncio.sleep(0)
        self.check_counts()

    async def settle(self) -> None:
        """Let the loop run until it has nothing left to do, checking after every iteration."""
        for _ in range(SETTLE_ROUNDS):
            await self.step()
            if not self.loop.has_work():
                self.check_idle()
                return
        raise AssertionError(f"the loop never went idle: {self.describe()}")

    def advance(self, seconds: float) -> None:
        self.loop.now += seconds

    def spawn(
        self,
        agent: str,
        weight: float,
        timeout: float | None,
        verdict: str,
        from_queue: bool = False,
        split: bool = False,
    ) -> Job:
        task = None if from_queue else Task(weight=weight)
        job = Job(len(self.jobs), agent, task, timeout, verdict, split)
        self.jobs.append(job)
        job.runner = asyncio.get_running_loop().create_task(self.work(job))
        self.by_runner[job.runner] = job
        return job

    async def submit(self, agent: str, weight: float, verdict: str) -> None:
        task = Task(weight=weight)
        try:
            await self.scheduler.submit_task(agent, task)
        except ShutdownError:
            return
        self.submitted[task.task_id] = verdict
        self.order[task.task_id] = len(self.order)
        self.queued_tasks.append(task)

    async def body(self, job: Job) -> None:
        job.entered = job.inside = True
        try:
            await job.gate.wait()
            if job.fail:
                raise Boom(job.number)
        except asyncio.CancelledError:
            job.cancelled_in_body = True
            raise
        finally:
            job.inside = False

    async def work(self, job: Job) -> None:
        scheduler = self.scheduler
        try:
            if job.split:
                grant = await scheduler.acquire_start(job.agent, job.task, timeout=job.timeout)
                try:
                    await self.body(job)
                finally:
                    await scheduler.release_handle(grant)
                    assert grant.released
                    await scheduler.release_handle(grant)  # a second release does nothing
            else:
                async with scheduler.acquire(job.agent, job.task, timeout=job.timeout):
                    await self.body(job)
            job.outcome = "ok"
        except Boom:
            job.outcome = "raised"
        except PolicyViolationError:
            job.outcome = "rejected"
        except PolicyBug:
            job.outcome = "policy-bug"
        except TimeoutError:
            job.outcome = "timeout"
        except ShutdownError:
            job.outcome = "shutdown"
        except BackpressureError:
            job.outcome = "backpressure"
        except asyncio.CancelledError:
            job.outcome = "cancelled"
            raise


# The script.

timeouts = st.sampled_from([None, None, 0.0, 1.0, 2.5])
weights = st.sampled_from([1.0, 1.0, 2.0, 3.5])
verdicts = st.sampled_from(["allow"] * 5 + ["false", "raise", "bug"])
index = st.integers(0, 63)

STEP_ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    # agent, weight, timeout, verdict, serves the agent's queue, split API
    "acquire": st.tuples(st.sampled_from(AGENTS), weights, timeouts, verdicts, st.booleans(), st.booleans()),
    "submit": st.tuples(st.sampled_from(AGENTS), weights, verdicts),
    "serve": st.tuples(st.sampled_from(AGENTS)),
    "release": st.tuples(index, st.booleans()),
    "cancel_waiting": st.tuples(index),
    "cancel_inside": st.tuples(index),
    "cancel_unstarted": st.tuples(st.sampled_from(AGENTS)),
    "cancel_at_grant": st.tuples(index, st.booleans()),
    "timeout_at_grant": st.tuples(index),
    "advance": st.tuples(st.sampled_from([0.5, 1.0, 3.0])),
    "shutdown": st.tuples(st.integers(1, 2)),
}
# Weighted: acquiring and releasing are common; a shutdown ends the admission of new work, so about
# half of the scripts have none.
STEP_WEIGHTS = {
    "acquire": 16,
    "submit": 6,
    "serve": 2,
    "release": 8,
    "cancel_waiting": 4,
    "cancel_inside": 2,
    "cancel_unstarted": 2,
    "cancel_at_grant": 6,
    "timeout_at_grant": 4,
    "advance": 4,
    "shutdown": 1,
}
steps = st.sampled_from([kind for kind, n in STEP_WEIGHTS.items() for _ in range(n)]).flatmap(
    lambda kind: STEP_ARGS[kind].map(lambda args: (kind, *args))
)


def pick(jobs: list[Job], i: int) -> Job | None:
    return jobs[i % len(jobs)] if jobs else None


async def run_step(world: World, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "acquire":
        world.spawn(*step[1:])
    elif kind == "submit":
        await world.submit(*step[1:])
    elif kind == "serve":
        # Inside a body, this takes that body's task; elsewhere, the oldest waiting one.
        if step[1] in world.scheduler.agents:
            world.scheduler.get_agent(step[1]).serve_oldest_task()
    elif kind == "release":
        job = pick(world.inside(), step[1])
        if job is not None:
            job.fail = step[2]
            job.gate.set()
    elif kind == "cancel_waiting":
        job = pick(world.waiting(), step[1])
        if job is not None and job.runner is not None:
            job.runner.cancel()
    elif kind == "cancel_inside":
        job = pick(world.inside(), step[1])
        if job is not None and job.runner is not None:
            job.runner.cancel()
    elif kind == "cancel_unstarted":
        # Cancelled before it ever runs: it never reaches the scheduler.
        job = world.spawn(step[1], 1.0, None, "allow")
        assert job.runner is not None
        job.runner.cancel()
    elif kind == "cancel_at_grant":
        # Release a holder, let it hand its slot over, and cancel the receiver before it resumes.
        job = pick(world.inside(), step[1])
        if job is not None:
            job.fail = step[2]
            job.gate.set()
            await world.step()
            for granted in world.granted():
                assert granted.runner is not None
                granted.runner.cancel()
    elif kind == "timeout_at_grant":
        # Release a holder in the same loop iteration in which every pending timeout expires.
        job = pick(world.inside(), step[1])
        if job is not None:
            job.gate.set()
        world.advance(10.0)
    elif kind == "advance":
        world.advance(step[1])
    elif kind == "shutdown":  # once, or twice at the same time
        for _ in range(step[1]):
            shutdown = world.scheduler.shutdown(timeout=1e6)
            world.shutdowns.append(asyncio.get_running_loop().create_task(shutdown))
    await world.settle()


async def drain(world: World) -> None:
    """Release every holder until every job has finished; nothing may be left behind."""
    for _ in range(len(world.jobs) + 2):
        for job in world.inside():
            job.gate.set()
        world.advance(10.0)  # expires every timeout
        await world.settle()
        if all(job.runner is not None and job.runner.done() for job in world.jobs):
            break
    assert all(job.runner is not None and job.runner.done() for job in world.jobs), world.describe()
    for shutdown in world.shutdowns:
        assert shutdown.done(), "shutdown() did not return after the last holder left"
        assert shutdown.result()["active_holders"] == 0


def check_end(world: World, capacity: int) -> None:
    resource = world.resource
    assert resource.holder_count == 0
    assert resource.waiter_count == 0
    assert resource.available_slots == capacity
    assert len(world.scheduler._queue) == 0

    settled = Counter(task_id for task_id, _, _ in world.gate.settled)
    statuses = {task_id: status for task_id, status, _ in world.gate.settled}
    assert not world.gate.errors, world.gate.errors
    for agent in world.scheduler.agents.values():
        assert agent._claims == 0
        assert not agent._serving  # every grant completed its task
        assert world.scheduler._queue.depth(agent.agent_id) == agent.queue_depth_weighted
    for job in world.jobs:
        runner = job.runner
        assert runner is not None
        assert runner.done()
        if runner.cancelled():
            assert job.outcome in (None, "cancelled")  # None: cancelled before it ever ran
        else:
            assert runner.exception() is None
            assert job.outcome is not None
        # Only an admitted job runs its body; each policy check admitted it or ended it.
        assert job.checked <= 1
        assert job.entered == (job.checked == 1 and job.verdict == "allow")
        if job.checked and job.verdict != "allow":
            assert job.outcome == ("policy-bug" if job.verdict == "bug" else "rejected")
        if job.entered:
            assert job.task is not None
            assert job.outcome in ("ok", "raised", "cancelled")
            assert settled[job.task.task_id] == 1
            expected = {"ok": Status.SUCCESS, "raised": Status.ERROR, "cancelled": Status.CANCELLED}
            # release_handle() is not told how the work ended: it settles a success.
            status = Status.SUCCESS if job.split else expected[job.outcome]
            assert statuses[job.task.task_id] == status
            assert job.cancelled_in_body == (job.outcome == "cancelled")
            if job.task.task_id in world.submitted:
                assert job.task in world.scheduler.get_agent(job.agent).completed_tasks
        else:
            assert job.task is None or settled[job.task.task_id] == 0
            assert job.outcome not in ("ok", "raised")
        if job.outcome == "timeout":
            assert job.timeout is not None

    # The agents' counters add up with what happened.
    stats = [agent.stats for agent in world.scheduler.agents.values()]
    assert sum(s.granted for s in stats) == sum(job.entered for job in world.jobs)
    assert sum(s.rejected for s in stats) == sum(job.checked == 1 and not job.entered for job in world.jobs)
    assert sum(s.timed_out for s in stats) == sum(job.outcome == "timeout" for job in world.jobs)
    queued = [job for job in world.jobs if not job.entered and job.runner in world.loop.latest_future]
    assert sum(s.cancelled for s in stats) == sum(job.outcome == "cancelled" for job in queued)

    # What this example exercised (pytest --hypothesis-show-statistics lists it).
    for job in world.jobs:
        if job.task is not None and job.task.task_id in world.submitted:
            event(f"queued task {'run' if job.entered else 'rejected'}{' (split)' if job.split else ''}")
    if any(world.checks[task_id] == 0 for task_id in world.submitted):
        event("queued task left at the end")
    for job in queued:
        future = world.loop.latest_future[job.runner]
        handed_over = not future.cancelled() and future.exception() is None
        event(f"{job.outcome} after waiting{' (slot handed over)' if handed_over else ''}")


@settings(
    max_examples=100,  # 300 took 46 s on an idle 2-core machine and past the 120 s timeout under load
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    capacity=st.integers(1, 3),
    alpha=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    max_waiters=st.sampled_from([2, 5, 10_000]),
    script=st.lists(steps, min_size=15, max_size=40),
)
def test_random_interleavings_keep_the_slot_invariants(
    capacity: int, alpha: float, max_waiters: int, script: list[tuple[Any, ...]]
) -> None:
    loop_errors: list[dict[str, Any]] = []

    async def scenario(loop: VirtualClockLoop) -> None:
        loop.set_exception_handler(lambda _, context: loop_errors.append(context))
        world = World(loop, capacity, alpha, max_waiters)
        for step in script:
            await run_step(world, step)
        await drain(world)
        check_end(world, capacity)
        loop.latest_future.clear()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualClockLoop)
        # The scheduler stamps arrivals and grants with the virtual clock too, so L(i) is replayable.
        with mock.patch.object(async_scheduler, "_monotonic", loop.time):
            runner.run(scenario(loop))
        gc.collect()  # "exception was never retrieved" reports come from finalizers
    assert not loop_errors, loop_errors


async def finish(*tasks: asyncio.Task[Any]) -> list[Any]:
    """Step the loop until the tasks are done; one still pending after that is stuck for good."""
    for _ in range(SETTLE_ROUNDS):
        if all(task.done() for task in tasks):
            break
        await asyncio.sleep(0)
    assert all(task.done() for task in tasks), "a task is stuck: a slot leaked or a waiter was stranded"
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_cancel_after_the_slot_is_granted_passes_it_on() -> None:
    """The named case of the issue, spelled out: the receiver is cancelled before it resumes."""

    async def scenario() -> None:
        resource = SharedResource("api", capacity=1)
        scheduler = AsyncLOCOScheduler(None, resource)
        release = asyncio.Event()
        entered: list[str] = []

        async def holder() -> None:
            async with scheduler.acquire("a"):
                await release.wait()

        async def waiter(name: str) -> None:
            async with scheduler.acquire(name):
                entered.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("b"))
        third = asyncio.create_task(waiter("c"))
        await asyncio.sleep(0)
        assert resource.holder_count == 1
        assert resource.waiter_count == 2
        release.set()
        await asyncio.sleep(0)  # the holder leaves and grants b; b has not resumed yet
        assert first.done()
        assert resource.holder_count == 1
        assert resource.waiter_count == 1
        second.cancel()
        await finish(second, third)
        assert second.cancelled()
        assert entered == ["c"]
        assert resource.holder_count == 0
        assert resource.waiter_count == 0

    asyncio.run(scenario())


def test_timeout_that_expires_as_the_slot_is_granted_passes_it_on() -> None:
    """The holder leaves in the same loop iteration in which the receiver's timeout expires."""

    async def scenario(loop: VirtualClockLoop) -> None:
        resource = SharedResource("api", capacity=1)
        scheduler = AsyncLOCOScheduler(None, resource)
        release = asyncio.Event()
        entered: list[str] = []

        async def holder() -> None:
            async with scheduler.acquire("a"):
                await release.wait()

        async def waiter(name: str, timeout: float | None) -> None:
            async with scheduler.acquire(name, timeout=timeout):
                entered.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("b", 1.0))
        await asyncio.sleep(0)
        loop.now += 0.5  # c arrives later: b is first in line
        third = asyncio.create_task(waiter("c", None))
        await asyncio.sleep(0)
        assert resource.waiter_count == 2
        release.set()
        loop.now += 1.0  # b's timeout is due in the iteration in which a hands b the slot
        results = await finish(first, second, third)
        assert isinstance(results[1], TimeoutError)
        assert entered == ["c"]
        assert (resource.holder_count, resource.waiter_count) == (0, 0)
        assert scheduler.get_agent("b").stats.timed_out == 1

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualClockLoop)
        with mock.patch.object(async_scheduler, "_monotonic", loop.time):
            runner.run(scenario(loop))


def test_concurrent_shutdowns_all_return() -> None:
    """Two shutdown() calls while a slot is held both return once it is released."""

    async def scenario() -> None:
        resource = SharedResource("api", capacity=1)
        scheduler = AsyncLOCOScheduler(None, resource)
        release = asyncio.Event()

        async def holder() -> None:
            async with scheduler.acquire("a"):
                await release.wait()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)
        first = asyncio.create_task(scheduler.shutdown(timeout=30))
        second = asyncio.create_task(scheduler.shutdown(timeout=30))
        await asyncio.sleep(0)
        release.set()
        results = await finish(first, second, held)
        assert [r["active_holders"] for r in results[:2]] == [0, 0]

    asyncio.run(scenario())
