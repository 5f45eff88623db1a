"""Budgets and rate limits while their Redis is stopped, paused or losing replies, and after it is back.

Every test runs on a redis-server of its own (tests/redis_server.py) that it
stops (SIGSTOP, SIGTERM) or pauses (``CLIENT PAUSE``), or behind a relay on
loopback (tests/stores/_relay.py) that cuts the line or loses replies. The
policies follow their ``on_store_error``; each decision comes back within a
generous bound (2 s, for a 50 ms store timeout); and once Redis answers again
its totals are exactly what was granted: nothing counted twice, nothing lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from proctor import (
    BudgetPolicy,
    Outcome,
    PolicyEnforcer,
    PolicyViolationError,
    RatePolicy,
    Status,
    Task,
    runlog,
)
from proctor._numbers import to_units
from proctor.errors import ConfigurationError, PolicyConfigError, StoreError
from proctor.guard import _ledgers
from proctor.policy.daily import DailySpend
from proctor.policy.enforcer import Admission
from proctor.rules import parse_policies
from proctor.stores import RedisStore, set_store
from proctor.stores.fallback import StoreHealth, fallbacks, health_of
from tests import redis_server
from tests.stores._relay import Relay

TIMEOUT = 0.25
"""Seconds the tests' stores wait for Redis: more than the default 50 ms, for a busy test machine."""

BOUND = 2.0
"""Seconds any decision may take while the store is down: generous, for a store timeout of 0.25 s."""


@pytest.fixture
def server() -> Iterator[redis_server.RedisServer]:
    """A redis-server of this test alone, which it may stop, pause or restart."""
    built = redis_server.RedisServer()
    yield built
    if built.process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(built.process.pid, signal.SIGCONT)
    built.close()


def redis_store(url: str, timeout: float = TIMEOUT) -> RedisStore:
    """A store on the caller's clock, tried again at once when down (no test waits for a probe)."""
    store = RedisStore(url, prefix=redis_server.unique_prefix(), clock="caller", timeout=timeout)
    health_of(store).probe_interval = 0.0
    return store


