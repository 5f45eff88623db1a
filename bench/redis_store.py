"""Redis store: reserve, settle, token take and slots against a plain redis-py GET; 8 processes x 1,000 calls.

Run it with ``.venv/bin/python bench/redis_store.py`` (``--quick``: fewer samples;
``make bench`` runs it too). It starts its own redis-server (Debian's
``redis-server``; ``make redis-server`` installs it) on a free loopback port with
no persistence, and measures every figure against that one server in the same
run, one of each operation in turn, so that drift hits them all alike. Latencies are per
call, in microseconds; ratios are of p50s. ``reserve_if`` is measured twice: the
store's way (one script that reserves if the ledger still holds the amounts
``admit`` decided on; one more when another host changed them) and the
alternative it did not take (WATCH, read, MULTI/EXEC). The 8-process run
shares one budget, each call admitted, then settled at its estimate, and times
each call in its worker. Slots: a scheduler's acquire plus release of a free
slot (``with LOCOScheduler.acquire()`` on a ``RedisStore``: two scripts), and the
store's two scripts alone; then the wake latency: two processes pass one slot
back and forth, each asking again as soon as it has released, and each grant
is timed from the other process's call to release (``time.monotonic_ns``, one
clock for every process of the host) to the woken caller running. The exit
status is 0 whatever the figures: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.redis_server

from tests.redis_server import RedisServer

from _report import Target, fmt, machine_lines, percentile_us, ratio, targets_table
from proctor import BudgetPolicy, Outcome, PolicyEnforcer, PolicyViolationError, SharedResource, Status, Task
from proctor.policy.daily import DailySpend
from proctor.scheduling import LOCOScheduler
from proctor.stores import RedisStore

COST = 0.01
HUGE = 10**15  # a limit the single-process samples never reach: they measure the check, not a refusal
SHARE = 5 / 8  # the budget fits this share of all the calls asked for: 5,000 of 8 x 1,000


def watch_multi_reserve_if(client: redis.Redis, store: RedisStore, key: str, amount: int) -> list[int] | None:
    """reserve_if's alternative: WATCH the ledger, read it, decide, then MULTI/EXEC the reserve script."""
    keys = store._ledger_keys(key)
    script = store._reserve
    pipe: Any = client.pipeline()  # redis-py's pipeline methods are untyped
    with pipe:
        while True:
            try:
                pipe.watch(keys[0])
                spent, reserved = pipe.hmget(keys[0], "spent", "reserved")
                if int(spent or 0) + int(reserved or 0) < 0:  # the admit callback
                    return None
                pipe.multi()
                pipe.execute_command("EVALSHA", script.sha, 4, *keys, amount, "", 0, "", "300.0")
                (result,) = pipe.execute()
                return [int(result[0])]
            except redis.WatchError:
                continue


def worker(url: str, prefix: str, limit: float, calls: int, out_path: str) -> None:
    """``calls`` calls under one budget, each admitted and then settled at COST; each call's ns and grant."""
    store = RedisStore(url, prefix=prefix, timeout=5.0)
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=limit, store=store)])
    clock = time.perf_counter_ns
    lines = []
    for _ in range(calls):
        start = clock()
        try:
            admission = enforcer.admit("a", Task(cost=COST))
        except PolicyViolationError:
            lines.append(f"{clock() - start} 0")
            continue
        enforcer.settle(admission, Outcome(Status.SUCCESS, COST))
        lines.append(f"{clock() - start} 1")
    store.close()
    Path(out_path).write_text("\n".join(lines) + "\n")


def processes(url: str, folder: Path, count: int, calls: int) -> tuple[bool, str, float, list[int]]:
    """``count`` processes x ``calls`` calls on one budget: exact?, findings, seconds, ns per call."""
    prefix = "bench-procs"
    limit = round(count * calls * SHARE) * COST
    context = multiprocessing.get_context("spawn")
    outputs = [folder / f"w{n}.txt" for n in range(count)]
    workers = [context.Process(target=worker, args=(url, prefix, limit, calls, str(out))) for out in outputs]
    start = time.perf_counter()
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    wall = time.perf_counter() - start
    call_ns: list[int] = []
    granted = 0
    for output in outputs:
        for line in output.read_text().splitlines():
            ns, ok = line.split()
            call_ns.append(int(ns))
            granted += int(ok)
    store = RedisStore(url, prefix=prefix, timeout=5.0)
    budget = BudgetPolicy(default_limit=limit, store=store)
    spent, reserved = budget.spent("a"), budget.reserved("a")
    store.close()
    expected = math.floor(limit / COST + 1e-9)
    exact = (
        all(process.exitcode == 0 for process in workers)
        and len(call_ns) == count * calls
        and granted == expected
        and round(spent / COST) == granted
        and abs(spent - granted * COST) < 1e-9
        and reserved == 0.0
    )
    found = (
        f"{granted} grants (floor {expected}), spent {spent:.2f} = {granted} x {COST}, reserved {reserved}"
    )
    return exact, found, wall, call_ns


