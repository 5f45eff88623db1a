"""What only the Redis store has: URLs, server time, NOSCRIPT, restarts, timeouts, many callers.

Every test runs against a real redis-server (tests/redis_server.py), never a mock.
"""

from __future__ import annotations

import math
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor import BudgetExceededError, BudgetPolicy, Outcome, PolicyEnforcer, Status, Task
from proctor._numbers import to_units
from proctor.errors import ConfigurationError, StoreError
from proctor.policy.daily import DailySpend
from proctor.stores import RedisStore, known_schemes, resolve_store, set_store, store_from_url
from proctor.stores.redis import DEFAULT_TIMEOUT
from tests import redis_server
from tests.servers import free_port
from tests.stores import _redis_workers


@pytest.fixture
def url(redis_server_url: str) -> str:
    """The session server's URL with a key prefix of this test's own."""
    return f"{redis_server_url}?prefix={redis_server.unique_prefix()}&timeout=5"


@pytest.fixture
def store(url: str) -> Iterator[RedisStore]:
    built = store_from_url(url)
    assert isinstance(built, RedisStore)
    yield built
    built.close()


@pytest.fixture
def own_server() -> Iterator[redis_server.RedisServer]:
    """A redis-server of this test alone, which it may stop, restart or pause."""
    server = redis_server.RedisServer()
    yield server
    server.close()


# URLs and the driver.


def test_urls_choose_the_redis_store_and_its_options(redis_server_url: str) -> None:
    assert {"redis", "rediss"} <= set(known_schemes())
    built = store_from_url(f"{redis_server_url}?timeout=0.02&prefix=app&clock=caller")
    assert isinstance(built, RedisStore)
    assert (built.timeout, built.prefix, built.clock) == (0.02, "app", "caller")
    built.close()
    tls = store_from_url("rediss://example.invalid:6380/0")
    assert type(tls) is RedisStore
    assert tls.timeout == DEFAULT_TIMEOUT <= 0.05
    tls.close()
    for bad in (
        "redis://h?timeout=soon",
        "redis://h?timeout=0",
        "redis://h?clock=mine",
        "redis://h?prefix={x}",
    ):
        with pytest.raises(ConfigurationError):
            store_from_url(bad)
    # The constructor takes them as arguments; in its URL they would reach redis-py, which fails late.
    with pytest.raises(ConfigurationError, match=r"takes prefix, timeout as keyword arguments.*from_url"):
        RedisStore(f"{redis_server_url}?timeout=0.5&prefix=app")


def test_proctor_store_and_set_store_take_a_redis_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_STORE", url)
    from_env = resolve_store(None)
    assert isinstance(from_env, RedisStore)
    set_store(url)
    try:
        budget = BudgetPolicy(default_limit=1.0)
        budget.record_spend("a", 0.25)
        assert BudgetPolicy(default_limit=1.0, store=url).spent("a") == 0.25  # one store per URL
    finally:
        set_store(None)
    from_env.close()


def test_the_core_imports_without_redis_and_the_store_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import proctor, proctor.stores\n"
        "from proctor.errors import ConfigurationError\n"
        "try:\n"
        "    proctor.stores.store_from_url('redis://localhost')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "proctor's 'redis' extra" in result.stdout
    assert "pip install -e '.[redis]'" in result.stdout


def test_one_agents_keys_share_a_cluster_slot(store: RedisStore) -> None:
    from redis.crc import key_slot

    keys = [
        *store._ledger_keys("budget:alice"),
        *store._ledger_keys("proctor.cost_today:local/alice"),
        *store._ledger_keys("proctor.cost_today:Europe/Paris/alice"),
        store._bucket_key("rate:alice"),
    ]
    assert len({key_slot(key.encode()) for key in keys}) == 1


# Time, from the server.


