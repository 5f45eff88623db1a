"""LOCOScheduler keeps its invariants with real threads: random scripts, and a stress run.

The scripted test (hypothesis) starts one thread per acquire and moves each
one on with a ``threading.Event``: threads wait with and without (short,
real) timeouts, some of which expire around a release, raise inside the
body, are rejected or crashed by a policy, release, and the scheduler shuts
down, once or twice at the same time. Tasks are queued with ``submit_task``
between the steps, and some threads acquire without a task, serving their
agent's queue. Each thread reports where it is under
one condition lock; while it holds that lock the test reads the scheduler's
counters under the scheduler's own lock, so every observation is a
consistent snapshot. At every observation:

- ``holder_count <= capacity``;
- every thread inside its body holds a slot, and every other slot is held
  by a thread on its way in or out (none has leaked);
- every queued thread is one that called acquire() and has not come back;
- nobody is queued while a slot is free;
- each agent's Qi is its callers' weights plus its queued tasks' weights,
  and no submitted task is in two places (queued, being run, completed,
  dropped by a rejection).

After each step the test waits until every thread has run as far as it can
(each one inside its body, queued, or finished: ``holder_count == inside``
and ``waiter_count ==`` the threads still in acquire()). At the end every thread has finished with the outcome
its script implies, nothing is held or queued, each admitted task was
settled once with its status, and every submitted task is in exactly one
place.

Real timeouts only sometimes expire just as the slot is handed over, so
three tests make that race happen every time, with a stand-in for the
waiter's wake-up lock: the wait gives up while the slot arrives (the waiter
keeps it), while a shutdown fails it, or with nothing crossing it.

The stress test runs 32 threads through a few thousand random acquire /
release / timeout / raise / reject operations while a monitor thread samples
``holder_count``, and counts the bodies running at once under a lock; a
second one mixes in ``submit_task``, ``acquire()`` serving the queue,
``serve_oldest_task`` and the split API.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proctor.decision import Decision
from proctor.errors import BackpressureError, PolicyViolationError, ShutdownError
from proctor.outcome import Outcome, Status
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.resource import SharedResource
from proctor.scheduling import _threads as thread_scheduler
from proctor.scheduling.thread_scheduler import LOCOScheduler
from proctor.task import Task

AGENTS = ("a", "b", "c")
SETTLE_LIMIT = 5.0  # seconds for threads to reach a state the script expects; only a hang takes this long


class Boom(Exception):
    """Raised inside a body."""


class PolicyBug(Exception):
    """Raised by a policy's check: a crash, not a rejection; it must not leak the slot either."""


@dataclass(eq=False)
class Job:
    """One thread of the script and what the test knows about it."""

    number: int
    agent: str
    task: Task | None  # None: it serves its agent's queue, and learns its task at the policy check
    timeout: float | None
    verdict: str  # what the policy says: "allow", "false", "raise" or "bug"
    gate: threading.Event = field(default_factory=threading.Event)
    fail: bool = False  # raise Boom when the gate opens
    state = "new"  # new -> acquiring -> inside -> leaving -> done; or acquiring -> done
    entered = False
    checked = 0
    outcome: str | None = None
    thread: threading.Thread | None = None


class Gate(Policy):
    """Rejects the jobs the script chose; checks from inside check() that the caller holds a slot."""

    name = "gate"

    def __init__(self, world: World) -> None:
        self.world = world
        self.settled: list[tuple[str, Status]] = []
        self.lock = threading.Lock()

    def check(self, agent_id: str, task: Task) -> bool:
        world = self.world
        with world.cond:
            job = world.by_thread[threading.current_thread()]
            if job.task is None:  # serving the queue: the oldest queued task, or a default one
                job.task = task
                job.verdict = world.submitted.get(task.task_id, "allow")
            world.expect(task is job.task, f"job {job.number} checked another job's task")
            world.checks[task.task_id] += 1
            job.checked += 1
            # After the grant, before the body: every thread inside holds a slot, and so does this one.
            world.expect(job.state == "acquiring", f"job {job.number} checked in state {job.state}")
            holders = world.resource.holder_count
            world.expect(holders >= len(world.inside()) + 1, f"check without a slot: {world.describe()}")
        if job.verdict == "false":
            return False
        if job.verdict == "raise":
            raise PolicyViolationError(self.name, agent_id, "chosen for rejection")
        if job.verdict == "bug":
            raise PolicyBug("the policy crashed")
        return True

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        with self.lock:
            self.settled.append((task.task_id, outcome.status))


