"""Fair slots across processes on Redis: the store's queue as a state machine, and schedulers in processes.

The state machine drives ``RedisStore``'s slot scripts directly, as several
processes ("members") would, on the caller's clock: requests, releases,
withdrawals, polls, members that die (stop renewing and polling), and time
passing. A model in Python does what the scripts should; after every step the
Redis keys must match it: holders <= capacity, no caller waits while a slot is
free, every live lease belongs to a holder the model knows (no leaked slot),
fencing tokens only increase, and each slot went to the waiter with the
highest L(i) among every member's waiters (ties to the longest wait).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from proctor import SharedResource, Task
from proctor.errors import StoreError
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler
from proctor.scheduling.fair import Entry, FairQueue
from proctor.stores import RedisStore
from proctor.stores.fallback import fallbacks
from tests import redis_server
from tests.stores import _redis_slot_workers as workers

NAME = "api"
LEASE = 5.0
ALPHA = 0.5
MEMBERS = ("m1", "m2", "m3")
AGENTS = ("a", "b", "c")


class _Waiter:
    __slots__ = ("agent", "arrived", "caller", "member", "seq", "units")

    def __init__(self, member: str, caller: int, agent: str, units: int, arrived: float, seq: int) -> None:
        self.member, self.caller, self.agent = member, caller, agent
        self.units, self.arrived, self.seq = units, arrived, seq

    @property
    def lk(self) -> str:
        return f"{self.member}|{self.caller}"


class QueueMachine(RuleBasedStateMachine):
    """Members request, release, give up, poll and die; the Redis keys follow the model exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.store = RedisStore(
            redis_server.shared().url,
            prefix=redis_server.unique_prefix(),
            clock="caller",
            timeout=5.0,
            slot_lease=LEASE,
        )
        self.client = redis.Redis.from_url(redis_server.shared().url)
        self.keys, self.base = self.store._slot_keys(NAME)
        self.capacity = 1
        self.now = 1000.0
        self.ids = iter(range(1, 10**9))
        self.seq = 0
        self.last_token = 0
        # The store's side, as the model expects it.
        self.leases: dict[int, tuple[float, str]] = {}  # token -> (expiry, holder lk or "-")
        self.granted: dict[str, int] = {}  # lk -> token of a waiter's live lease
        self.queue: dict[str, _Waiter] = {}  # lk -> waiting caller
        self.deadlines: dict[str, float] = {}  # member -> deadline of its callers
        # The members' side.
        self.dead: set[str] = set()
        self.holding: dict[str, set[int]] = {m: set() for m in MEMBERS}  # member -> tokens it holds
        self.waiting: dict[str, dict[int, _Waiter]] = {m: {} for m in MEMBERS}  # what it thinks waits

    def teardown(self) -> None:
        self.client.close()
        self.store.close()

    # The model of the scripts.

    def _prologue(self) -> None:
        for token in [t for t, (expiry, _) in self.leases.items() if expiry <= self.now]:
            self._forget(token)
        for member in [m for m, deadline in self.deadlines.items() if deadline <= self.now]:
            for lk in [lk for lk, w in self.queue.items() if w.member == member]:
                del self.queue[lk]
            del self.deadlines[member]

    def _forget(self, token: int) -> None:
        _, lk = self.leases.pop(token)
        if self.granted.get(lk) == token:
            del self.granted[lk]

    def _take(self, lk: str) -> int:
        token = max(self.last_token + 1, math.floor(self.now * 1_000_000))
        self.last_token = token
        self.leases[token] = (self.now + LEASE, lk)
        if lk != "-":
            self.granted[lk] = token
        return token

    def _best(self) -> _Waiter:
        """The head of the agent with the highest L(i), as the Lua computes it (same float operations)."""
        agents: dict[str, list[_Waiter]] = {}
        for waiter in self.queue.values():
            agents.setdefault(waiter.agent, []).append(waiter)
        rows = []
        for entries in agents.values():
            head = min(entries, key=lambda w: (w.arrived, w.seq))
            rows.append((float(sum(w.units for w in entries)), self.now - head.arrived, head))
        max_depth = max(depth for depth, _, _ in rows)
        max_wait = max(wait for _, wait, _ in rows)
        best: tuple[float, float, int, _Waiter] | None = None
        for depth, wait, head in rows:
            score = 0.0
            if max_depth > 0:
                score = ALPHA * depth / max_depth
            if max_wait > 0:
                score = score + (1 - ALPHA) * wait / max_wait
            key = (score, wait, -head.seq)
            if best is None or key > best[:3]:
                best = (score, wait, -head.seq, head)
        assert best is not None
        return best[3]

    def _grant_free(self) -> list[tuple[str, int, int]]:
        """Free slots to the best waiters: (member, caller, token) in grant order."""
        grants = []
        while len(self.leases) < self.capacity and self.queue:
            waiter = self._best()
            del self.queue[waiter.lk]
            grants.append((waiter.member, waiter.caller, self._take(waiter.lk)))
        return grants

    def _enqueue(self, waiter: _Waiter) -> None:
        if waiter.lk not in self.queue:
            self.seq += 1
            waiter.seq, waiter.arrived = self.seq, self.now
            self.queue[waiter.lk] = waiter

    # Checking what the store did against the model.

    def _delivered(
        self, expected: list[tuple[str, int, int]], returned: list[tuple[int, int]], me: str
    ) -> None:
        """The grants the step made: returned to ``me`` or pushed on the others' wake lists, as expected."""
        actual = [(me, caller, token) for caller, token in returned]
        for member in MEMBERS:
            key = f"{self.base}K:{member}"
            for message in self.client.lrange(key, 0, -1):
                caller, token = message.split()
                actual.append((member, int(caller), int(token)))
            self.client.delete(key)
        assert sorted(actual, key=lambda g: g[2]) == expected  # tokens follow the grant order
        for member, caller, token in expected:
            if member in self.dead:
                continue  # its lease ends unrenewed
            waiter = self.waiting[member].pop(caller)
            assert waiter is not None
            self.holding[member].add(token)

    def _alive(self) -> list[str]:
        return [m for m in MEMBERS if m not in self.dead]

    # The steps.

    @rule(
        calls=st.lists(
            st.tuples(st.sampled_from(MEMBERS), st.sampled_from(AGENTS), st.sampled_from([1.0, 3.0])),
            min_size=1,
            max_size=3,
        ),
        step=st.sampled_from([0.0, 0.25]),
    )
    def request(self, calls: list[tuple[str, str, float]], step: float) -> None:
        for member, agent, weight in calls:
            if member not in self.dead:
                self._request(member, agent, weight)
                self.now += step

    def _request(self, member: str, agent: str, weight: float) -> None:
        caller = next(self.ids)
        token, returned = self.store.wait_for_slot(
            NAME, self.capacity, member, caller, agent, weight, ALPHA, self.now, LEASE
        )
        self._prologue()
        expected = self._grant_free()
        waiter = _Waiter(member, caller, agent, round(weight * 1_000_000), self.now, 0)
        if len(self.leases) < self.capacity:
            assert token == self._take(waiter.lk)
            self.holding[member].add(token)
        else:
            assert token is None
            self.deadlines[member] = self.now + self.store.member_lease
            self._enqueue(waiter)
            self.waiting[member][caller] = waiter
        self._delivered(expected, returned, member)

    @rule(data=st.data())
    @precondition(lambda self: any(self.holding[m] for m in self._alive()))
    def release(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from([m for m in self._alive() if self.holding[m]]))
        token = data.draw(st.sampled_from(sorted(self.holding[member])))
        self.holding[member].discard(token)
        returned = self.store.pass_slot(NAME, member, token, self.now, LEASE)
        self._prologue()
        if token in self.leases:
            self._forget(token)
        self._delivered(self._grant_free(), returned, member)

    @rule(data=st.data())
    @precondition(lambda self: any(self.waiting[m] for m in self._alive()))
    def give_up(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from([m for m in self._alive() if self.waiting[m]]))
        caller = data.draw(st.sampled_from(sorted(self.waiting[member])))
        waiter = self.waiting[member].pop(caller)
        returned = self.store.withdraw_slot_waiter(NAME, member, caller, self.now, LEASE)
        self._prologue()
        if waiter.lk in self.queue:
            del self.queue[waiter.lk]
        elif waiter.lk in self.granted:  # never for a caller the member still thinks waits
            self._forget(self.granted[waiter.lk])
        self._delivered(self._grant_free(), returned, member)

    @rule(member=st.sampled_from(MEMBERS))
    def poll(self, member: str) -> None:
        if member in self.dead:
            return
        held = sorted(self.holding[member])
        waiting = [(w.caller, w.agent, w.units / 1_000_000) for w in self.waiting[member].values()]
        renewed, returned, expiry = self.store.poll_slots(NAME, member, held, waiting, self.now, LEASE)
        self._prologue()
        assert renewed == [token in self.leases for token in held]
        for token in held:
            if token in self.leases:
                self.leases[token] = (self.now + LEASE, self.leases[token][1])
            else:
                self.holding[member].discard(token)  # its lease ended: the member stalled past it
        if waiting:
            self.deadlines[member] = self.now + self.store.member_lease
        for waiter in self.waiting[member].values():
            if waiter.lk not in self.queue and waiter.lk not in self.granted:
                self._enqueue(waiter)  # the queue lost it (its member was late to poll): queued again
        self._delivered(self._grant_free(), returned, member)
        finite = [expiry for expiry, _ in self.leases.values()]
        assert expiry == (pytest.approx(min(finite) - self.now) if finite else None)

    @rule(member=st.sampled_from(MEMBERS))
    @precondition(lambda self: len(self.dead) < len(MEMBERS) - 1)
    def kill(self, member: str) -> None:
        """The member's process is killed with SIGKILL: it never releases, renews nor polls again."""
        self.dead.add(member)

    @rule(step=st.sampled_from([0.0, 0.5, 2.0, 6.0]))
    def tick(self, step: float) -> None:
        self.now += step

    @rule()
    def look(self) -> None:
        """Any store call reaps and grants; slots_held is the one a person makes."""
        held = self.store.slots_held(NAME, self.now)
        self._prologue()
        self._delivered(self._grant_free(), [], "")
        assert held == len(self.leases)

    @invariant()
    def redis_matches_the_model(self) -> None:
        S, H, _, G, E, _, _ = self.keys
        leases = {int(token): expiry for token, expiry in self.client.zrange(H, 0, -1, withscores=True)}
        assert leases == {token: expiry for token, (expiry, _) in self.leases.items()}
        assert len(leases) <= self.capacity  # holders <= capacity
        queued = {lk.decode() for lk in self.client.hkeys(E)}
        assert queued == set(self.queue)
        if queued:  # no stranded waiter: nobody waits while a slot is free
            assert len(leases) == self.capacity
        assert {lk.decode(): int(t) for lk, t in self.client.hgetall(G).items()} == self.granted
        # No leaked slot: every live lease is one a member holds, or a dead member's until it expires.
        known = {token for member in MEMBERS for token in self.holding[member]}
        for token, (_, lk) in self.leases.items():
            assert token in known or lk.split("|")[0] in self.dead
        last = self.client.hget(S, "last")
        assert int(last or 0) == self.last_token  # tokens only increase: each is the new maximum