def pass_slot(url: str, rounds: int, out_path: str) -> None:
    """Take the one slot of "wake" and give it back ``rounds`` times; write each release's start and grant."""
    scheduler = LOCOScheduler(None, SharedResource("wake", 1, store=RedisStore(url, timeout=5.0)))
    clock = time.monotonic_ns
    lines = []
    for _ in range(rounds):
        grant = scheduler.acquire_start("pinger", timeout=30)
        lines.append(f"got {clock()}")
        time.sleep(0.0002)  # long enough for the other process's request to be queued
        lines.append(f"rel {clock()}")
        scheduler.release_handle(grant)
    scheduler.shutdown(5)
    Path(out_path).write_text("\n".join(lines) + "\n")


def wake_latencies(url: str, folder: Path, rounds: int) -> list[int]:
    """Two processes pass one slot back and forth: ns from a release's start to the other's grant."""
    context = multiprocessing.get_context("spawn")
    outputs = [folder / f"p{n}.txt" for n in range(2)]
    workers = [context.Process(target=pass_slot, args=(url, rounds, str(out))) for out in outputs]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    events: list[tuple[int, int, str]] = []
    for n, output in enumerate(outputs):
        for line in output.read_text().split("\n"):
            if line:
                kind, at = line.split()
                events.append((int(at), n, kind))
    events.sort()
    latencies = []
    released: dict[int, int] = {}
    for at_ns, n, kind in events:
        if kind == "rel":
            released[n] = at_ns
        elif 1 - n in released:  # a grant after the other process's release: a wake-up across processes
            latencies.append(at_ns - released.pop(1 - n))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    args = parser.parse_args()
    rounds, per_round = (2, 500) if args.quick else (10, 1000)
    calls = 200 if args.quick else 1000
    console = Console()
    if shutil.which("redis-server") is None:
        console.print("no redis-server: install it (make redis-server, or apt-get install redis-server)")
        return
    for line in machine_lines({"redis-py": redis.__version__}):
        console.print(line)
    server = RedisServer()
    try:
        console.print(f"redis-server: {server.command('INFO', 'server').split(b'redis_version:')[1][:8]!r}")
        plain = redis.Redis(host="127.0.0.1", port=server.port)
        plain.set("plain", "1")
        store = RedisStore(server.url, prefix="bench", timeout=5.0)
        other = RedisStore(server.url, prefix="bench", timeout=5.0)  # another host on the same ledgers
        daily = DailySpend(store)
        samples: dict[str, list[int]] = {}
        lease = [0]

        def reserve() -> None:
            lease[0] = store.reserve("budget:a", 5, HUGE, 0, 0.0, 300.0)[0] or 0

        operations: dict[str, Callable[[], object]] = {
            "GET": lambda: plain.get("plain"),
            "reserve": reserve,
            "settle": lambda: store.settle("budget:a", lease[0], 3, 0),
            "take": lambda: store.take("rate:a", 1.0, 1e12, 1e9, 0.0),
            "reserve_if": lambda: store.reserve_if([("cost:a", 0)], 5, 0.0, 300.0, lambda spent, held: True),
            "reserve_if_other": lambda: store.reserve_if(
                [("cost:c", 0)], 5, 0.0, 300.0, lambda spent, held: True
            ),
            "watch": lambda: watch_multi_reserve_if(plain, store, "cost:b", 5),
            "decide": lambda: daily.decide("svc", None, 0.01, lambda spent: True),
        }
        scheduler = LOCOScheduler(None, SharedResource("api", 3, store=store))

        def slot() -> None:
            with scheduler.acquire("a"):
                pass

        def slot_scripts() -> None:
            token, _ = store.wait_for_slot("raw", 3, "bench", 1, "a", 1.0, 0.25, 0.0, 10.0)
            assert token is not None
            store.pass_slot("raw", "bench", token, 0.0, 10.0)

        operations["slot"] = slot
        operations["slot_scripts"] = slot_scripts
        untimed: dict[str, Callable[[], object]] = {"reserve_if_other": lambda: other.spend("cost:c", 1, 0)}
        clock = time.perf_counter_ns
        for round_ in range(rounds + 1):  # round 0 warms up and is dropped
            for _ in range(per_round):
                for name, operation in operations.items():  # one of each in turn: drift hits them all
                    before = untimed.get(name)
                    if before is not None:
                        before()
                    start = clock()
                    operation()
                    elapsed = clock() - start
                    if round_:
                        samples.setdefault(name, []).append(elapsed)
        scheduler.shutdown(5)
        store.close()
        other.close()
        plain.close()
        with tempfile.TemporaryDirectory() as folder:
            exact, found, wall, call_ns = processes(server.url, Path(folder), 8, calls)
            wakes = wake_latencies(server.url, Path(folder), 200 if args.quick else 2000)
    finally:
        server.close()
    report(console, samples, rounds * per_round, exact, found, wall, call_ns, calls, wakes)