class World:
    """One scheduler, its threads, and the invariant checks."""

    def __init__(self, capacity: int, alpha: float, max_waiters: int) -> None:
        self.resource = SharedResource("llm_api", capacity=capacity)
        self.gate = Gate(self)
        self.scheduler = LOCOScheduler(
            None, self.resource, alpha=alpha, max_waiters=max_waiters, enforcer=PolicyEnforcer([self.gate])
        )
        self.cond = threading.Condition()
        self.jobs: list[Job] = []
        self.by_thread: dict[threading.Thread, Job] = {}
        self.submitted: dict[str, str] = {}  # queued task -> its verdict
        self.checks: Counter[str] = Counter()
        self.shutdowns: list[threading.Thread] = []
        self.shutdown_results: list[dict[str, int]] = []
        self.errors: list[str] = []  # broken invariants seen from other threads

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.errors.append(message)

    def in_state(self, *states: str) -> list[Job]:
        return [job for job in self.jobs if job.state in states]

    def inside(self) -> list[Job]:
        return self.in_state("inside")

    def describe(self) -> str:
        return f"{self.resource!r} " + " ".join(f"{job.number}:{job.state}" for job in self.jobs)

    @contextmanager
    def snapshot(self) -> Iterator[tuple[int, int]]:
        """Holders and waiters, read atomically while no thread can change its reported state."""
        with self.cond, self.scheduler._lock:
            yield self.resource.holder_count, self.resource.waiter_count

    def observe(self) -> bool:
        """Check the invariants of one snapshot; True when every thread has run as far as it can."""
        with self.snapshot() as (holders, waiters):
            inside = len(self.inside())
            acquiring = len(self.in_state("acquiring"))
            leaving = len(self.in_state("leaving"))
            assert 0 <= holders <= self.resource.capacity, self.describe()
            assert 0 <= waiters <= acquiring, self.describe()
            # Every thread inside holds a slot; any other slot is held by a thread on its way in
            # (in acquire() but not queued) or out (leaving): a slot held by nobody has leaked.
            assert inside <= holders <= inside + leaving + (acquiring - waiters), self.describe()
            if waiters:  # nobody waits while a slot is free
                assert holders == self.resource.capacity, self.describe()
            assert not self.errors, self.errors
            self.check_queues(exact=False)
            settled = not self.in_state("new", "leaving") and holders == inside and waiters == acquiring
            if settled and self.scheduler._closed:
                assert waiters == 0, self.describe()
            return settled

    def check_queues(self, exact: bool) -> None:
        """Qi, and where each submitted task is; ``exact``: no thread is between claiming and running one."""
        scheduler = self.scheduler
        places: Counter[str] = Counter()
        for agent_id, agent in scheduler._agents.items():
            lane = scheduler._queue._lanes.get(agent_id)
            callers = [entry.weight for entry in lane.entries] if lane is not None else []
            expected = math.fsum(callers + [task.weight for task in agent._queued])
            assert scheduler._queue.depth(agent_id) == expected, agent_id
            for task in (*agent._queued, *agent._serving, *agent._completed):
                places[task.task_id] += 1
        for task_id, verdict in self.submitted.items():
            assert self.checks[task_id] <= 1
            dropped = self.checks[task_id] == 1 and verdict != "allow"
            found = places[task_id] + dropped
            assert found == 1 if exact else found <= 1, (task_id, places[task_id], dropped)

    def settle(self) -> None:
        deadline = time.monotonic() + SETTLE_LIMIT
        while not self.observe():
            assert time.monotonic() < deadline, f"threads never settled: {self.describe()}"
            with self.cond:
                self.cond.wait(0.0005)

    def release(self, job: Job) -> None:
        """Open a job's gate and wait until it has left its body (it may still hold its slot)."""
        job.gate.set()
        with self.cond:
            left = self.cond.wait_for(lambda: job.state != "inside", SETTLE_LIMIT)
        assert left, f"job {job.number} never left its body"

    def move(self, job: Job, state: str) -> None:
        with self.cond:
            job.state = state
            self.cond.notify_all()

    def spawn(self, agent: str, weight: float, timeout: float | None, verdict: str, from_queue: bool) -> Job:
        job = Job(len(self.jobs), agent, None if from_queue else Task(weight=weight), timeout, verdict)
        job.thread = threading.Thread(target=self.work, args=(job,), daemon=True)
        with self.cond:
            self.jobs.append(job)
            self.by_thread[job.thread] = job
        job.thread.start()
        return job

    def submit(self, agent: str, weight: float, verdict: str) -> None:
        task = Task(weight=weight)
        with self.cond:  # recorded before any thread can check it
            self.submitted[task.task_id] = verdict
            try:
                self.scheduler.submit_task(agent, task)
            except ShutdownError:
                del self.submitted[task.task_id]

    def work(self, job: Job) -> None:
        self.move(job, "acquiring")
        try:
            with self.scheduler.acquire(job.agent, job.task, timeout=job.timeout):
                with self.cond:
                    job.entered = True
                    job.state = "inside"
                    self.cond.notify_all()
                job.gate.wait()
                self.move(job, "leaving")  # still holding the slot, no longer counted as inside
                if job.fail:
                    raise Boom(job.number)
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
        except BaseException as exc:
            job.outcome = f"unexpected {exc!r}"
        finally:
            self.move(job, "done")

    def shutdown(self) -> None:
        def run() -> None:
            # Far longer than the test waits for it: shutdown() must return because the last holder left.
            self.shutdown_results.append(self.scheduler.shutdown(timeout=60 * SETTLE_LIMIT))

        thread = threading.Thread(target=run, daemon=True)
        self.shutdowns.append(thread)
        thread.start()

    def close(self) -> None:
        """Let every thread finish, whatever state a failed test left them in."""
        for job in self.jobs:
            job.gate.set()
        self.scheduler.shutdown(timeout=0)  # wakes whoever still waits
        deadline = time.monotonic() + SETTLE_LIMIT
        for job in self.jobs:  # the shutdown threads end on their own, by their timeout at the latest
            if job.thread is not None:
                job.thread.join(max(deadline - time.monotonic(), 0.0))