TestQueue = QueueMachine.TestCase
TestQueue.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)


@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from((*AGENTS, "d")),
            st.sampled_from([1.0, 2.0, 3.0]),
            st.sampled_from([0.0, 0.5, 1.0]),
        ),
        min_size=2,
        max_size=8,
    ),
    alpha=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
)
@settings(max_examples=25, deadline=None)
def test_slots_go_in_the_order_fair_queue_gives_in_one_process(
    calls: list[tuple[str, float, float]], alpha: float
) -> None:
    """Waiters of several members, released one by one: the same order as FairQueue's in one process."""
    store = RedisStore(
        redis_server.shared().url, prefix=redis_server.unique_prefix(), clock="caller", timeout=5.0
    )
    queue: FairQueue[Entry] = FairQueue(alpha)
    now = 100.0
    token, _ = store.wait_for_slot(NAME, 1, "holder", 0, "holder", 1.0, alpha, now, 60.0)
    assert token is not None
    callers = {}
    for n, (agent, weight, step) in enumerate(calls, start=1):
        now += step
        member = MEMBERS[n % len(MEMBERS)]
        assert store.wait_for_slot(NAME, 1, member, n, agent, weight, alpha, now, 60.0)[0] is None
        entry = Entry(agent, weight, now)
        queue.push(entry)
        callers[member, n] = entry
    client = redis.Redis.from_url(redis_server.shared().url)
    _, base = store._slot_keys(NAME)
    now += 2.0
    order, expected = [], []
    member = "holder"
    while queue:
        expected.append(queue.pop(now))
        returned = store.pass_slot(NAME, member, token, now, 60.0)
        grants = [(member, caller, t) for caller, t in returned]
        for other in MEMBERS:
            grants += [(other, *map(int, m.split())) for m in client.lrange(f"{base}K:{other}", 0, -1)]
            client.delete(f"{base}K:{other}")
        ((member, caller, token),) = grants
        order.append(callers[member, caller])
    assert order == expected
    client.close()
    store.close()