@contextlib.contextmanager
def stopped(server: redis_server.RedisServer) -> Iterator[None]:
    """The server's process stopped (SIGSTOP): connections stay open and nothing answers."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert server.ping()  # answering again, after what it received while stopped


def timed(decide: Callable[[], object]) -> tuple[str, float]:
    """How one decision ended (granted, refused, store_error) and how long it took."""
    started = time.monotonic()
    try:
        decide()
        ended = "granted"
    except PolicyViolationError:
        ended = "refused"
    except StoreError:
        ended = "store_error"
    return ended, time.monotonic() - started


def counted(before: dict[tuple[str, str], int], kind: str, mode: str) -> int:
    return fallbacks().get((kind, mode), 0) - before.get((kind, mode), 0)


def ledger(store: RedisStore, key: str, *, later: float = 0.0) -> tuple[int, int]:
    """Spent and reserved of ``key`` as Redis holds them ``later`` seconds from now (window 0: no period).

    A reserve that timed out may still have run (the server had the command): its lease, whose id
    the caller never got, holds its amount until it expires. Past every lease, none is left.
    """
    return store.get(key, 0, time.time() + later)


PAST_LEASES = 1000.0
"""Seconds past every lease of these tests."""


# Budgets fail closed by default.


def test_a_budget_fails_closed_while_redis_is_stopped_and_counts_on_when_it_continues(
    server: redis_server.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = redis_store(server.url)
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=100.0, store=store)])
    for _ in range(3):
        enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 1.0))
    before = fallbacks()
    with caplog.at_level(logging.WARNING, logger="proctor.stores.fallback"), stopped(server):
        results = [timed(lambda: enforcer.admit("a", Task(cost=1.0))) for _ in range(10)]
    assert {ended for ended, _ in results} == {"store_error"}
    assert max(took for _, took in results) < BOUND
    assert counted(before, "budget", "closed") == 10
    warnings = [record for record in caplog.records if record.name == "proctor.stores.fallback"]
    assert len(warnings) == 1  # one warning for the outage, none per call
    assert "is unreachable" in warnings[0].getMessage()
    enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 1.0))  # back
    assert not health_of(store).down
    spent, reserved = ledger(store, "budget:a")
    assert spent == to_units(4.0)  # the 3 calls before the outage and the one after, once each
    assert reserved <= to_units(1.0)  # at most the reserve sent as the server stopped, left to expire
    assert ledger(store, "budget:a", later=PAST_LEASES) == (to_units(4.0), 0)
    store.close()


def test_a_budget_between_probes_refuses_at_once_without_waiting_for_the_store(
    server: redis_server.RedisServer,
) -> None:
    store = redis_store(server.url)
    health = health_of(store)
    health.probe_interval = 60.0
    budget = BudgetPolicy(default_limit=10.0, store=store)
    with stopped(server):
        for _ in range(2):  # the call that finds out, and the next one, which tries at once
            with pytest.raises(StoreError, match="did not answer within"):
                budget.admit("a", Task(cost=1.0))
        with pytest.raises(StoreError, match=r"is down, so budget 'budget' refuses calls"):
            budget.admit("a", Task(cost=1.0))
    store.close()


# Settles of reservations made before the outage.


def test_settles_made_while_redis_is_stopped_count_once_when_it_continues(
    server: redis_server.RedisServer,
) -> None:
    store = redis_store(server.url)
    budget = BudgetPolicy(default_limit=10.0, store=store)
    enforcer = PolicyEnforcer([budget])
    admissions = [enforcer.admit("a", Task(cost=2.0)) for _ in range(4)]
    assert ledger(store, "budget:a") == (0, to_units(8.0))
    with stopped(server):
        for admission, actual in zip(admissions[:3], (1.0, 1.5, 0.25), strict=True):
            ended, took = timed(lambda a=admission, c=actual: enforcer.settle(a, Outcome(Status.SUCCESS, c)))
            assert (ended, took < BOUND) == ("granted", True)  # a settle never raises: it waits
        ended, took = timed(lambda: enforcer.withdraw(admissions[3]))
        assert (ended, took < BOUND) == ("granted", True)
        assert health_of(store).pending == 4
    enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 1.0))  # finds it back
    assert health_of(store).pending == 0
    assert ledger(store, "budget:a") == (to_units(3.75), 0)
    for admission in admissions[:3]:  # settling again changes nothing
        budget.settle("a", admission.task, admission.decisions[0], Outcome(Status.SUCCESS, 9.0))
    assert ledger(store, "budget:a") == (to_units(3.75), 0)
    store.close()


def test_a_settle_whose_reply_was_lost_is_retried_and_counts_once(server: redis_server.RedisServer) -> None:
    """The settle ran in Redis but its caller timed out: the retry finds the lease settled."""
    relay = Relay(server.port)
    store = redis_store(relay.url)
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=10.0, store=store)])
    try:
        enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 0.0))  # scripts loaded
        admission = enforcer.admit("a", Task(cost=2.0))
        relay.mode = "lose_replies"  # (a script the server did not know would not run: NOSCRIPT)
        enforcer.settle(admission, Outcome(Status.SUCCESS, 1.5))
        assert health_of(store).down
        assert health_of(store).pending == 1
        relay.mode = "up"
        direct = RedisStore(server.url, prefix=store.prefix, clock="caller")
        assert ledger(direct, "budget:a") == (to_units(1.5), 0)  # it did run
        enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 1.0))
        assert health_of(store).pending == 0
        assert ledger(direct, "budget:a") == (to_units(2.5), 0)  # 1.5 once, then 1.0
        direct.close()
    finally:
        store.close()
        relay.close()


def test_cost_today_fails_closed_and_its_holds_settle_once_when_redis_continues(
    server: redis_server.RedisServer,
) -> None:
    store = redis_store(server.url)
    clock = [datetime.now().replace(hour=12, minute=0).timestamp()]  # noon: the day lasts the test
    daily = DailySpend(store, clock=lambda: clock[0])
    before = fallbacks()
    holds = [daily.hold("svc", 1.0) for _ in range(2)]
    with stopped(server):
        ended, took = timed(lambda: daily.decide("svc", None, 1.0, lambda spent: True))
        assert (ended, took < BOUND) == ("store_error", True)
        holds[0].settle(0.75)  # waits for the store
        assert health_of(store).pending == 1
    assert counted(before, "budget", "closed") == 1
    holds[1].settle(0.5)  # finds the store back: both settle, once
    assert health_of(store).pending == 0
    assert 1.25 <= daily.spent("svc") <= 2.25  # spent, and the hold sent as the server stopped, if it ran
    clock[0] += PAST_LEASES
    assert daily.spent("svc") == pytest.approx(1.25)  # 0.75 and 0.5, once each
    store.close()


# An open budget: allowed unchecked, written once on the store's return.


def test_an_open_budget_lets_calls_run_and_writes_their_spend_once_on_return(
    server: redis_server.RedisServer,
) -> None:
    relay = Relay(server.port)
    store = redis_store(relay.url)
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=3.0, store=store, on_store_error="open")])
    before = fallbacks()
    try:
        enforcer.settle(enforcer.admit("a", Task(cost=1.0)), Outcome(Status.SUCCESS, 1.0))
        relay.cut()
        outage = [enforcer.admit("a", Task(cost=1.0)) for _ in range(4)]  # past the limit: unchecked
        assert all("allowed unchecked" in admission.decisions[0].detail for admission in outage)
        for admission in outage:
            enforcer.settle(admission, Outcome(Status.SUCCESS, 0.5))
        assert counted(before, "budget", "open") == 4
        assert health_of(store).pending == 4
        relay.mode = "up"
        enforcer.settle(enforcer.admit("a", Task(cost=0.5)), Outcome(Status.SUCCESS, 0.0))  # finds it back
        assert health_of(store).pending == 0
        assert ledger(store, "budget:a") == (to_units(3.0), 0)  # 1.0, then 4 x 0.5 written once
        with pytest.raises(PolicyViolationError):  # the limit of 3 holds again
            enforcer.admit("a", Task(cost=0.5))
    finally:
        store.close()
        relay.close()


# Rate limits: closed by default, or a local share.


def test_a_rate_limit_falls_back_to_its_local_share_while_redis_is_down_and_charges_nothing_after(
    server: redis_server.RedisServer,
) -> None:
    clock = [0.0]
    store = redis_store(server.url)
    rate = RatePolicy(
        default_limit=8.0,
        period=600.0,
        store=store,
        clock=lambda: clock[0],
        on_store_error="local_share",
        processes=2,
    )
    closed = RatePolicy(
        default_limit=8.0, period=60.0, store=store, namespace="closed", clock=lambda: clock[0]
    )
    before = fallbacks()
    for _ in range(8):
        assert rate.admit("a", Task()).reservation == 1.0  # the whole shared bucket
    assert server.command("CONFIG", "SET", "save", "3600 1").startswith(b"+OK")  # kept over SIGTERM
    server.stop()
    with pytest.raises(StoreError, match="cannot reach"):
        closed.admit("a", Task())
    results = [timed(lambda: rate.admit("a", Task()))]  # the share starts empty
    clock[0] += 150.0  # this process's share: 4 per 600 s, one every 150 s
    results += [timed(lambda: rate.admit("a", Task())) for _ in range(2)]
    clock[0] += 300.0
    results += [timed(lambda: rate.admit("a", Task())) for _ in range(3)]
    assert [ended for ended, _ in results] == [
        "refused",
        "granted",
        "refused",
        "granted",
        "granted",
        "refused",
    ]
    assert max(took for _, took in results) < BOUND
    assert counted(before, "rate", "local_share") == 6
    assert counted(before, "rate", "closed") == 1
    with pytest.raises(PolicyViolationError, match="this process's share of the rate limit, 4 per 600s"):
        rate.admit("a", Task())
    server.start()  # the same port, the bucket read back from disk
    assert rate.admit("a", Task()).reservation == 1.0
    assert not health_of(store).down
    # The shared bucket was empty, refilled 8 per 600 s for 450 s, and gave one since: nothing of what
    # the local share gave is charged to it.
    assert store.peek("rate:a", 8.0, 8.0 / 600.0, clock[0]) == pytest.approx(5.0)
    store.close()


def test_a_token_of_the_local_share_goes_back_when_a_later_policy_fails_closed(
    server: redis_server.RedisServer,
) -> None:
    clock = [0.0]
    relay = Relay(server.port)
    store = redis_store(relay.url)
    rate = RatePolicy(
        default_limit=4.0,
        period=4.0,
        store=store,
        clock=lambda: clock[0],
        on_store_error="local_share",
        processes=2,
    )
    enforcer = PolicyEnforcer([rate, BudgetPolicy(default_limit=10.0, store=store)])
    try:
        relay.cut()
        with pytest.raises(PolicyViolationError):  # the share starts empty
            rate.admit("a", Task())
        clock[0] += 4.0  # a share of 2 per 4 s: full
        for _ in range(3):
            with pytest.raises(StoreError):  # the budget fails closed; the token goes back
                enforcer.admit("a", Task(cost=1.0))
        assert [rate.admit("a", Task()).reservation for _ in range(2)] == ["local", "local"]
        with pytest.raises(PolicyViolationError):
            rate.admit("a", Task())
    finally:
        store.close()
        relay.close()


def test_a_rate_limit_refuses_when_the_share_leaves_less_than_one_call() -> None:
    with pytest.raises(ConfigurationError, match="needs processes=N"):
        RatePolicy(default_limit=4.0, on_store_error="local_share")
    with pytest.raises(ConfigurationError, match="goes with on_store_error='local_share'"):
        RatePolicy(default_limit=4.0, processes=2)
    with pytest.raises(ConfigurationError, match="less than one call per period"):
        RatePolicy({"a": 3.0}, on_store_error="local_share", processes=4)
    with pytest.raises(ConfigurationError, match="on_store_error must be"):
        RatePolicy(default_limit=4.0, on_store_error="open")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_store_error must be 'closed'"):
        BudgetPolicy(1.0, on_store_error="local_share")  # type: ignore[arg-type]


# CLIENT PAUSE in the middle of traffic, from several threads.


def test_client_pause_in_the_middle_of_traffic(server: redis_server.RedisServer) -> None:
    store = redis_store(server.url)
    closed = PolicyEnforcer([BudgetPolicy(default_limit=1e6, store=store)])
    opened = PolicyEnforcer([BudgetPolicy(default_limit=1e6, store=store, on_store_error="open")])
    rate = RatePolicy(
        default_limit=1000.0,
        period=1e6,
        store=store,
        clock=lambda: 0.0,
        on_store_error="local_share",
        processes=4,
    )
    lock = threading.Lock()
    granted = {"closed": 0, "open": 0, "rate_shared": 0, "rate_local": 0}
    ends: list[str] = []
    slowest = [0.0]
    stop = threading.Event()

    def budget_call(enforcer: PolicyEnforcer, which: str) -> None:
        admission = enforcer.admit("a", Task(cost=1.0))
        enforcer.settle(admission, Outcome(Status.SUCCESS, 1.0))
        with lock:
            granted[which] += 1

    def rate_call() -> None:
        decision = rate.admit("a", Task())
        with lock:
            granted["rate_shared" if decision.reservation == 1.0 else "rate_local"] += 1

    def traffic() -> None:
        while not stop.is_set():
            for call in (
                lambda: budget_call(closed, "closed"),
                lambda: budget_call(opened, "open"),
                rate_call,
            ):
                ended, took = timed(call)
                with lock:
                    ends.append(ended)
                    slowest[0] = max(slowest[0], took)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert server.command("CLIENT", "PAUSE", "700", "ALL").startswith(b"+OK")
    time.sleep(1.2)  # past the pause: traffic goes on on the store
    stop.set()
    for thread in threads:
        thread.join(30)
    assert "store_error" in ends
    assert "granted" in ends
    assert slowest[0] < BOUND
    opened.settle(opened.admit("a", Task(cost=0.0)), Outcome(Status.SUCCESS, 0.0))  # writes what waits
    assert health_of(store).pending == 0
    # Exactly what was granted, once: closed grants all came from Redis, open ones were written on return.
    spent_closed, _ = ledger(store, "budget:a")
    assert spent_closed == to_units(granted["closed"] + granted["open"])  # both budgets share the namespace
    assert granted["rate_local"] == 0  # the local share starts empty and this clock never refills it
    assert rate.remaining("a") == 1000 - granted["rate_shared"]
    store.close()


# A policy file's limits take the option too.


def test_a_policy_files_rate_limit_falls_back_to_its_share(
    server: redis_server.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process whose rules never read cost_today (an earlier test's did: from then on every call keeps
    # spend for it, and cost_today fails closed while Redis is down).
    monkeypatch.setattr(_ledgers, "reads_daily", False)
    store = redis_store(server.url)
    set_store(store)
    policies = {
        "rate_limits": [
            {"id": "calls", "limit": 60, "period": "second", "on_store_error": "local_share", "processes": 2}
        ],
        "budgets": [{"id": "spend", "limit": 100.0, "on_store_error": "open"}],
    }
    ran: list[int] = []

    @runlog(service="svc", cost=1.0, policies=policies, record=False)
    def call(n: int) -> None:
        ran.append(n)

    before = fallbacks()
    try:
        call(0)
        with stopped(server):
            first = timed(lambda: call(1))  # the local share starts empty
            time.sleep(0.1)  # and refills at 30 per second
            second = timed(lambda: call(2))
        assert [ended for ended, _ in (first, second)] == ["refused", "granted"]
        assert max(took for _, took in (first, second)) < BOUND
        assert ran == [0, 2]
        assert counted(before, "rate", "local_share") == 2
        assert counted(before, "budget", "open") == 1
        call(3)  # back: the open call's spend is written
        [key] = store.keys("proctor.budgets:spend:")
        assert ledger(store, key) == (to_units(3.0), 0)
    finally:
        set_store(None)
        store.close()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{id: r, limit: 60, on_store_error: local_share}", "needs processes"),
        ("{id: r, limit: 60, processes: 2}", "processes goes with on_store_error: local_share"),
        ("{id: r, limit: 3, on_store_error: local_share, processes: 4}", "less than one call per period"),
        ("{id: r, limit: 60, on_store_error: open}", "'closed' or 'local_share'"),
    ],
)
def test_a_policy_file_says_where_its_store_error_option_is_wrong(entry: str, problem: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_policies(f"rate_limits:\n  - {entry}\n", "limits.yaml")
    messages = [f"{location}: {message}" for location, message in caught.value.problems]
    assert any(message.startswith("limits.yaml:2:") and problem in message for message in messages), messages


# Random outages, as a state machine: the ledger in Redis is exact once it answers.


class OpenBudgetThroughOutages(RuleBasedStateMachine):
    """An open budget whose Redis is cut, loses replies or answers, at random between calls."""

    def __init__(self) -> None:
        super().__init__()
        self.server = redis_server.shared()
        self.relay = Relay(self.server.port)
        self.store = redis_store(self.relay.url, timeout=0.1)
        self.direct = RedisStore(self.server.url, prefix=self.store.prefix, clock="caller", timeout=5.0)
        self.enforcer = PolicyEnforcer(
            [BudgetPolicy(default_limit=5.0, store=self.store, on_store_error="open")]
        )
        self.admissions: list[Admission] = []
        self.settled = 0  # units of the calls settled, all of which count once

    @rule(cost=st.integers(1, 3))
    def admit(self, cost: int) -> None:
        with contextlib.suppress(PolicyViolationError):
            self.admissions.append(self.enforcer.admit("a", Task(cost=cost)))

    @rule(actual=st.integers(0, 3), data=st.data())
    def settle(self, actual: int, data: st.DataObject) -> None:
        if self.admissions:
            admission = self.admissions.pop(data.draw(st.integers(0, len(self.admissions) - 1)))
            self.enforcer.settle(admission, Outcome(Status.SUCCESS, actual))
            self.settled += to_units(actual)

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        if self.admissions:
            admission = self.admissions.pop(data.draw(st.integers(0, len(self.admissions) - 1)))
            self.enforcer.withdraw(admission)

    @rule(mode=st.sampled_from(["up", "cut", "lose_replies"]))
    def line(self, mode: str) -> None:
        if mode == "cut":
            self.relay.cut()
        else:
            self.relay.mode = mode

    @invariant()
    def exact_once_it_answers(self) -> None:
        if self.relay.mode != "up":
            return
        health: StoreHealth = health_of(self.store)
        for _ in range(3):  # a busy machine may make one try time out
            if health.flush():
                break
        assert health.pending == 0
        spent, _ = self.direct.get("budget:a", 0, time.time())
        assert spent == self.settled

    def teardown(self) -> None:
        self.store.close()
        self.direct.close()
        self.relay.close()


TestOpenBudgetThroughOutages = OpenBudgetThroughOutages.TestCase
TestOpenBudgetThroughOutages.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