# The script.

timeouts = st.sampled_from([None, None, 0.0, 0.001, 0.003, 0.05])
weights = st.sampled_from([1.0, 1.0, 2.0, 3.5])
verdicts = st.sampled_from(["allow"] * 5 + ["false", "raise", "bug"])
index = st.integers(0, 63)

STEP_ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    # agent, weight, timeout, verdict, serves the agent's queue
    "acquire": st.tuples(st.sampled_from(AGENTS), weights, timeouts, verdicts, st.booleans()),
    "submit": st.tuples(st.sampled_from(AGENTS), weights, verdicts),
    "release": st.tuples(index, st.booleans()),
    # Sleep about as long as a short timeout, then release: the slot and the timeout may cross.
    "release_late": st.tuples(index, st.sampled_from([0.0005, 0.001, 0.003])),
    "pause": st.tuples(st.sampled_from([0.001, 0.005])),
    "shutdown": st.tuples(st.integers(1, 2)),
}
# Weighted: a shutdown ends the admission of new work, so about half of the scripts have none.
STEP_WEIGHTS = {"acquire": 20, "submit": 6, "release": 10, "release_late": 8, "pause": 4, "shutdown": 1}
steps = st.sampled_from([kind for kind, n in STEP_WEIGHTS.items() for _ in range(n)]).flatmap(
    lambda kind: STEP_ARGS[kind].map(lambda args: (kind, *args))
)