# Schedulers in processes.


@pytest.fixture
def url(redis_server_url: str) -> str:
    return f"{redis_server_url}?prefix={redis_server.unique_prefix()}&timeout=5"


def _spawn(target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def _until(condition: Any, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds}s"
        time.sleep(0.01)


@pytest.fixture
def processes() -> Iterator[list[multiprocessing.process.BaseProcess]]:
    started: list[multiprocessing.process.BaseProcess] = []
    yield started
    for process in started:
        process.kill()
        process.join(30)


def test_a_release_wakes_the_highest_score_waiter_in_another_process(
    url: str, tmp_path: Path, processes: list[multiprocessing.process.BaseProcess]
) -> None:
    """alpha 0.5: a heavy task queued in another process just after a light one here goes first."""
    go, ready, granted = tmp_path / "go", tmp_path / "ready", tmp_path / "granted"
    processes.append(_spawn(workers.wait_heavy, url, NAME, str(tmp_path)))
    _until((tmp_path / "started").exists, "the other process")
    resource = SharedResource(NAME, 1, store=url)
    here = LOCOScheduler(None, resource, alpha=0.5)
    holder = here.acquire_start("holder")
    light_granted = threading.Event()

    def wait_light() -> None:
        with here.acquire("light", timeout=60):
            light_granted.set()

    light = threading.Thread(target=wait_light)
    light.start()
    _until(lambda: resource.waiter_count == 1, "light waiter")
    go.touch()  # the heavy one queues now, a few milliseconds after the light one
    _until(ready.exists, "heavy waiter in the other process")
    time.sleep(0.3)  # L(heavy) = 0.5 * 5/5 + 0.5 * ~0.97 against L(light) = 0.5 * 1/5 + 0.5 * 1
    here.release_handle(holder)
    _until(granted.exists, "grant to the heavy waiter")
    assert not light_granted.is_set()  # the other process's waiter went first, ahead of the earlier one
    light.join(60)
    assert light_granted.is_set()  # and the light one followed when it released
    assert here.shutdown(5) == {"cancelled_waiters": 0, "active_holders": 0}


def test_a_killed_holders_slot_comes_back_after_its_lease(
    url: str, tmp_path: Path, processes: list[multiprocessing.process.BaseProcess]
) -> None:
    lease = 1.0
    ready = tmp_path / "ready"
    processes.append(_spawn(workers.hold_and_hang, f"{url}&slot_lease={lease}", NAME, str(ready)))
    _until(ready.exists, "holder")
    scheduler = LOCOScheduler(None, SharedResource(NAME, 1, store=f"{url}&slot_lease={lease}"))
    with pytest.raises(TimeoutError):  # held, and renewed past its lease
        scheduler.acquire("b", timeout=1.5).__enter__()
    waiting = threading.Thread(target=lambda: scheduler.release_handle(scheduler.acquire_start("c")))
    waiting.start()
    _until(lambda: scheduler.resource.waiter_count == 1, "waiter")
    os.kill(processes[0].pid or 0, signal.SIGKILL)
    killed = time.monotonic()
    waiting.join(30)
    back = time.monotonic() - killed
    assert not waiting.is_alive()
    assert back < 3 * lease  # within the lease plus a little: loosely, this is behaviour, not timing


def test_four_processes_with_random_kills_keep_the_invariants(
    url: str, tmp_path: Path, processes: list[multiprocessing.process.BaseProcess]
) -> None:
    capacity, lease, seconds = 2, 0.5, 3.0
    store_url = f"{url}&slot_lease={lease}"
    store = RedisStore.from_url(store_url)
    keys, _ = store._slot_keys(NAME)
    client = redis.Redis.from_url(url.partition("?")[0])
    sample = client.register_script(
        "return {redis.call('ZCARD', KEYS[1]), redis.call('HLEN', KEYS[2]), "
        "redis.call('HGET', KEYS[3], 'last')}"
    )
    outputs = [tmp_path / f"w{n}.txt" for n in range(4)]
    for n, output in enumerate(outputs):  # two with threads, two with asyncio tasks
        churn = workers.churn if n % 2 else workers.churn_async
        processes.append(_spawn(churn, store_url, NAME, capacity, seconds, str(output)))
    rng = random.Random(12)
    victims = [rng.choice([0, 2]), rng.choice([1, 3])]  # one asyncio process, one threaded
    rng.shuffle(victims)
    members = [Path(f"{output}.member") for output in outputs]
    _until(lambda: all(member.exists() for member in members), "workers")
    for output in outputs:
        Path(f"{output}.go").touch()
    started = time.monotonic()
    kill_at = {victims[0]: 0.5, victims[1]: 1.2}  # seconds into the run, once the victim holds a slot
    killed_holding = []
    samples = 0
    last = after_kills = 0
    while any(p.is_alive() for p in processes):
        held, queued, token = sample(keys=[keys[1], keys[4], keys[0]])
        samples += 1
        assert held <= capacity  # never more holders than slots, across every process
        if queued:
            assert held == capacity  # no one waits while a slot is free
        assert int(token or 0) >= last  # fencing tokens only increase
        last = int(token or 0)
        for n, at in list(kill_at.items()):
            member = members[n].read_text()
            holders = [holder.decode() for holder in client.hvals(keys[2])]
            if time.monotonic() - started >= at and any(h.startswith(member + "|") for h in holders):
                os.kill(processes[n].pid or 0, signal.SIGKILL)  # a holder, killed
                killed_holding.append(n)
                del kill_at[n]
                after_kills = last
        time.sleep(0.005)
    assert sorted(killed_holding) == sorted(victims)
    survivors = [n for n in range(4) if n not in victims]
    for n in survivors:
        assert processes[n].exitcode == 0
        grants = [int(line) for line in outputs[n].read_text().split()]
        assert len(grants) == len(set(grants))  # no token granted twice
        assert sum(token > after_kills for token in grants) > 5  # each went on getting slots after the kills
    # Once the dead holders' leases (and their waiters' deadlines) are over, nothing is left.
    time.sleep(lease + 0.2)
    assert store.slots_held(NAME, 0.0) == 0  # no leaked slot
    assert client.hlen(keys[4]) == 0  # no stranded waiter
    assert samples > 50
    store.close()
    client.close()


# The asyncio driver over Redis.


def test_the_event_loop_runs_while_the_store_is_paused(own_redis: redis_server.RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout=5.0)
    scheduler = AsyncLOCOScheduler(None, SharedResource(NAME, 1, store=store))

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        async with scheduler.acquire("a"):
            pass
        assert own_redis.command("CLIENT", "PAUSE", "500", "ALL").startswith(b"+OK")
        before = ticks
        async with scheduler.acquire("a") as grant:  # waits for Redis in the slot thread, not on the loop
            assert grant.fencing_token > 0
        during = ticks - before
        ticking.cancel()
        await scheduler.shutdown(5)
        return during

    assert asyncio.run(main()) >= 10
    store.close()


def test_async_schedulers_share_one_capacity(url: str) -> None:
    async def main() -> int:
        schedulers = [AsyncLOCOScheduler(None, SharedResource(NAME, 2, store=store)) for store in stores]
        active = peak = 0

        async def work(n: int) -> None:
            nonlocal active, peak
            for _ in range(10):
                async with schedulers[n % 2].acquire(f"agent{n}", Task(), timeout=30):
                    active += 1
                    peak = max(peak, active)
                    await asyncio.sleep(0.001)
                    active -= 1

        await asyncio.gather(*(work(n) for n in range(6)))
        for scheduler in schedulers:
            assert await scheduler.shutdown(5) == {"cancelled_waiters": 0, "active_holders": 0}
        return peak

    stores = [RedisStore.from_url(url) for _ in "ab"]
    assert asyncio.run(main()) == 2
    for store in stores:
        store.close()


def test_an_async_request_cancelled_in_flight_leaves_nothing_behind(
    own_redis: redis_server.RedisServer,
) -> None:
    """Cancelled while Redis is paused: the request runs on when it resumes, and the withdrawal after it."""
    store = RedisStore(own_redis.url, timeout=5.0)
    resource = SharedResource(NAME, 1, store=store)
    scheduler = AsyncLOCOScheduler(None, resource)

    async def main() -> None:
        async with scheduler.acquire("warm-up"):
            pass
        assert own_redis.command("CLIENT", "PAUSE", "300", "ALL").startswith(b"+OK")
        task = asyncio.create_task(scheduler.acquire("a").__aenter__())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # the pause is over: the request (a grant) and its withdrawal have run
        assert (resource.holder_count, resource.waiter_count) == (0, 0)
        assert store.slots_held(NAME, 0.0) == 0  # the slot granted to the cancelled caller was passed on
        async with scheduler.acquire("b") as grant:
            assert grant.fencing_token > 0
        assert await scheduler.shutdown(5) == {"cancelled_waiters": 0, "active_holders": 0}

    asyncio.run(main())
    store.close()


def test_queued_tasks_are_served_in_order_over_redis(url: str) -> None:
    """``submit_task`` then ``acquire(agent)``: a waiting caller serves the oldest queued task."""
    store = RedisStore.from_url(url)
    scheduler = LOCOScheduler(None, SharedResource(NAME, 1, store=store))
    tasks = [Task(weight=w) for w in (2.0, 1.0, 3.0)]
    for task in tasks:
        scheduler.submit_task("a", task)
    served = []
    holder = scheduler.acquire_start("other")

    def serve() -> None:
        with scheduler.acquire("a", timeout=30) as grant:
            served.append(grant.task)

    threads = [threading.Thread(target=serve) for _ in tasks]
    for thread in threads:
        thread.start()
    _until(lambda: scheduler.resource.waiter_count == 3, "three waiting callers")
    scheduler.release_handle(holder)
    for thread in threads:
        thread.join(30)
    assert served == tasks  # each caller served the oldest task left, in turn
    agent = scheduler.get_agent("a")
    assert (agent._claims, len(agent._queued), agent.stats.granted) == (0, 0, 3)
    assert scheduler.shutdown(5) == {"cancelled_waiters": 0, "active_holders": 0}
    store.close()


# When the store fails.


def test_a_failing_store_raises_or_grants_from_the_local_share(own_redis: redis_server.RedisServer) -> None:
    stores = [RedisStore(own_redis.url), RedisStore(own_redis.url)]
    closed = LOCOScheduler(None, SharedResource("closed", 3, store=stores[0]))
    shared = SharedResource("shared", 3, store=stores[1], on_store_error="local_share", processes=3)
    local = LOCOScheduler(None, shared)
    with closed.acquire("a") as grant:
        assert grant.fencing_token > 0
    own_redis.stop()
    before = fallbacks()
    with pytest.raises(StoreError):
        closed.acquire("a").__enter__()
    with local.acquire("a") as grant:
        assert grant.fencing_token == 0  # a slot of this process's share, fenced by nothing
        assert shared.holder_count == 1
        with pytest.raises(TimeoutError):  # 3 // 3 processes: the only one
            local.acquire("b", timeout=0.05).__enter__()
    after = fallbacks()
    assert after.get(("slot", "closed"), 0) - before.get(("slot", "closed"), 0) == 1
    assert after.get(("slot", "local_share"), 0) - before.get(("slot", "local_share"), 0) == 2
    own_redis.start()
    time.sleep(0.6)  # past the probe interval: the next call tries the store again
    with local.acquire("a") as grant:
        assert grant.fencing_token > 0
    assert local.shutdown(5)["active_holders"] == 0
    assert closed.shutdown(5)["active_holders"] == 0
    for store in stores:
        store.close()


@pytest.fixture
def own_redis() -> Iterator[redis_server.RedisServer]:
    server = redis_server.RedisServer()
    yield server
    server.close()


def test_async_requests_raise_or_use_the_local_share_when_the_store_fails(
    own_redis: redis_server.RedisServer,
) -> None:
    stores = [RedisStore(own_redis.url), RedisStore(own_redis.url)]
    closed = AsyncLOCOScheduler(None, SharedResource("closed", 2, store=stores[0]))
    local = AsyncLOCOScheduler(
        None, SharedResource("local", 2, store=stores[1], on_store_error="local_share", processes=2)
    )
    own_redis.stop()

    async def main() -> None:
        with pytest.raises(StoreError):
            async with closed.acquire("a"):
                pass
        async with local.acquire("a") as grant:
            assert grant.fencing_token == 0
            with pytest.raises(TimeoutError):
                async with local.acquire("b", timeout=0.05):
                    pass
        async with local.acquire("b") as grant:  # the local slot came back
            assert grant.fencing_token == 0
        for scheduler in (closed, local):
            assert await scheduler.shutdown(5) == {"cancelled_waiters": 0, "active_holders": 0}

    asyncio.run(main())
    for store in stores:
        store.close()
