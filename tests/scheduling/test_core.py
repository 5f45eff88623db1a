"""The scheduler's core alone: no threads, no event loop, the clock passed in.

A state machine drives ``SchedulerCore`` through any interleaving of requests,
releases, cancellations and timeouts (a waiter that gives up before or just
after its slot came), queued tasks, lease expiry in the store and shutdown,
playing the driver's part itself, and checks after every step that no more
than ``capacity`` slots are held, that no waiter waits while a slot is free,
and that the store holds exactly the slots the core says are held.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from proctor import ConfigurationError, SharedResource, SQLiteStore, Task
from proctor.errors import BackpressureError, ShutdownError
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler
from proctor.scheduling._core import SchedulerCore, Waiter
from proctor.scheduling.grant import Grant
from proctor.stores import MemoryStore

AGENTS = ("a", "b", "c")


class Core(SchedulerCore[Waiter]):
    """The core with the plain ``Waiter``: what a driver adds is only how to wait."""

    _waiter_class = Waiter


class CoreMachine(RuleBasedStateMachine):
    """A model of callers around one core; each rule is one step a driver may take."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.store = MemoryStore()
        self.capacity = 0
        self.core: Core | None = None
        self.holders: list[Grant] = []  # granted and admitted: their work runs
        self.waiters: list[Waiter] = []  # in the queue
        self.tokens: list[int] = []  # every fencing token granted, in grant order

    @rule(capacity=st.integers(1, 3), max_waiters=st.sampled_from([1, 4, 100]), lease=st.booleans())
    @precondition(lambda self: self.core is None)
    def build(self, capacity: int, max_waiters: int, lease: bool) -> None:
        # A finite lease: the slots of holders that outlive it go back to the store, as a dead
        # process's would, and the core finds out when it passes one on.
        if lease:
            self.store.slot_lease = 5.0
        self.capacity = capacity
        self.core = Core(None, SharedResource("api", capacity, store=self.store), max_waiters=max_waiters)

    def _core(self) -> Core:
        assert self.core is not None
        return self.core

    def _granted(self, agent_id: str, task: Task | None, token: int) -> None:
        """What a driver does once a request has its slot: claim a queued task, then run."""
        core = self._core()
        agent = core.get_agent(agent_id)
        if task is None:
            task = core._claim(agent, self.now) or Task()
        self.holders.append(Grant(agent, task, 0.0, None, core, token))
        self.tokens.append(token)

    def _woken(self, waiter: Waiter | None) -> None:
        """A release or withdrawal passed its slot to ``waiter``: the driver wakes it, and it runs."""
        if waiter is None:
            return
        assert waiter.token is not None
        self.waiters.remove(waiter)
        agent = self._core().get_agent(waiter.agent_id)
        serves_queue = waiter.weight == 0.0
        if serves_queue:
            agent._claims -= 1
        self._granted(waiter.agent_id, None if serves_queue else Task(), waiter.token)

    @rule(agent=st.sampled_from(AGENTS), from_queue=st.booleans(), weight=st.sampled_from([1.0, 2.5]))
    @precondition(lambda self: self.core is not None)
    def request(self, agent: str, from_queue: bool, weight: float) -> None:
        core = self._core()
        try:
            _, task, token, waiter = core._request(
                agent, None if from_queue else Task(weight=weight), self.now
            )
        except (BackpressureError, ShutdownError):
            return
        if waiter is None:
            self._granted(agent, task, token)
        else:
            assert waiter.token is None
            self.waiters.append(waiter)

    @rule(agent=st.sampled_from(AGENTS))
    @precondition(lambda self: self.core is not None and not self._core()._closed)
    def submit(self, agent: str) -> None:
        self._core()._submit(agent, Task(), self.now)

    @rule(i=st.integers(0, 10))
    @precondition(lambda self: self.holders)
    def end(self, i: int) -> None:
        grant = self.holders.pop(i % len(self.holders))
        self._woken(self._core()._release(grant.fencing_token, self.now, grant))
        assert grant.released

    @rule(i=st.integers(0, 10))
    @precondition(lambda self: self.holders)
    def reject(self, i: int) -> None:
        """A policy refused the granted task: the slot passes on without the grant ending."""
        grant = self.holders.pop(i % len(self.holders))
        self._woken(self._core()._release(grant.fencing_token, self.now))

    @rule(i=st.integers(0, 10))
    @precondition(lambda self: self.waiters)
    def give_up(self, i: int) -> None:
        """A waiter is cancelled or times out while it waits."""
        waiter = self.waiters.pop(i % len(self.waiters))
        if waiter.weight == 0.0:
            self._core().get_agent(waiter.agent_id)._claims -= 1
        assert self._core()._withdraw(waiter, self.now) is None

    @rule(i=st.integers(0, 10), j=st.integers(0, 10))
    @precondition(lambda self: self.holders and self.waiters)
    def give_up_as_the_slot_comes(self, i: int, j: int) -> None:
        """A release grants a waiter whose cancellation crosses it: the slot passes on again."""
        core = self._core()
        grant = self.holders.pop(i % len(self.holders))
        waiter = core._release(grant.fencing_token, self.now, grant)
        if waiter is None:
            return
        self.waiters.remove(waiter)
        if waiter.weight == 0.0:
            core.get_agent(waiter.agent_id)._claims -= 1
        self._woken(core._withdraw(waiter, self.now))
        assert waiter.token is None

    @rule(step=st.sampled_from([0.0, 1.0, 6.0]))
    def tick(self, step: float) -> None:
        self.now += step

    @rule()
    @precondition(lambda self: self.core is not None)
    def shutdown(self) -> None:
        turned_away = self._core()._close(self.now)
        assert sorted(map(id, turned_away)) == sorted(map(id, self.waiters))
        for waiter in turned_away:
            if waiter.weight == 0.0:
                self._core().get_agent(waiter.agent_id)._claims -= 1
        self.waiters.clear()

    @invariant()
    def slots_add_up(self) -> None:
        core = self.core
        if core is None:
            return
        resource = core.resource
        assert resource.holder_count == len(self.holders) <= self.capacity
        assert resource.waiter_count == len(core._queue) == len(self.waiters)
        # No one waits while a slot is free (the store takes back an expired lease's slot, and the
        # core, finding its lease gone, asks the store again for the waiter).
        if self.waiters:
            assert resource.holder_count == self.capacity
        assert len(set(self.tokens)) == len(self.tokens)
        assert self.tokens == sorted(self.tokens)  # fencing tokens only increase
        # The store holds the holders' slots; with finite leases (never renewed here), not those of
        # holders that outlived their lease.
        held = self.store.slots_held("api", self.now)
        if self.store.slot_lease == float("inf"):
            assert held == len(self.holders)
        else:
            assert held <= len(self.holders)
        for agent in core.agents.values():
            callers = sum(
                1 for waiter in self.waiters if waiter.agent_id == agent.agent_id and not waiter.weight
            )
            assert agent._claims == callers

    def teardown(self) -> None:
        """Every holder ends: the waiters all get their turn, and nothing is left held."""
        if self.core is None:
            return
        while self.holders:
            self.end(0)
        assert not self.waiters
        assert self.core.resource.holder_count == 0
        assert self.core.resource.waiter_count == 0
        assert self.store.slots_held("api", self.now + 1e9) == 0