def pick(jobs: list[Job], i: int) -> Job | None:
    return jobs[i % len(jobs)] if jobs else None


def run_step(world: World, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "acquire":
        world.spawn(*step[1:])
    elif kind == "submit":
        world.submit(*step[1:])
    elif kind in ("release", "release_late"):
        with world.cond:
            job = pick(world.inside(), step[1])
        if job is not None:
            if kind == "release":
                job.fail = step[2]
            else:
                time.sleep(step[2])
            world.release(job)
    elif kind == "pause":
        time.sleep(step[1])
    elif kind == "shutdown":  # once, or twice at the same time
        for _ in range(step[1]):
            world.shutdown()
    world.settle()


def drain(world: World) -> None:
    """Release every holder until every thread has finished; nothing may be left behind."""
    for _ in range(len(world.jobs) + 1):
        with world.cond:
            inside = world.inside()
        for job in inside:
            world.release(job)
        world.settle()
        with world.cond:
            if all(job.state == "done" for job in world.jobs):
                break
    with world.cond:
        assert all(job.state == "done" for job in world.jobs), world.describe()
    for job in world.jobs:
        assert job.thread is not None
        job.thread.join(SETTLE_LIMIT)
        assert not job.thread.is_alive()
    for thread in world.shutdowns:
        thread.join(SETTLE_LIMIT)
        assert not thread.is_alive(), "shutdown() did not return after the last holder left"
    assert all(result["active_holders"] == 0 for result in world.shutdown_results)


def check_end(world: World, capacity: int) -> None:
    resource = world.resource
    assert resource.holder_count == 0
    assert resource.waiter_count == 0
    assert resource.available_slots == capacity
    assert len(world.scheduler._queue) == 0
    assert not world.errors, world.errors

    with world.snapshot():
        world.check_queues(exact=True)
    for agent in world.scheduler.agents.values():
        assert agent._claims == 0
        assert not agent._serving

    settled = Counter(task_id for task_id, _ in world.gate.settled)
    statuses = dict(world.gate.settled)
    for job in world.jobs:
        assert job.outcome is not None
        assert not job.outcome.startswith("unexpected"), job.outcome
        assert job.checked <= 1
        # Only an admitted job runs its body; the policy check admitted it or ended it.
        assert job.entered == (job.checked == 1 and job.verdict == "allow")
        if job.checked and job.verdict != "allow":
            assert job.outcome == ("policy-bug" if job.verdict == "bug" else "rejected")
        if job.entered:
            assert job.task is not None
            assert job.outcome in ("ok", "raised")
            assert settled[job.task.task_id] == 1
            assert statuses[job.task.task_id] == (Status.SUCCESS if job.outcome == "ok" else Status.ERROR)
            if job.task.task_id in world.submitted:
                assert job.task in world.scheduler.get_agent(job.agent).completed_tasks
        else:
            assert job.task is None or settled[job.task.task_id] == 0
        if job.outcome == "timeout":
            assert job.timeout is not None
        event(f"outcome {job.outcome}")

    stats = [agent.stats for agent in world.scheduler.agents.values()]
    assert sum(s.granted for s in stats) == sum(job.entered for job in world.jobs)
    assert sum(s.rejected for s in stats) == sum(job.checked == 1 and not job.entered for job in world.jobs)
    assert sum(s.timed_out for s in stats) == sum(job.outcome == "timeout" for job in world.jobs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.integers(1, 3),
    alpha=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    max_waiters=st.sampled_from([2, 5, 10_000]),
    script=st.lists(steps, min_size=15, max_size=35),
)
def test_random_scripts_keep_the_slot_invariants(
    capacity: int, alpha: float, max_waiters: int, script: list[tuple[Any, ...]]
) -> None:
    world = World(capacity, alpha, max_waiters)
    try:
        for step in script:
            run_step(world, step)
        drain(world)
        check_end(world, capacity)
    finally:
        world.close()


# A timeout that crosses a grant or a shutdown, made to happen every time.


class CrossingWakeup:
    """Stands in for a waiter's wake-up lock: its timed wait runs ``meanwhile``, then reports a timeout.

    That is the race of a real timeout: the wait gives up, and before the
    waiter takes the scheduler's lock to leave the queue, someone hands it the
    slot (or shuts down).
    """

    def __init__(self, lock: Any, meanwhile: Any) -> None:
        self.lock = lock
        self.meanwhile = meanwhile

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout >= 0 and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
            return False
        return bool(self.lock.acquire(blocking, timeout))

    def release(self) -> None:
        self.lock.release()


@contextmanager
def crossing_timeouts(scheduler: LOCOScheduler, meanwhile: Any) -> Iterator[None]:
    """Every waiter ``scheduler`` creates in this block times out while ``meanwhile`` runs."""
    original = thread_scheduler._ThreadWaiter

    class Waiter(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.wakeup = CrossingWakeup(self.wakeup, meanwhile)

    with mock.patch.object(scheduler, "_make_waiter", Waiter):
        yield


def test_timeout_that_crosses_a_grant_keeps_the_slot() -> None:
    resource = SharedResource("llm_api", capacity=1)
    scheduler = LOCOScheduler(None, resource)
    holder = scheduler.acquire("a")
    holder.__enter__()
    seen: list[tuple[int, int]] = []
    # The holder leaves just as b's wait times out: b has the slot and must use it, not drop it.
    with (
        crossing_timeouts(scheduler, lambda: holder.__exit__(None, None, None)),
        scheduler.acquire("b", timeout=1.0) as grant,
    ):
        seen.append((resource.holder_count, resource.waiter_count))
    assert grant.agent_id == "b"
    assert seen == [(1, 0)]
    assert (resource.holder_count, resource.waiter_count) == (0, 0)
    assert scheduler.get_agent("b").stats.timed_out == 0


def test_timeout_that_crosses_a_shutdown_leaves_nothing_behind() -> None:
    resource = SharedResource("llm_api", capacity=1)
    scheduler = LOCOScheduler(None, resource)
    holder = scheduler.acquire("a")
    holder.__enter__()
    reports: list[dict[str, int]] = []
    with (
        crossing_timeouts(scheduler, lambda: reports.append(scheduler.shutdown(timeout=0))),
        pytest.raises((TimeoutError, ShutdownError)),
        scheduler.acquire("b", timeout=1.0),
    ):
        pass
    assert reports == [{"cancelled_waiters": 1, "active_holders": 1}]
    assert (resource.holder_count, resource.waiter_count) == (1, 0)
    holder.__exit__(None, None, None)
    assert (resource.holder_count, resource.waiter_count) == (0, 0)


def test_timeout_that_crosses_nothing_leaves_the_queue() -> None:
    resource = SharedResource("llm_api", capacity=1)
    scheduler = LOCOScheduler(None, resource)
    with scheduler.acquire("a"), crossing_timeouts(scheduler, lambda: None):
        with pytest.raises(TimeoutError), scheduler.acquire("b", timeout=1.0):
            pass
        assert (resource.holder_count, resource.waiter_count) == (1, 0)
    assert (resource.holder_count, resource.waiter_count) == (0, 0)
    assert scheduler.get_agent("b").stats.timed_out == 1


# The stress run.


class RandomVerdict(Policy):
    """Rejects (by returning False or raising) or crashes on the task types chosen for it."""

    name = "random-verdict"

    def check(self, agent_id: str, task: Task) -> bool:
        if task.task_type == "reject":
            return False
        if task.task_type == "raise":
            raise PolicyViolationError(self.name, agent_id, "chosen for rejection")
        if task.task_type == "bug":
            raise PolicyBug("the policy crashed")
        return True


class Tally(Policy):
    """Counts settles by status; runs after the release, from many threads."""

    name = "tally"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[Status] = Counter()

    def check(self, agent_id: str, task: Task) -> bool:
        return True

    def settle(self, agent_id: str, task: Task, decision: Decision, outcome: Outcome) -> None:
        with self.lock:
            self.statuses[outcome.status] += 1


@contextmanager
def fast_thread_switches() -> Iterator[None]:
    """Switch threads far more often than usual, so that more interleavings happen."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize(("capacity", "shutdown_midway"), [(1, False), (3, False), (3, True)])
def test_stress_many_threads(capacity: int, shutdown_midway: bool) -> None:
    threads_n, ops_per_thread = 32, 150
    resource = SharedResource("llm_api", capacity=capacity)
    tally = Tally()
    scheduler = LOCOScheduler(
        None, resource, alpha=0.25, max_waiters=24, enforcer=PolicyEnforcer([RandomVerdict(), tally])
    )
    count_lock = threading.Lock()
    running = 0
    most_running = 0
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    stop = threading.Event()
    sampled = Counter[int]()

    def monitor() -> None:
        while not stop.is_set():
            holders = resource.holder_count
            sampled[holders] += 1
            if not 0 <= holders <= capacity:
                problems.append(f"holder_count {holders} with capacity {capacity}")
            time.sleep(0)

    def body(rng: random.Random) -> None:
        nonlocal running, most_running
        with count_lock:
            running += 1
            most_running = max(most_running, running)
            if running > capacity:
                problems.append(f"{running} bodies at once with capacity {capacity}")
        try:
            if rng.random() < 0.3:
                time.sleep(rng.choice([0.0, 0.0001, 0.0005]))
            if rng.random() < 0.15:
                raise Boom
        finally:
            with count_lock:
                running -= 1

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(ops_per_thread):
            task_type = rng.choices(["ok", "reject", "raise", "bug"], [14, 2, 2, 1])[0]
            timeout = rng.choice([None, None, 0.0, 0.0002, 0.001, 0.01])
            try:
                with scheduler.acquire(rng.choice(AGENTS), Task(task_type=task_type), timeout=timeout):
                    body(rng)
                outcome = "ok"
            except Boom:
                outcome = "raised"
            except PolicyViolationError:
                outcome = "rejected"
            except PolicyBug:
                outcome = "policy-bug"
            except TimeoutError:
                outcome = "timeout"
            except BackpressureError:
                outcome = "backpressure"
            except ShutdownError:
                outcome = "shutdown"
            except BaseException as exc:
                outcome = "unexpected"
                problems.append(repr(exc))
            with count_lock:
                outcomes[outcome] += 1

    watcher = threading.Thread(target=monitor, daemon=True)
    workers = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(threads_n)]
    with fast_thread_switches():
        watcher.start()
        for thread in workers:
            thread.start()
        if shutdown_midway:
            while True:
                with count_lock:
                    if sum(outcomes.values()) >= threads_n * ops_per_thread // 2:
                        break
                time.sleep(0.001)
            report = scheduler.shutdown(timeout=SETTLE_LIMIT)
            assert report["active_holders"] == 0
        for thread in workers:
            thread.join(60)
        stop.set()
        watcher.join(SETTLE_LIMIT)
    assert not any(thread.is_alive() for thread in workers), "a worker never came back: a stranded waiter"

    assert not problems, problems[:5]
    assert most_running <= capacity
    assert max(sampled) <= capacity
    assert sum(sampled.values()) > 0
    assert resource.holder_count == 0
    assert resource.waiter_count == 0
    assert len(scheduler._queue) == 0
    assert sum(outcomes.values()) == threads_n * ops_per_thread
    assert outcomes["ok"] > 0
    # Every body that ran was settled once, after its release, with its status.
    assert tally.statuses[Status.SUCCESS] == outcomes["ok"]
    assert tally.statuses[Status.ERROR] == outcomes["raised"]
    stats = [agent.stats for agent in scheduler.agents.values()]
    assert sum(s.granted for s in stats) == outcomes["ok"] + outcomes["raised"]
    assert sum(s.rejected for s in stats) == outcomes["rejected"] + outcomes["policy-bug"]
    assert sum(s.timed_out for s in stats) == outcomes["timeout"]
    if shutdown_midway:
        assert outcomes["shutdown"] > 0


class Checked(Policy):
    """Records every task it checks, then rejects (by returning False or raising) or crashes as chosen."""

    name = "checked"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checks: Counter[str] = Counter()

    def check(self, agent_id: str, task: Task) -> bool:
        with self.lock:
            self.checks[task.task_id] += 1
        return RandomVerdict().check(agent_id, task)


def test_stress_task_queues() -> None:
    """Threads queue tasks, serve them with and without ``acquire()``, and use the split API, all at once."""
    threads_n, ops_per_thread, capacity = 24, 120, 2
    resource = SharedResource("llm_api", capacity=capacity)
    checked = Checked()
    scheduler = LOCOScheduler(None, resource, alpha=0.5, enforcer=PolicyEnforcer([checked]))
    lock = threading.Lock()
    submitted: dict[str, str] = {}  # task id -> task type
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    served_ids: Counter[str] = Counter()  # what serve_oldest_task() returned

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(ops_per_thread):
            agent_id = rng.choice(AGENTS)
            op = rng.choices(["submit", "acquire", "split", "serve"], [5, 6, 2, 1])[0]
            try:
                if op == "submit":
                    task = Task(task_type=rng.choices(["ok", "reject", "raise", "bug"], [14, 2, 2, 1])[0])
                    with lock:
                        submitted[task.task_id] = task.task_type
                    scheduler.submit_task(agent_id, task)
                elif op == "serve":
                    served = scheduler.get_agent(agent_id).serve_oldest_task()
                    if served is not None:
                        with lock:
                            served_ids[served.task_id] += 1
                elif op == "split":
                    grant = scheduler.acquire_start(agent_id, timeout=rng.choice([None, 0.001]))
                    time.sleep(0)
                    scheduler.release_handle(grant)
                    scheduler.release_handle(grant)
                else:
                    with scheduler.acquire(agent_id, timeout=rng.choice([None, None, 0.0, 0.001])) as grant:
                        if rng.random() < 0.3:
                            served = scheduler.get_agent(agent_id).serve_oldest_task()
                            if served is not None:
                                with lock:
                                    served_ids[served.task_id] += 1
                        time.sleep(rng.choice([0.0, 0.0, 0.0002]))
                        if rng.random() < 0.1:
                            raise Boom
                outcome = op
            except (Boom, PolicyViolationError, PolicyBug, TimeoutError, KeyError) as exc:
                outcome = type(exc).__name__
            except BaseException as exc:
                outcome = "unexpected"
                problems.append(repr(exc))
            with lock:
                outcomes[outcome] += 1

    workers = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(threads_n)]
    with fast_thread_switches():
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(60)
    assert not any(thread.is_alive() for thread in workers), "a worker never came back: a stranded waiter"
    assert not problems, problems[:5]
    assert sum(outcomes.values()) == threads_n * ops_per_thread
    assert (resource.holder_count, resource.waiter_count, len(scheduler._queue)) == (0, 0, 0)

    # Every submitted task is in exactly one place; none was checked twice.
    places: Counter[str] = Counter()
    for agent_id, agent in scheduler.agents.items():
        assert agent._claims == 0
        assert not agent._serving
        assert scheduler._queue.depth(agent_id) == agent.queue_depth_weighted
        for task in (*agent._queued, *agent._completed):
            places[task.task_id] += 1
    served_from_queue = 0
    for task_id, task_type in submitted.items():
        assert checked.checks[task_id] <= 1
        dropped = checked.checks[task_id] == 1 and task_type != "ok"
        assert places[task_id] + dropped == 1, (task_id, task_type)
        served_from_queue += checked.checks[task_id]
    assert served_from_queue > 0
    assert outcomes["serve"] > 0
    assert max(served_ids.values()) == 1  # no task is handed out twice
