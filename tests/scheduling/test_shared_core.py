"""The scheduler's core over a shared queue (Redis): several cores as processes, driven step by step.

Each core plays one process's scheduler on one ``RedisStore`` (on the caller's
clock), and the state machine plays their drivers and keepers: requests (a
grant at once, or a waiter queued in Redis), ends of work, waiters that give
up, polls, processes killed, time passing. After every step each core's counts
match what its callers hold and wait for, Redis holds at most ``capacity``
leases, no caller waits while a slot is free, no slot is held by no one, and
no fencing token is granted twice; at the end every waiter of a live process
has been served and nothing is left in Redis.
"""

from __future__ import annotations

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from proctor import SharedResource, Task
from proctor.scheduling._core import SchedulerCore, Waiter
from proctor.scheduling._shared import SharedSlots
from proctor.scheduling.grant import Grant
from proctor.stores import RedisStore
from proctor.stores.slot_queue import Grants
from tests import redis_server

PROCESSES = 3
AGENTS = ("a", "b", "c")
LEASE = 6.0


class Core(SchedulerCore[Waiter]):
    """One process's core; grants its keeper would collect go to ``inbox``."""

    _waiter_class = Waiter

    def _delivered(self, grants: Grants) -> None:
        self.inbox.extend(grants)

    inbox: list[tuple[int, int]]


class SharedCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 500.0
        url = redis_server.shared().url
        self.store = RedisStore(url, prefix=redis_server.unique_prefix(), clock="caller", timeout=5.0)
        self.store.slot_lease = self.store.member_lease = LEASE
        self.client = redis.Redis.from_url(url)
        self.capacity = 0
        self.cores: list[Core] = []
        self.holders: list[list[Grant]] = [[] for _ in range(PROCESSES)]
        self.waiters: list[list[Waiter]] = [[] for _ in range(PROCESSES)]
        self.dead: set[int] = set()
        self.dead_tokens: set[int] = set()  # granted to a process after it was killed
        self.tokens: list[int] = []

    def teardown(self) -> None:
        try:
            if self.cores:
                self._drain_to_the_end()
        finally:
            self.client.close()
            self.store.close()

    @rule(capacity=st.integers(1, 2))
    @precondition(lambda self: not self.cores)
    def build(self, capacity: int) -> None:
        self.capacity = capacity
        for _ in range(PROCESSES):
            core = Core(None, SharedResource("api", capacity, store=self.store), alpha=0.5)
            core.inbox = []
            shared = core._shared
            assert isinstance(shared, SharedSlots)
            shared._start = lambda: None  # type: ignore[method-assign]  # the machine is the keeper
            shared.clock = lambda: self.now
            self.cores.append(core)

    def _shared(self, p: int) -> SharedSlots:
        shared = self.cores[p]._shared
        assert shared is not None
        return shared

    def _alive(self) -> list[int]:
        return [p for p in range(len(self.cores)) if p not in self.dead]

    def _deliver(self, p: int, grants: Grants) -> None:
        """What a driver does with grants to process ``p``'s callers."""
        core = self.cores[p]
        while grants:
            orphans = []
            for caller, token in grants:
                self.tokens.append(token)
                if p in self.dead:
                    self.dead_tokens.add(token)
                    continue
                waiter = core._shared_grant(caller, token, self.now)
                if waiter is None:
                    orphans.append(token)
                    continue
                self.waiters[p].remove(waiter)
                self._hold(p, waiter.agent_id, token)
            grants = [g for token in orphans for g in self._shared(p).pass_on(token)]

    def _hold(self, p: int, agent_id: str, token: int) -> None:
        core = self.cores[p]
        self.holders[p].append(Grant(core.get_agent(agent_id), Task(), 0.0, None, core, token))

    def _collect(self) -> None:
        """Each live process's keeper: the grants pushed to it, and those its polls collected. Grants
        pushed to a dead process (to a waiter queued before its death) stay there, their leases unrenewed."""
        _, base = self.store._slot_keys("api")
        for p in range(len(self.cores)):
            shared = self._shared(p)
            if p in self.dead:
                pushed = self.client.lrange(f"{base}K:{shared.member}", 0, -1)
                self.dead_tokens.update(int(message.split()[1]) for message in pushed)
                continue
            grants = self.store.wait_for_grants("api", shared.member, 0.001) if self.waiters[p] else []
            self._deliver(p, grants + self.cores[p].inbox)
            self.cores[p].inbox = []

    @rule(p=st.integers(0, PROCESSES - 1), agent=st.sampled_from(AGENTS), weight=st.sampled_from([1.0, 2.0]))
    @precondition(lambda self: self.cores)
    def request(self, p: int, agent: str, weight: float) -> None:
        if p in self.dead:
            return
        core, shared = self.cores[p], self._shared(p)
        _, _, waiter = core._shared_request(agent, Task(weight=weight), self.now)
        token, grants = shared.request(waiter)
        self._deliver(p, grants)
        if token is None:
            shared.started_waiting(waiter.caller)
            self.waiters[p].append(waiter)
        else:
            assert core._shared_grant(waiter.caller, token, self.now) is waiter
            self.tokens.append(token)
            self._hold(p, agent, token)
        self._collect()

    @rule(data=st.data())
    @precondition(lambda self: any(self.holders[p] for p in self._alive()))
    def end(self, data: st.DataObject) -> None:
        p = data.draw(st.sampled_from([p for p in self._alive() if self.holders[p]]))
        grant = self.holders[p].pop(data.draw(st.integers(0, len(self.holders[p]) - 1)))
        core = self.cores[p]
        core._ended(grant)
        core._shared_unhold(grant.fencing_token)
        self._deliver(p, self._shared(p).pass_on(grant.fencing_token))
        self._collect()

    @rule(data=st.data())
    @precondition(lambda self: any(self.waiters[p] for p in self._alive()))
    def give_up(self, data: st.DataObject) -> None:
        p = data.draw(st.sampled_from([p for p in self._alive() if self.waiters[p]]))
        waiter = self.waiters[p].pop(data.draw(st.integers(0, len(self.waiters[p]) - 1)))
        assert self.cores[p]._shared_leave(waiter)
        self._deliver(p, self._shared(p).withdraw(waiter.caller))
        self._collect()

    @rule(p=st.integers(0, PROCESSES - 1))
    @precondition(lambda self: self.cores)
    def poll(self, p: int) -> None:
        if p not in self.dead:
            self._shared(p)._poll()
            self._collect()

    @rule(p=st.integers(0, PROCESSES - 1))
    @precondition(lambda self: self.cores and len(self.dead) < PROCESSES - 1)
    def kill(self, p: int) -> None:
        """SIGKILL: the process's callers and holders vanish; Redis learns it from leases and deadlines."""
        self.dead.add(p)
        self.dead_tokens.update(grant.fencing_token for grant in self.holders[p])
        self.holders[p].clear()
        self.waiters[p].clear()

    @rule(step=st.sampled_from([0.5, 1.5]))
    def tick(self, step: float) -> None:
        """Time passes, less than a third of a lease: the live processes' keepers poll."""
        self.now += step
        for p in self._alive():
            if self.cores:
                self._shared(p)._poll()
        self._collect()

    @invariant()
    def counts_add_up(self) -> None:
        if not self.cores:
            return
        for p in self._alive():
            resource = self.cores[p].resource
            assert resource.holder_count == len(self.holders[p])
            assert resource.waiter_count == len(self.waiters[p]) == len(self._shared(p).waiting)
            assert self._shared(p).held == {grant.fencing_token for grant in self.holders[p]}
        keys, _ = self.store._slot_keys("api")
        leases = {int(t) for t in self.client.zrange(keys[1], 0, -1)}
        assert len(leases) <= self.capacity  # holders <= capacity, over every process
        live = {grant.fencing_token for p in self._alive() for grant in self.holders[p]}
        assert live <= leases  # renewed while they work: no live holder lost its lease
        assert leases <= live | self.dead_tokens  # no slot held by no one
        if self.client.hlen(keys[4]):
            assert len(leases) == self.capacity  # no caller waits while a slot is free
        assert len(set(self.tokens)) == len(self.tokens)  # no token granted twice

    def _drain_to_the_end(self) -> None:
        """Every live holder ends, and time passes until the dead processes' leases and waiters are gone:
        every waiter of a live process is then served, and Redis holds nothing."""
        for _ in range(100):
            if not any(self.holders[p] or self.waiters[p] for p in self._alive()):
                break
            for p in self._alive():
                while self.holders[p]:
                    grant = self.holders[p].pop()
                    self.cores[p]._ended(grant)
                    self.cores[p]._shared_unhold(grant.fencing_token)
                    self._deliver(p, self._shared(p).pass_on(grant.fencing_token))
            self.tick(1.5)
        assert not any(self.holders[p] or self.waiters[p] for p in self._alive())
        self.now += 2 * LEASE
        assert self.store.slots_held("api", self.now) == 0
        keys, _ = self.store._slot_keys("api")
        assert self.client.hlen(keys[4]) == 0


TestSharedCore = SharedCoreMachine.TestCase
TestSharedCore.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