def test_leases_and_buckets_run_on_the_servers_clock(url: str) -> None:
    store = RedisStore(url.partition("?")[0], prefix=redis_server.unique_prefix(), timeout=5.0)
    try:
        far = 1e12  # the caller's now is ignored: this would expire every lease and fill every bucket
        kept, _, _ = store.reserve("k", 8, 10, 0, 0.0, 60.0)
        assert kept is not None
        assert store.get("k", 0, far) == (0, 8)
        short, _, _ = store.reserve("s", 8, 10, 0, 0.0, 0.2)
        assert short is not None
        assert store.take("slow", 1.0, 1.0, 1 / 3600, 0.0) == (True, 0.0)
        assert store.take("slow", 1.0, 1.0, 1 / 3600, far)[0] is False
        assert store.take("fast", 1.0, 1.0, 5.0, 0.0)[0] is True
        time.sleep(0.3)  # on the server too: past the short lease, and 1.5 tokens of refill
        assert store.get("s", 0, 0.0) == (0, 0)
        assert store.reserve("s", 10, 10, 0, 0.0, 60.0)[0] is not None  # the expired lease gave it back
        assert store.settle("s", short, 3, 0) is True  # a late settle still counts, once
        assert store.settle("s", short, 3, 0) is False
        assert store.get("s", 0, 0.0)[0] == 3
        assert store.take("fast", 1.0, 1.0, 5.0, 0.0)[0] is True
    finally:
        store.close()


# The server going away and coming back.


def test_scripts_survive_script_flush(store: RedisStore, redis_server_url: str) -> None:
    lease, _, _ = store.reserve("k", 5, 10, 0, 0.0, 60.0)
    assert lease is not None
    assert redis_server.shared().command("SCRIPT", "FLUSH").startswith(b"+OK")
    assert store.settle("k", lease, 4, 0) is True  # NOSCRIPT: loaded again, then run
    assert store.take("b", 1.0, 2.0, 1.0, 0.0)[0] is True
    assert store.get("k", 0, 0.0) == (4, 0)


def test_a_restarted_server_is_reconnected_to(own_server: redis_server.RedisServer) -> None:
    store = RedisStore(own_server.url)
    try:
        assert store.reserve("k", 5, 10, 0, 0.0, 60.0)[0] is not None
        own_server.stop()
        with pytest.raises(StoreError, match=r"cannot reach Redis at 127\.0\.0\.1"):
            store.get("k", 0, 0.0)
        own_server.start()  # same port, empty (no persistence), scripts unknown
        assert store.get("k", 0, 0.0) == (0, 0)
        assert store.reserve("k", 5, 10, 0, 0.0, 60.0)[0] is not None
    finally:
        store.close()


def test_a_paused_server_gives_a_store_error_within_about_the_timeout(
    own_server: redis_server.RedisServer,
) -> None:
    store = RedisStore(own_server.url)  # the default timeout
    budget = BudgetPolicy(default_limit=1.0, store=store)
    try:
        budget.record_spend("a", 0.5)
        assert own_server.command("CLIENT", "PAUSE", "3000", "ALL").startswith(b"+OK")
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"did not answer within 0\.05s.*\?timeout="):
            budget.spent("a")
        assert time.monotonic() - started < 2.0  # a generous bound: the pause lasts 3 s
    finally:
        store.close()


def test_a_server_that_is_not_there_fails_fast() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(StoreError, match="cannot reach"):
            store.reserve("k", 1, None, 0, 0.0, 60.0)
    finally:
        store.close()


# Many callers on one budget: the peers' failures.


