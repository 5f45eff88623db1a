"""Budgets under concurrency: reservations keep spend under the limit, and rejections give back.

Many tasks run at once (asyncio tasks, and threads) against per-agent
``BudgetPolicy`` limits in ``"reject"`` mode, with random estimated costs,
actual costs (``grant.cost``) below the estimate, bodies that fail before or
after reporting their cost, and a later policy that rejects some tasks after
the budget has reserved for them. The ledger's store checks after every
change, under one lock, that spent + reserved <= limit; the test also checks
it from outside after every loop step (asyncio) or from a monitor thread.
At the end nothing is reserved and each agent's spend is exactly the sum of
what its admitted tasks cost: the actual cost when one was reported, the
estimate otherwise.

A ``RatePolicy`` token taken for a task that a later policy rejects is given back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from proctor.decision import ALLOW, Action, Decision
from proctor.errors import BudgetExceededError, PolicyViolationError
from proctor.policy.base import Policy
from proctor.policy.budget import BudgetPolicy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.policy.rate import RatePolicy
from proctor.resource import SharedResource
from proctor.scheduling.async_scheduler import AsyncLOCOScheduler
from proctor.scheduling.thread_scheduler import LOCOScheduler
from proctor.stores.memory import MemoryStore
from proctor.task import Task

AGENTS = ("a", "b", "c")
UNITS_PER_CENT = 10_000_000  # the budget ledger counts billionths of a unit (see proctor.stores.base)


class Boom(Exception):
    """Raised inside a body."""


class CheckedStore(MemoryStore):
    """A memory store that checks every ledger right after each change, before the next one."""

    SCHEME = ""  # an inherited "memory" would register this class for memory:// URLs

    def __init__(self, limits_cents: dict[str, int]) -> None:
        super().__init__()
        self.limits = {f"budget:{agent}": cents * UNITS_PER_CENT for agent, cents in limits_cents.items()}
        self.changes = threading.Lock()
        self.violations: list[str] = []
        self.checks = 0

    def _check(self, key: str) -> None:
        spent, reserved = self.get(key, 0, time.time())
        self.checks += 1
        if reserved < 0 or spent < 0 or spent + reserved > self.limits[key]:
            self.violations.append(f"{key}: spent {spent} + reserved {reserved} > limit {self.limits[key]}")

    def reserve(
        self, key: str, amount: int, limit: int | None, window: int, now: float, lease: float
    ) -> tuple[int | None, int, int]:
        with self.changes:
            result = super().reserve(key, amount, limit, window, now, lease)
            self._check(key)
            return result

    def settle(self, key: str, lease_id: int, actual: int, window: int) -> bool:
        with self.changes:
            settled = super().settle(key, lease_id, actual, window)
            self._check(key)
            return settled

    def release(self, key: str, lease_id: int) -> None:
        with self.changes:
            super().release(key, lease_id)
            self._check(key)


class Later(Policy):
    """Checked after the budget; rejects the tasks whose type says so, by raising or by a deny decision."""

    name = "later"

    def admit(self, agent_id: str, task: Task) -> Decision:
        if task.task_type == "raise":
            raise PolicyViolationError(self.name, agent_id, "chosen for rejection")
        if task.task_type == "deny":
            return Decision(Action.DENY, self.name, "chosen for rejection")
        return ALLOW


@dataclass(frozen=True)
class Order:
    """One task: whose, its estimated cost, its actual cost, and how it ends."""

    agent: str
    estimate: int  # cents
    actual: int | None  # cents, at most the estimate; None: no cost reported
    fail: str | None  # "early": raise before reporting the cost; "late": after
    rejected_later: str | None  # how the later policy rejects it: "raise", "deny"; None: it does not
    pauses: int  # how long the body holds its slot, in loop steps or thread yields

    def task(self) -> Task:
        return Task(cost=self.estimate / 100, task_type=self.rejected_later or "default")

    def charged(self) -> int:
        """What an admitted task must cost, in cents."""
        return self.estimate if self.actual is None or self.fail == "early" else self.actual


@st.composite
def orders(draw: st.DrawFn) -> Order:
    estimate = draw(st.integers(0, 300))
    return Order(
        agent=draw(st.sampled_from(AGENTS)),
        estimate=estimate,
        actual=draw(st.none() | st.integers(0, estimate)),
        fail=draw(st.sampled_from([None, None, "early", "late"])),
        rejected_later=draw(st.sampled_from([None, None, None, None, None, None, "raise", "deny"])),
        pauses=draw(st.integers(0, 6)),
    )


limits = st.fixed_dictionaries({agent: st.integers(0, 1000) for agent in AGENTS})


class Ledger:
    """What the test expects each agent to have spent, and how each order ended."""

    def __init__(self, limits_cents: dict[str, int]) -> None:
        self.limits = limits_cents
        self.lock = threading.Lock()
        self.charged: Counter[str] = Counter()
        self.ends: Counter[str] = Counter()
        self.problems: list[str] = []

    def admitted(self, order: Order) -> None:
        with self.lock:
            self.charged[order.agent] += order.charged()
            self.ends["admitted"] += 1

    def rejected(self, order: Order, error: PolicyViolationError) -> None:
        with self.lock:
            if isinstance(error, BudgetExceededError):
                self.ends["over budget"] += 1
                # Rejected only because it did not fit: what was spent and reserved, plus it, is over.
                if round(error.current * 100) + order.estimate <= self.limits[order.agent]:
                    self.problems.append(f"{order} rejected although it fit: {error!r}")
            elif error.policy_name == "later" and order.rejected_later:
                self.ends["rejected later"] += 1
            else:
                self.problems.append(f"{order} rejected by surprise: {error!r}")


def check_budget(policy: BudgetPolicy, limits_cents: dict[str, int], running: Counter[str]) -> None:
    """Spend stays under the limit, and exactly the running tasks' estimates are reserved.

    ``running``: by agent, the estimates of the admitted tasks that have not settled yet.
    """
    for agent in AGENTS:
        assert policy.spent(agent) + policy.reserved(agent) <= limits_cents[agent] / 100 + 1e-9
        # Nothing else: a rejected task's reservation was rolled back at once, a settled one replaced.
        assert policy.reserved(agent) == running[agent] / 100


def check_final(policy: BudgetPolicy, store: CheckedStore, ledger: Ledger, count: int) -> None:
    assert not store.violations, store.violations[:5]
    assert not ledger.problems, ledger.problems[:5]
    assert sum(ledger.ends.values()) == count
    assert store.checks > 0
    for end in ledger.ends:
        event(end)
    for agent in AGENTS:
        assert policy.reserved(agent) == 0
        assert policy.spent(agent) == ledger.charged[agent] / 100  # exact: the ledger sums integers
        assert ledger.charged[agent] <= ledger.limits[agent]


def make_policies(limits_cents: dict[str, int]) -> tuple[BudgetPolicy, CheckedStore, PolicyEnforcer]:
    store = CheckedStore(limits_cents)
    budget = BudgetPolicy(on_exceeded="reject", store=store)
    for agent, cents in limits_cents.items():
        budget.set_limit(agent, cents / 100)
    # The budget reserves first, so a rejection by Later must roll its reservation back.
    return budget, store, PolicyEnforcer([budget, Later()])


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 6), limits_cents=limits, script=st.lists(orders(), min_size=10, max_size=40))
def test_async_spend_never_exceeds_the_limit(
    capacity: int, limits_cents: dict[str, int], script: list[Order]
) -> None:
    budget, store, enforcer = make_policies(limits_cents)
    ledger = Ledger(limits_cents)
    running: Counter[str] = Counter()

    async def run(scheduler: AsyncLOCOScheduler, order: Order) -> None:
        admitted = False
        try:
            async with scheduler.acquire(order.agent, order.task()) as grant:
                admitted = True
                running[order.agent] += order.estimate
                for _ in range(order.pauses):
                    await asyncio.sleep(0)
                if order.fail == "early":
                    raise Boom
                if order.actual is not None:
                    grant.cost = order.actual / 100
                await asyncio.sleep(0)
                if order.fail == "late":
                    raise Boom
        except PolicyViolationError as error:
            ledger.rejected(order, error)
            return
        except Boom:
            pass
        finally:
            if admitted:  # settled on the way out of the block
                running[order.agent] -= order.estimate
        ledger.admitted(order)

    async def scenario() -> None:
        scheduler = AsyncLOCOScheduler(None, SharedResource("llm_api", capacity=capacity), enforcer=enforcer)
        tasks = [asyncio.create_task(run(scheduler, order)) for order in script]
        for _ in range(100_000):
            await asyncio.sleep(0)
            check_budget(budget, limits_cents, running)
            if all(task.done() for task in tasks):
                break
        await asyncio.gather(*tasks)  # surfaces any unexpected exception
        assert scheduler.resource.holder_count == 0

    asyncio.run(scenario())
    check_final(budget, store, ledger, len(script))


@settings(max_examples=15, deadline=None)
@given(
    capacity=st.integers(2, 6),
    limits_cents=limits,
    script=st.lists(orders(), min_size=40, max_size=120),
)
def test_threaded_spend_never_exceeds_the_limit(
    capacity: int, limits_cents: dict[str, int], script: list[Order]
) -> None:
    budget, store, enforcer = make_policies(limits_cents)
    ledger = Ledger(limits_cents)
    scheduler = LOCOScheduler(None, SharedResource("llm_api", capacity=capacity), enforcer=enforcer)
    unexpected: list[BaseException] = []
    stop = threading.Event()
    samples = 0

    def run(orders: list[Order]) -> None:
        for order in orders:
            try:
                with scheduler.acquire(order.agent, order.task()) as grant:
                    for _ in range(order.pauses):
                        time.sleep(0)
                    if order.fail == "early":
                        raise Boom
                    if order.actual is not None:
                        grant.cost = order.actual / 100
                    time.sleep(0)
                    if order.fail == "late":
                        raise Boom
            except PolicyViolationError as error:
                ledger.rejected(order, error)
                continue
            except Boom:
                pass
            except BaseException as exc:
                unexpected.append(exc)
                continue
            ledger.admitted(order)

    def monitor() -> None:
        nonlocal samples
        while not stop.is_set():
            for agent in AGENTS:
                spent, reserved = store.get(f"budget:{agent}", 0, time.time())  # one atomic read
                if spent + reserved > limits_cents[agent] * UNITS_PER_CENT:
                    store.violations.append(f"monitor saw {agent}: {spent} + {reserved}")
            samples += 1
            time.sleep(0)

    threads = [threading.Thread(target=run, args=(script[i::16],), daemon=True) for i in range(16)]
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()
    watcher.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert not unexpected, unexpected
    assert samples > 0
    assert scheduler.resource.holder_count == 0
    assert scheduler.resource.waiter_count == 0
    check_final(budget, store, ledger, len(script))


# Rate tokens.


class FrozenClock:
    """A clock that does not move, so that buckets never refill during a test."""

    def __call__(self) -> float:
        return 0.0


@pytest.mark.parametrize("kind", ["async", "thread"])
@settings(max_examples=60, deadline=None)
@given(
    rejections=st.lists(st.sampled_from([None, "raise", "deny"]), min_size=1, max_size=12),
    tokens=st.integers(1, 5),
)
def test_rate_token_comes_back_when_a_later_policy_rejects(
    kind: str, rejections: list[str | None], tokens: int
) -> None:
    rate = RatePolicy({"a": tokens}, period=3600.0, clock=FrozenClock())
    budget = BudgetPolicy(default_limit=100.0)
    enforcer = PolicyEnforcer([rate, budget, Later()])
    resource = SharedResource("llm_api", capacity=1)
    left = tokens
    spent = 0.0

    def expect(error: PolicyViolationError | None, rejected_later: str | None) -> None:
        nonlocal left, spent
        if left == 0:
            assert error is not None
            assert error.policy_name == "rate"
        elif rejected_later:
            assert error is not None
            assert error.policy_name == "later"  # rate and budget admitted it, then gave everything back
        else:
            assert error is None
            left -= 1
            spent += 1.0
        assert rate.remaining("a") == left
        assert budget.reserved("a") == 0
        assert budget.spent("a") == spent

    def task(rejected_later: str | None) -> Task:
        return Task(cost=1.0, task_type=rejected_later or "default")

    if kind == "async":
        scheduler: Any = AsyncLOCOScheduler(None, resource, enforcer=enforcer)

        async def scenario() -> None:
            for rejected_later in rejections:
                error = None
                try:
                    async with scheduler.acquire("a", task(rejected_later)):
                        pass
                except PolicyViolationError as exc:
                    error = exc
                expect(error, rejected_later)

        asyncio.run(scenario())
    else:
        scheduler = LOCOScheduler(None, resource, enforcer=enforcer)
        for rejected_later in rejections:
            error = None
            try:
                with scheduler.acquire("a", task(rejected_later)):
                    pass
            except PolicyViolationError as exc:
                error = exc
            expect(error, rejected_later)
    assert resource.holder_count == 0


def test_rate_tokens_under_concurrent_rejections() -> None:
    """Threads race for 20 tokens while a later policy rejects every other task: no token is lost.

    (A task may find the bucket empty while a token is out on a task about to
    be rejected; the count of tokens left is exact all the same.)
    """
    tokens = 20
    rate = RatePolicy({"a": tokens}, period=3600.0, clock=FrozenClock())
    scheduler = LOCOScheduler(
        None, SharedResource("llm_api", capacity=4), enforcer=PolicyEnforcer([rate, Later()])
    )
    ends: Counter[str] = Counter()
    lock = threading.Lock()

    def run(offset: int) -> None:
        for i in range(12):
            task = Task(task_type=("raise", "default", "deny", "default")[(offset + i) % 4])
            try:
                with scheduler.acquire("a", task):
                    time.sleep(0)
                end = "admitted"
            except PolicyViolationError as error:
                end = error.policy_name
            with lock:
                ends[end] += 1

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert sum(ends.values()) == 8 * 12
    assert ends["later"] > 0
    assert ends["admitted"] <= tokens
    assert rate.remaining("a") == tokens - ends["admitted"]