TestCore = CoreMachine.TestCase
TestCore.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_schedulers_refuse_a_store_without_slots(tmp_path: object) -> None:
    store = SQLiteStore(f"{tmp_path}/store.db")
    try:
        resource = SharedResource("api", 2, store=store)
        for scheduler in (LOCOScheduler, AsyncLOCOScheduler):
            with pytest.raises(ConfigurationError, match=r"needs a store with SlotLeaseSupport; SQLiteStore"):
                scheduler(None, resource)
    finally:
        store.close()


def test_a_resource_takes_a_store_or_its_url() -> None:
    assert isinstance(SharedResource("api").store, MemoryStore)
    assert SharedResource("api").store is not SharedResource("api").store  # private by default
    assert isinstance(SharedResource("api", store="memory://").store, MemoryStore)
    with pytest.raises(ConfigurationError, match="store= takes a Store or a URL"):
        SharedResource("api", store=3)  # type: ignore[arg-type]


def test_grants_carry_increasing_fencing_tokens() -> None:
    scheduler = LOCOScheduler(None, SharedResource("api", 2))
    tokens = []
    for _ in range(3):
        with scheduler.acquire("a") as first, scheduler.acquire("b") as second:
            tokens += [first.fencing_token, second.fencing_token]
    assert tokens == sorted(set(tokens))


def test_a_lost_lease_passes_no_slot_the_store_gave_elsewhere() -> None:
    """A holder outlives its lease and another user of the store takes the slot: the waiter waits on."""
    store = MemoryStore()
    store.slot_lease = 5.0
    core = Core(None, SharedResource("api", 1, store=store))
    _, _, token, _ = core._request("a", Task(), 0.0)
    _, _, _, waiter = core._request("b", Task(), 1.0)
    assert waiter is not None
    other = store.acquire_slot("api", 1, "another process", 10.0, 5.0)  # a's lease expired at 5
    assert other is not None
    assert core._release(token, 10.0) is None
    assert (core.resource.holder_count, core.resource.waiter_count, len(core._queue)) == (0, 1, 1)
    store.release_slot("api", other)
    # The next request finds the slot free in the store but b first in the queue: it waits behind b.
    _, _, _, later = core._request("c", Task(), 11.0)
    assert later is not None
