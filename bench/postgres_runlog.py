"""The PostgreSQL run log against the SQLite run log: records per second from 4 writer processes.

Run it with ``.venv/bin/python bench/postgres_runlog.py`` (``--quick``: fewer records; ``--repeat``,
``--processes``, ``--actions``). It starts its own PostgreSQL server (Debian's, under
/usr/lib/postgresql/*/bin; ``make postgresql`` installs it) on a free loopback port in a temporary
folder, with PostgreSQL's durable defaults (fsync and synchronous commit on), and a SQLite file
in the same file system. Each round, for each backend in turn, a new database; ``--processes``
processes (4) each open ``RunLog(url, pii=False)`` (the defaults otherwise: its writer thread or
process, batches of 4,096) and, released together, record ``--actions`` actions (20,000) in runs
of 10 (a run start, 10 actions, a run end: 12 records), then ``flush()``. Timed from the release
to the last process's flush: records per second of all processes together. The table shows medians
of ``--repeat`` rounds (3), backends interleaved; a bare psycopg round trip (``SELECT 1``) on the
same server is shown for scale. The exit status is 0 whatever the figures: this is a report.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.postgres_server

from tests.postgres_server import PostgresServer, bin_folder

from _report import Target, fmt, machine_lines, percentile_us, positive, ratio, targets_table
from proctor import RunLog
from proctor.db import database_from_url
from proctor.runs import set_run_log

RUN_LENGTH = 10


def writer(url: str, name: str, actions: int, start: Any, done: Any) -> None:
    """One process: open the log, wait for the start, record ``actions`` actions in runs, flush."""
    set_run_log(None)
    args = {"customer": "cust-1001", "query": "orders", "options": {"status": "open", "region": "eu"}}
    with RunLog(url, pii=False) as log:
        start.wait()
        for run in range(actions // RUN_LENGTH):
            run_id = f"{name}-{run}"
            now = time.time()
            log.run_started(
                run_id, service="bench", agent=name, tool="job", function="bench:job", started=now, input=args
            )
            for seq in range(1, RUN_LENGTH + 1):
                log.action(
                    run_id, seq, "crm.lookup", "bench", name, now, 0.001, "succeeded", args,
                    result={"rows": seq}, actual_cost=0.01,
                )  # fmt: skip
            log.run_finished(run_id, status="succeeded", ended=now, output=run, cost=0.1)
        log.flush()
        done.put((log.failed, log.dropped))


def round_of(url: str, processes: int, actions: int) -> tuple[float, int]:
    """One timed round into the database ``url``: records per second, and the records lost."""
    database_from_url(url).prepare()
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    workers = [
        context.Process(target=writer, args=(url, f"p{n}", actions, start, done)) for n in range(processes)
    ]
    for process in workers:
        process.start()
    time.sleep(2.0)  # every process has opened its log (and its writer) before the release
    began = time.perf_counter()
    start.set()
    results = [done.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - began
    for process in workers:
        process.join()
    lost = sum(failed + dropped for failed, dropped in results)
    records = processes * (actions // RUN_LENGTH) * (RUN_LENGTH + 2)
    return records / elapsed, lost


def stored(url: str) -> int:
    """Runs and actions stored in the database ``url``."""
    database = database_from_url(url)
    try:
        runs = database.runs(
            service=None, agent=None, status=None, since=None, until=None, limit=None, oldest_first=True
        )
        actions = sum(len(rows) for rows in database.action_rows([run.run_id for run in runs], ["seq"]))
        return 2 * len(runs) + actions
    finally:
        database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records, one round: a smoke run")
    parser.add_argument("--repeat", type=positive, default=3, help="rounds (default 3)")
    parser.add_argument("--processes", type=positive, default=4, help="writer processes (default 4)")
    parser.add_argument(
        "--actions", type=positive, default=20_000, help="actions per process (default 20,000)"
    )
    args = parser.parse_args()
    repeat, actions = (1, 2_000) if args.quick else (args.repeat, args.actions)
    console = Console()
    if bin_folder() is None:
        console.print("no PostgreSQL server: install it (make postgresql, or apt-get install postgresql)")
        return
    for line in machine_lines({"psycopg": psycopg.__version__}):
        console.print(line)
    set_run_log(None)
    server = PostgresServer(durable=True)
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    lost = {"sqlite": 0, "postgresql": 0}
    complete = True
    try:
        with psycopg.connect(server.url()) as connection:
            version = connection.execute("SHOW server_version").fetchone()
            trips = []
            for _ in range(2000):
                began = time.perf_counter_ns()
                connection.execute("SELECT 1").fetchone()
                trips.append(time.perf_counter_ns() - began)
        console.print(f"postgres: {version[0] if version else '?'} in {server.folder} (fsync on)")
        with tempfile.TemporaryDirectory(dir=server.folder.parent) as folder:
            for round_ in range(repeat):
                for name in rates:
                    url = (
                        server.new_database(empty=True)
                        if name == "postgresql"
                        else f"sqlite:///{folder}/runs-{round_}.db"
                    )
                    rate, missing = round_of(url, args.processes, actions)
                    expected = args.processes * (actions // RUN_LENGTH) * (RUN_LENGTH + 2)
                    complete = complete and stored(url) == expected
                    rates[name].append(rate)
                    lost[name] += missing
                    console.print(f"round {round_ + 1}: {name} {rate:,.0f} records/s")
    finally:
        server.close()
    report(console, rates, lost, complete, args.processes, actions, percentile_us(trips, 0.5))


def report(
    console: Console,
    rates: dict[str, list[float]],
    lost: dict[str, int],
    complete: bool,
    processes: int,
    actions: int,
    trip_us: float,
) -> None:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    table = Table(
        title=f"Run log, {processes} processes x {actions:,} actions in runs of {RUN_LENGTH} "
        f"(medians of {len(rates['sqlite'])} rounds)",
        title_justify="left",
    )
    for column in ("database", "records/s", "rounds", "records lost"):
        table.add_column(column, justify="left" if column == "database" else "right")
    for name, median in medians.items():
        table.add_row(name, f"{median:,.0f}", ", ".join(f"{v:,.0f}" for v in rates[name]), str(lost[name]))
    console.print(table)
    measured = ratio(medians["postgresql"], medians["sqlite"])
    rows = [
        Target(
            f"PostgreSQL run log records/s / SQLite run log records/s, {processes} writer processes",
            ">= 1.00x",
            fmt(measured, ".2f", "x"),
            f"PostgreSQL {medians['postgresql']:,.0f}/s, SQLite {medians['sqlite']:,.0f}/s; "
            f"bare psycopg round trip p50 {fmt(trip_us)} us",
            None if measured is None else measured >= 1.0 and complete and not any(lost.values()),
        )
    ]
    console.print(targets_table(rows))
    if not complete:
        console.print("[red]a database holds fewer records than were written[/red]")


if __name__ == "__main__":
    main()