def test_threads_on_one_budget_grant_exactly_what_fits(store: RedisStore) -> None:
    """Concurrent requests cannot all pass before spend is recorded (LiteLLM #34732)."""
    limit, cost, threads, calls = 1000, 7, 8, 40
    granted: list[int] = []

    def worker() -> None:
        for _ in range(calls):
            lease, _, _ = store.reserve("k", cost, limit, 0, 0.0, 60.0)
            if lease is not None:
                assert store.settle("k", lease, cost, 0)
                granted.append(1)

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert len(granted) == limit // cost
    assert store.get("k", 0, 0.0) == (limit // cost * cost, 0)


def test_threads_deciding_cost_today_never_pass_the_cap_together(store: RedisStore) -> None:
    """reserve_if's read, decision and reservation act as one: the last of a cap goes to one caller."""
    daily = DailySpend(store)
    cap, estimate, threads, calls = 1.0, 0.03, 8, 10
    holds = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(calls):
            hold = daily.decide("svc", "Europe/Paris", estimate, lambda spent: spent + estimate <= cap)
            if hold is not None:
                with lock:
                    holds.append(hold)

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert len(holds) == math.floor(cap / estimate + 1e-9)
    for hold in holds:
        hold.settle(estimate)
    assert daily.spent("svc", "Europe/Paris") == pytest.approx(len(holds) * estimate)
    assert daily.spent("svc") == pytest.approx(len(holds) * estimate)  # the local zone's ledger too


def test_reserve_if_asks_admit_again_when_another_host_changed_the_ledger(url: str) -> None:
    """admit decides first on the amounts this store last saw; a stale guess is never acted on."""
    here, there = store_from_url(url), store_from_url(url)  # two hosts: two clients, two hints
    assert isinstance(here, RedisStore)
    assert isinstance(there, RedisStore)
    seen: list[tuple[int, int]] = []

    def under_50(spent: int, held: int) -> bool:
        seen.append((spent, held))
        return spent + held + 5 <= 50

    try:
        first = here.reserve_if([("k", 0)], 5, 0.0, 60.0, under_50)
        assert first is not None
        there.spend("k", 100, 0)
        assert here.reserve_if([("k", 0)], 5, 0.0, 60.0, under_50) is None
        assert seen[-1] == (100, 5)  # the last word was on the amounts as they are
        there.clear("k")
        seen.clear()
        assert here.reserve_if([("k", 0)], 5, 0.0, 60.0, under_50) is not None  # refusal was stale
        assert seen == [(100, 5), (0, 5)]
        assert here.get("k", 0, 0.0) == (0, 10)
    finally:
        here.close()
        there.close()


def test_processes_on_one_budget_are_exact(redis_server_url: str, tmp_path: Path) -> None:
    processes, calls = 4, 60
    prefix = redis_server.unique_prefix()
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"worker{n}.txt" for n in range(processes)]
    workers = [
        context.Process(target=_redis_workers.run, args=(redis_server_url, prefix, calls, str(out)))
        for out in outputs
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    granted = sum(int(out.read_text()) for out in outputs)
    expected = math.floor(_redis_workers.LIMIT / _redis_workers.COST + 1e-9)
    assert granted == expected < processes * calls
    budget = _redis_workers.budget(redis_server_url, prefix)
    assert budget.spent("a") == pytest.approx(granted * _redis_workers.COST)  # the sum of actual costs
    assert budget.reserved("a") == 0.0  # nothing stays reserved


def test_a_killed_holder_inflates_nothing_once_its_lease_ends(redis_server_url: str, tmp_path: Path) -> None:
    """Holds never released do not count for ever (LiteLLM #27639, #28283, #30460)."""
    prefix, lease = redis_server.unique_prefix(), 0.5
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("spawn").Process(
        target=_redis_workers.hold_and_die, args=(redis_server_url, prefix, lease, str(ready))
    )
    store = RedisStore(redis_server_url, prefix=prefix, timeout=5.0)
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=_redis_workers.LIMIT, store=store)])
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(BudgetExceededError):  # the whole budget is held
            enforcer.admit("a", Task(cost=_redis_workers.COST))
        holder.kill()  # SIGKILL: it never settles nor releases
        holder.join(30)
        time.sleep(lease + 0.1)  # past the lease on the server's clock
        admission = enforcer.admit("a", Task(cost=_redis_workers.LIMIT))  # all of it is free again
        enforcer.settle(admission, Outcome(Status.SUCCESS, 1.0))
        assert store.get("budget:a", 0, 0.0) == (to_units(1.0), 0)
    finally:
        holder.kill()
        holder.join(30)
        store.close()
