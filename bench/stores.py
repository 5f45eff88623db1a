"""SQLite store: reserve + settle against a bare BEGIN IMMEDIATE; UPDATE; COMMIT, and 8 processes x 500 calls.

Run it with ``make bench`` or ``.venv/bin/python bench/stores.py`` (``--quick``: fewer samples).
Both sides run on one file in a temporary folder, with the store's pragmas (WAL,
``synchronous=NORMAL``), in the same run. Latencies are per pair of operations
(reserve then settle: two transactions), per bare transaction, and per pair of
bare transactions (the floor for two transactions), in microseconds. The 8-process
run times each call (admit, then settle) in its worker and reports p50 and p99.
The exit status is 0 whatever the figures: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.stores._workers

from tests.stores import _workers

from _report import Target, fmt, machine_lines, percentile_us, ratio, targets_table
from proctor import Outcome, PolicyViolationError, Status, Task
from proctor.stores import SQLiteStore


def bare(path: Path, count: int, transactions: int = 1) -> list[int]:
    """``count`` samples of ``transactions`` bare ``BEGIN IMMEDIATE; UPDATE; COMMIT`` back to back."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS bare (key TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID")
    conn.execute("INSERT OR REPLACE INTO bare VALUES ('k', 0)")
    samples = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        for _ in range(transactions):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE bare SET n = n + 1 WHERE key = 'k'")
            conn.execute("COMMIT")
        samples[i] = clock() - start
    conn.close()
    return samples


LIMIT = 10**15  # a budget's reserve checks a limit (BudgetPolicy rejects by default); this one always fits


def store_pairs(path: Path, count: int) -> list[int]:
    store = SQLiteStore(path)
    samples = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        now = time.time()
        lease, _, _ = store.reserve("budget:a", 5, LIMIT, 0, now, 300.0)
        assert lease is not None
        store.settle("budget:a", lease, 3, 0)
        samples[i] = clock() - start
    store.close()
    return samples


def timed_worker(path: str, worker: int, calls: int, out_path: str) -> None:
    """``tests.stores._workers.run`` without the kill, timing each call (admit, then settle) in ns."""
    _, _, enforcer = _workers.policies(path, 300.0)
    clock = time.perf_counter_ns
    lines = []
    for i in range(calls):
        start = clock()
        try:
            admission = enforcer.admit("a", Task(cost=_workers.ESTIMATE))
        except PolicyViolationError as exc:
            lines.append(f"ns {clock() - start}\nrejected {exc.policy_name}")
            continue
        cents = 1 + (worker * 7 + i) % 5  # as in _workers.run: 0.01 to 0.05
        enforcer.settle(admission, Outcome(Status.SUCCESS, cents / 100))
        lines.append(f"ns {clock() - start}\nspent {cents}")
    Path(out_path).write_text("\n".join(lines) + "\n")


def processes(folder: Path, count: int, calls: int) -> tuple[bool, float, float, list[int]]:
    """``count`` processes x ``calls`` calls under a budget and a rate limit.

    :returns: exact?, us per call over the wall time, wall seconds, and each call's ns.
    """
    path = folder / "procs.db"
    _workers.policies(str(path), 300.0)
    context = multiprocessing.get_context("spawn")
    outputs = [folder / f"w{n}.txt" for n in range(count)]
    workers = [
        context.Process(target=timed_worker, args=(str(path), n, calls, str(outputs[n])))
        for n in range(count)
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    cents = admitted = 0
    call_ns: list[int] = []
    for output in outputs:
        for line in output.read_text().splitlines():
            if line.startswith("ns "):
                call_ns.append(int(line.split()[1]))
            elif line.startswith("spent "):
                cents += int(line.split()[1])
                admitted += 1
    budget, rate, _ = _workers.policies(str(path), 300.0)
    exact = (
        all(worker.exitcode == 0 for worker in workers)
        and budget.spent("a") * 100 == cents
        and budget.spent("a") <= _workers.LIMIT
        and budget.reserved("a") == 0
        and rate.remaining("a") == _workers.RATE - admitted
    )
    exact = exact and len(call_ns) == count * calls
    return exact, wall * 1e6 / (count * calls), wall, call_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    args = parser.parse_args()
    count = 500 if args.quick else 5000
    console = Console()
    for line in machine_lines({}):
        console.print(line)
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        bare(folder / "one.db", 200)  # warm up the file system and the module
        store_pairs(folder / "one.db", 200)
        bare_ns = bare(folder / "one.db", count)
        pair_ns = store_pairs(folder / "one.db", count)
        bare2_ns = bare(folder / "one.db", count, transactions=2)
        exact, per_call_us, wall, call_ns = processes(folder, 8, 500)
    table = Table(title=f"SQLite store, one process, {count} samples (us)", title_justify="left")
    for column in ("what", "p50", "p99"):
        table.add_column(column, justify="right" if column != "what" else "left")
    b50, b99 = percentile_us(bare_ns, 0.5), percentile_us(bare_ns, 0.99)
    s50, s99 = percentile_us(pair_ns, 0.5), percentile_us(pair_ns, 0.99)
    table.add_row("bare BEGIN IMMEDIATE; UPDATE; COMMIT", fmt(b50), fmt(b99))
    b2_50, b2_99 = percentile_us(bare2_ns, 0.5), percentile_us(bare2_ns, 0.99)
    c50, c99 = percentile_us(call_ns, 0.5), percentile_us(call_ns, 0.99)
    table.add_row("2 bare transactions, back to back", fmt(b2_50), fmt(b2_99))
    table.add_row("SQLiteStore reserve + settle (2 transactions)", fmt(s50), fmt(s99))
    table.add_row("8 processes: one call (admit + settle; budget and rate)", fmt(c50), fmt(c99))
    console.print(table)
    p50_ratio = ratio(s50, b50)
    p50_ratio2 = ratio(s50, b2_50)
    console.print(
        targets_table(
            [
                Target(
                    "reserve + settle p50 / bare transaction p50",
                    "<= 2x",
                    fmt(p50_ratio, ".2f", "x"),
                    f"bare {fmt(b50)} us, store {fmt(s50)} us; p99 {fmt(s99)} us",
                    None if p50_ratio is None else p50_ratio <= 2.0,
                ),
                Target(
                    "reserve + settle p50 / 2 bare transactions p50 (a reserve and a settle are 2 by design)",
                    "info",
                    fmt(p50_ratio2, ".2f", "x"),
                    f"2 bare {fmt(b2_50)} us, store {fmt(s50)} us",
                    None,
                    "info",
                ),
                Target(
                    "8 processes x 500 calls (budget + rate, one file): exact, no busy error",
                    "exact",
                    "exact" if exact else "NOT exact",
                    f"per call p50 {fmt(c50)} us, p99 {fmt(c99)} us; wall {wall:.2f}s incl. start "
                    f"({per_call_us:.0f} us/call overall)",
                    exact,
                ),
            ]
        )
    )


if __name__ == "__main__":
    main()