def report(
    console: Console,
    samples: dict[str, list[int]],
    count: int,
    exact: bool,
    found: str,
    wall: float,
    call_ns: list[int],
    calls: int,
    wakes: list[int],
) -> None:
    labels = {
        "GET": "plain redis-py GET",
        "reserve": "RedisStore.reserve (one script)",
        "settle": "RedisStore.settle (one script)",
        "take": "RedisStore.take (one script)",
        "reserve_if": "RedisStore.reserve_if (one compare-and-set script)",
        "reserve_if_other": "RedisStore.reserve_if, another host wrote the ledger since (2 scripts)",
        "watch": "reserve_if by WATCH, HMGET, MULTI/EVALSHA/EXEC (not used)",
        "decide": "cost_today hold: DailySpend.decide (reserve_if)",
        "slot": "slot acquire + release: with LOCOScheduler.acquire() (2 scripts)",
        "slot_scripts": "slot acquire + release: RedisStore.wait_for_slot + pass_slot",
    }
    table = Table(title=f"Redis store, one process, {count} samples each (us)", title_justify="left")
    for column in ("what", "p50", "p99", "p50 / GET"):
        table.add_column(column, justify="left" if column == "what" else "right")
    p50: dict[str, float] = {}
    for name, label in labels.items():
        p50[name] = percentile_us(samples[name], 0.5)
        table.add_row(
            label, fmt(p50[name]), fmt(percentile_us(samples[name], 0.99)), fmt(ratio(p50[name], p50["GET"]))
        )
    c50, c99 = percentile_us(call_ns, 0.5), percentile_us(call_ns, 0.99)
    table.add_row("8 processes: one call (admit + settle: 2 scripts)", fmt(c50), fmt(c99), "")
    console.print(table)
    rows = []
    for name, most in (("reserve", 2.5), ("settle", 2.5), ("take", 2.0)):
        measured = ratio(p50[name], p50["GET"])
        rows.append(
            Target(
                f"{name} p50 / GET p50",
                f"<= {most}x",
                fmt(measured, ".2f", "x"),
                f"GET {fmt(p50['GET'])} us, {name} {fmt(p50[name])} us",
                None if measured is None else measured <= most,
            )
        )
    measured = ratio(p50["slot"], p50["GET"])
    rows.append(
        Target(
            "slot acquire + release (scheduler) p50 / GET p50",
            "<= 5x",
            fmt(measured, ".2f", "x"),
            f"GET {fmt(p50['GET'])} us, slot {fmt(p50['slot'])} us; "
            f"the 2 scripts alone {fmt(ratio(p50['slot_scripts'], p50['GET']), '.2f', 'x')}",
            None if measured is None else measured <= 5.0,
        )
    )
    wake50 = percentile_us(wakes, 0.5) if wakes else None
    rows.append(
        Target(
            "wake latency across processes: release to the woken waiter running, p50",
            "<= 2000 us",
            fmt(wake50, ".0f", " us"),
            f"{len(wakes)} wake-ups; p99 {fmt(percentile_us(wakes, 0.99) if wakes else None, '.0f')} us",
            None if wake50 is None else wake50 <= 2000,
        )
    )
    for name in ("reserve_if", "reserve_if_other", "watch"):
        rows.append(
            Target(
                f"{labels[name]} p50 / GET p50",
                "info",
                fmt(ratio(p50[name], p50["GET"]), ".2f", "x"),
                f"{fmt(p50[name])} us",
                None,
                "info",
            )
        )
    rows.append(
        Target(
            f"8 processes x {calls:,} calls, one budget: spent = sum of actual costs, "
            "grants = floor(limit/cost), nothing reserved",
            "exact",
            "exact" if exact else "NOT exact",
            f"{found}; per call p50 {fmt(c50)} us, p99 {fmt(c99)} us; wall {wall:.2f}s incl. start",
            exact,
        )
    )
    console.print(targets_table(rows))


if __name__ == "__main__":
    main()
