"""The run log: what recording costs the caller, how fast the log writes, and how fast what-if replays.

Run it by hand (the lead wires ``make bench``)::

    .venv/bin/python bench/runlog.py             # the full run, about three minutes on 2 cores
    .venv/bin/python bench/runlog.py --quick     # a smoke run, seconds
    .venv/bin/python bench/runlog.py --help      # --repeat, --actions

Every database is a new file in a temporary folder (``$TMPDIR``, else /tmp; the
header names it and its file system), deleted at the end. Nothing is written to
``$PROCTOR_DB``: the script starts with ``set_run_log(None)``.

What is measured (from the issue):

- **Recording overhead on the caller's path.** ``@runlog(service=...,
  policies=<10 rules>, name="crm.lookup")`` on ``lookup(customer, query,
  options, limit=10)``, which returns a small dict; called as
  ``lookup("cust-1001", "orders", {"status": "open", "region": "eu",
  "max_age_days": 30}, limit=20)``. The 10 rules are built like
  bench/rules.py's 10-rule set: nine keyed on a literal tool name with a
  ``gt``, ``starts_with`` or ``in`` condition on an argument (three on
  ``crm.lookup``, one of them on a key of the dict argument; one an ``any:``
  combination), one general (``cost`` above a limit); the script checks that
  ``limit=5000`` is denied. The call is timed as a tool call inside one
  decorated top-level run (many tool calls per run), (a) with recording off
  (``set_run_log(None)``), (b) recorded into ``RunLog(<tmp db>)``, the default
  configuration (``pii=True``: values are redacted on the writer thread,
  ``queue_size=10_000``, ``on_full="block"``, ``batch=1024``), and (c) into
  ``RunLog(<tmp db>, pii=False)``; (d) on the default path users have: the
  same rules from a policy file given as a path, ``cost=0.5``, not recorded
  and recorded into ``RunLog(<tmp db>)``; and as a top-level call (each call
  a run, recorded or not), against the bare function. Each call is timed on its own
  with ``time.perf_counter_ns()`` (p50, p99 over 20,000 calls per run; 2,000
  with ``--quick``), and a batch of as many calls is timed as a whole (mean
  per call); the table shows medians of ``--repeat`` runs, rounds
  interleaved. The recording overhead is recorded minus not recorded (p50 -
  p50, p99 - p99, mean - mean). After every timed block the script calls
  ``flush()`` and times it: what the writer still had to do when the caller
  was done (a column adds it, per call, to the batch mean: the whole cost of a
  recorded call, since caller and writer share the GIL). Per configuration it
  counts how often a caller waited for room in a full queue (by wrapping the
  log's private condition variable, which is only touched when the queue is
  full; with ``--quick`` a block is smaller than the queue and cannot fill
  it), and reads ``RunLog.dropped`` and ``RunLog.failed``.
- **Sustained write throughput.** ``--actions`` records (200,000) handed to
  ``RunLog.action(...)`` as fast as a loop can, with arguments built before
  the timing (runs of 10 actions; the args are dicts like the call above,
  one in a hundred holding an e-mail address; 5% carry a recorded decision),
  timed until ``flush()`` returns: actions per second, ``pii=False`` (the
  storage itself: the target) and ``pii=True`` (the default, which redacts on
  the writer thread) as separate rows, each into a new database file.
  Against, in the same run, plain ``sqlite3`` ``executemany`` of the same rows
  into the same schema with the same pragmas (WAL, ``synchronous=NORMAL``),
  one transaction per 1024 rows, no queue, no thread: once with the rows
  encoded before the timing (SQLite alone) and once encoding each row's JSON
  columns in the loop with ``proctor.runs.encode.encode`` (the work the log
  does with ``pii=False``, without its queue and thread).
- **What-if replay.** A recorded data set of 10,000 runs x 10 actions
  (100,000 actions), written with ``RunLog(pii=False)`` before the timing,
  over five days, 20 agents (two of them spending four times as much). Timed:
  ``select_runs(log, since=, until=, filters={"service": ...})`` and
  ``what_if(log, runs, rules)`` (which reads the runs' actions) with a
  10-rule policy: rules on tool names, on arguments, on ``cost``,
  ``cost_run``, ``tool_calls_in_run`` and one on ``cost_today`` (the one
  that makes what-if walk all runs on one clock). The figure is recorded
  actions of the selected runs per second, the median of ``--repeat`` runs.
  For comparison: the same rules without the ``cost_today`` one, and the
  reading alone (``select_runs`` plus iterating ``log.actions_of``).
  ``ImpactReport.of(results)`` is printed so that a reader sees what the
  policy did.

The garbage collector stays on and is run before each timed block. The last
table checks the issue's targets (PASS / FAIL): recording overhead p50 <= 3 us
per tool call (default configuration); the sustained cost of a recorded tool
call on the default path (batch mean plus the flush after it, per call) <=
1.5x the same calls not recorded; nothing dropped or failed (callers that
find the queue full wait, ``on_full="block"``; how often is shown); writes
with ``RunLog()`` >= 0.5x, and with ``RunLog(pii=False)`` >= 0.9x, the
records/s of the bare ``executemany`` of the same rows encoded before, in
the same run; >= 100,000 actions/s written (``pii=False``), >= 100,000
actions/s replayed by what-if. The exit status is 0 whatever the figures:
this is a report, not a test.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from _report import (
    Target,
    fmt,
    machine_lines,
    percentile_us,
    positive,
    ratio,
    status,
    targets_table,
    time_empty,
)
from proctor import runlog
from proctor.errors import RuleViolationError
from proctor.rules import RuleSet, parse_policies
from proctor.runs import log as log_module
from proctor.runs.default import set_run_log
from proctor.runs.encode import dumps, encode
from proctor.runs.log import RunLog
from proctor.runs.result import ImpactReport, ReplayResult
from proctor.runs.selection import select_runs
from proctor.runs.whatif import what_if

DEFAULT_CALLS = 20_000
QUICK_CALLS = 2_000
DEFAULT_REPEAT = 5
QUICK_REPEAT = 2
WARMUP = 2_000  # untimed calls of each configuration before the first timed run
DEFAULT_ACTIONS = 200_000
QUICK_ACTIONS = 20_000
WHATIF_RUNS = 10_000
QUICK_WHATIF_RUNS = 1_000
ACTIONS_PER_RUN = 10
SEED = 20_240_304
TRANSACTION_ROWS = 1024  # the baseline's rows per transaction: RunLog's default batch

SERVICE = "bench"
AGENT = "agent-00"
TOOL = "crm.lookup"
OUTER_TOOL = "support.agent"
CUSTOMER = "cust-1001"
QUERY = "orders"
OPTIONS: dict[str, Any] = {"status": "open", "region": "eu", "max_age_days": 30}
LIMIT = 20
DENIED_LIMIT = 5000

# The issue's targets.
TARGET_RECORDING_US = 3.0
TARGET_WRITES = 100_000.0  # actions per second
TARGET_WHATIF = 100_000.0  # actions per second
TARGET_SUSTAINED = 1.5  # recorded / not recorded, the writer's work and its flush counted
TARGET_WRITES_PII = 0.5  # RunLog() records/s / bare executemany of the same rows pre-encoded
TARGET_WRITES_RAW = 0.9  # RunLog(pii=False) records/s / the same


# --------------------------------------------------------------------------- timing


def time_calls(function: Callable[[], object], count: int) -> list[int]:
    """Nanoseconds of each of ``count`` calls ``function()``."""
    clock = time.perf_counter_ns
    samples = [0] * count
    for i in range(count):
        start = clock()
        function()
        samples[i] = clock() - start
    return samples


def time_batch(function: Callable[[], object], count: int) -> float:
    """Mean nanoseconds per call of ``count`` calls ``function()`` timed as a whole (loop included)."""
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(count):
        function()
    return (clock() - start) / count


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: Sequence[float], spec: str = ".2f") -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}" if values else ""


@dataclass
class Timing:
    """The runs of one configuration: per run, p50 and p99 and batch mean (us), and the flushes after."""

    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)  # seconds flush() took after each timed block
    flush_after_batch: list[float] = field(default_factory=list)  # us per call, after the batch blocks
    waits: int | None = 0  # how often a caller of this configuration waited for room in a full queue

    def add(self, samples: Sequence[int]) -> None:
        self.p50s.append(percentile_us(samples, 0.50))
        self.p99s.append(percentile_us(samples, 0.99))

    @property
    def p50(self) -> float | None:
        return median(self.p50s)

    @property
    def p99(self) -> float | None:
        return median(self.p99s)

    @property
    def mean(self) -> float | None:
        return median(self.means)

    @property
    def whole(self) -> float | None:
        """Batch mean plus the flush after the batch, per call: the whole cost of a recorded call."""
        if not self.means:
            return None
        if not self.flush_after_batch:
            return self.mean
        return statistics.median(m + f for m, f in zip(self.means, self.flush_after_batch, strict=True))


# --------------------------------------------------------------------------- the run logs


class CountingCondition(threading.Condition):
    """A condition variable that counts its waits: in a RunLog, how often a caller found the queue full."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


@dataclass
class Log:
    """A RunLog made for the benchmark, and what watches it."""

    log: RunLog
    room: CountingCondition | None  # None: the RunLog has no such attribute any more; waits unknown

    @property
    def waits(self) -> int | None:
        return None if self.room is None else self.room.waits

    def flush(self) -> float:
        """Seconds until everything handed over so far is committed."""
        start = time.perf_counter()
        if not self.log.flush(timeout=600):
            raise RuntimeError(f"{self.log} did not flush within 600 s")
        return time.perf_counter() - start


def open_log(path: Path, *, pii: bool) -> Log:
    """``RunLog(path, pii=pii)`` with the defaults otherwise, watched for a full queue.

    The caller waits on ``RunLog._room`` only when the queue is full, so counting its waits costs
    nothing otherwise. (A private attribute: if it goes, the script says "unknown".)
    """
    log = RunLog(path, pii=pii, on_full="block")
    room: CountingCondition | None = None
    if isinstance(getattr(log, "_room", None), threading.Condition):
        room = CountingCondition()
        log._room = room
    return Log(log, room)


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def filesystem(path: Path) -> str:
    """The file system type ``path`` is on, from /proc/mounts; "" where unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


# --------------------------------------------------------------------------- 1. recording overhead


def overhead_mapping() -> dict[str, Any]:
    """10 rules like bench/rules.py's 10-rule set: nine keyed on a tool (one any:), one general."""

    def rule(rule_id: str, action: str, when: dict[str, Any]) -> dict[str, Any]:
        return {"id": rule_id, "when": when, "action": action, "message": f"bench rule {rule_id}"}

    return {
        "policies": [
            rule("r000", "deny", {"tool": TOOL, "args.limit": {"gt": 1000}}),
            rule("r001", "deny", {"tool": TOOL, "args.query": {"starts_with": "SELECT"}}),
            rule("r002", "log", {"tool": TOOL, "args.options.region": ["cn", "ru"]}),
            rule("r003", "deny", {"tool": "db.query", "args.limit": {"gt": 1000}}),
            rule(
                "r004",
                "deny",
                {
                    "tool": "db.export",
                    "any": [{"args.limit": {"gt": 1000}}, {"args.table": {"starts_with": "pg_"}}],
                },
            ),
            rule("r005", "deny", {"tool": "fs.delete", "args.path": {"starts_with": "/etc/"}}),
            rule("r006", "log", {"tool": "payments.refund", "args.currency": ["BTC", "XMR"]}),
            rule("r007", "deny", {"tool": "payments.refund", "args.amount": {"gt": 500}}),
            rule("r008", "deny", {"tool": "email.send", "args.recipients": {"gt": 50}}),
            rule("r009", "log", {"cost": {"gt": 2.0}}),
        ]
    }


def lookup(customer: str, query: str, options: dict[str, Any], limit: int = 10) -> dict[str, Any]:
    return {"customer": customer, "rows": 3, "total": 12.5}


def call_bare() -> object:
    return lookup(CUSTOMER, QUERY, OPTIONS, limit=LIMIT)


BARE = "bare function"
NESTED_OFF = "tool call in a run, not recorded"
NESTED_PII = "tool call in a run, recorded, pii=True (the default)"
NESTED_RAW = "tool call in a run, recorded, pii=False"
FILE_OFF = "default path: policy file, cost=, tool call in a run, not recorded"
FILE_PII = "default path: policy file, cost=, tool call in a run, recorded (pii=True)"
TOP_OFF = "top-level call (a run each), not recorded"
TOP_PII = "top-level call (a run each), recorded, pii=True"
TOP_RAW = "top-level call (a run each), recorded, pii=False"
OVERHEAD_CONFIGS = (BARE, NESTED_OFF, NESTED_PII, NESTED_RAW, FILE_OFF, FILE_PII, TOP_OFF, TOP_PII, TOP_RAW)
# How the table shows each configuration: the call, and the recording.
ROWS = {
    BARE: ("bare function", ""),
    NESTED_OFF: ("tool call in a run", "off"),
    NESTED_PII: ("", "pii=True (default)"),
    NESTED_RAW: ("", "pii=False"),
    FILE_OFF: ("tool call in a run, policy file + cost=", "off"),
    FILE_PII: ("", "pii=True (default)"),
    TOP_OFF: ("top-level (a run each)", "off"),
    TOP_PII: ("", "pii=True (default)"),
    TOP_RAW: ("", "pii=False"),
}
SECTION_ENDS = (BARE, NESTED_RAW, FILE_PII)
UNRECORDED = {
    NESTED_PII: NESTED_OFF,
    NESTED_RAW: NESTED_OFF,
    FILE_PII: FILE_OFF,
    TOP_PII: TOP_OFF,
    TOP_RAW: TOP_OFF,
}
ESTIMATE = 0.5  # the cost= of the default path


@dataclass
class Config:
    """One configuration: how to time ``count`` calls each, and as a batch; the log it records into."""

    each: Callable[[int], list[int]]
    batch: Callable[[int], float]
    log: Log | None


@dataclass
class OverheadSetup:
    configs: dict[str, Config]
    denied: str  # what the check that the rules are in force found
    logs: list[Log]


def setup_overhead(folder: Path) -> OverheadSetup:
    mapping = overhead_mapping()
    tool = runlog(service=SERVICE, agent=AGENT, policies=mapping, name=TOOL)(lookup)

    def call_tool() -> object:
        return tool(CUSTOMER, QUERY, OPTIONS, limit=LIMIT)

    measured: list[Any] = [None]

    def agent(how: str, count: int) -> None:
        # One run: each call of ``tool`` is one of its tool calls. The samples go out of band, so
        # that the run's recorded output is not 20,000 numbers.
        measured[0] = time_calls(call_tool, count) if how == "each" else time_batch(call_tool, count)

    outer = runlog(service=SERVICE, agent=AGENT, policies=mapping, name=OUTER_TOOL)(agent)
    # The default path: the same rules from a file given as a path, and a cost= estimate.
    policy_file = folder / "rules.yaml"
    policy_file.write_text(yaml.safe_dump(mapping, sort_keys=False))
    file_tool = runlog(service=SERVICE, agent=AGENT, policies=str(policy_file), name=TOOL, cost=ESTIMATE)(
        lookup
    )

    def call_file_tool() -> object:
        return file_tool(CUSTOMER, QUERY, OPTIONS, limit=LIMIT)

    def file_agent(how: str, count: int) -> None:
        measured[0] = (
            time_calls(call_file_tool, count) if how == "each" else time_batch(call_file_tool, count)
        )

    file_outer = runlog(service=SERVICE, agent=AGENT, policies=str(policy_file), name=OUTER_TOOL)(file_agent)

    def in_run(run: Callable[[str, int], None]) -> tuple[Callable[[int], list[int]], Callable[[int], float]]:
        """How to time ``count`` tool calls inside one run of ``run``, each on its own and as a batch."""

        def each(count: int) -> list[int]:
            run("each", count)
            samples: list[int] = measured[0]
            return samples

        def batch(count: int) -> float:
            run("batch", count)
            mean: float = measured[0]
            return mean

        return each, batch

    nested_each, nested_batch = in_run(outer)
    file_each, file_batch = in_run(file_outer)

    def top_each(count: int) -> list[int]:
        return time_calls(call_tool, count)

    def top_batch(count: int) -> float:
        return time_batch(call_tool, count)

    set_run_log(None)
    denied = []
    for checked in (tool, file_tool):
        try:
            checked(CUSTOMER, QUERY, OPTIONS, limit=DENIED_LIMIT)
        except RuleViolationError as exc:
            denied.append(f"limit={DENIED_LIMIT} is denied by rule {exc.args[0]!r}")
        else:
            denied.append(f"[red]limit={DENIED_LIMIT} was NOT denied: the rules are not in force[/red]")
    with_pii = open_log(folder / "overhead-pii.db", pii=True)
    without_pii = open_log(folder / "overhead-raw.db", pii=False)
    configs = {
        BARE: Config(
            lambda count: time_calls(call_bare, count), lambda count: time_batch(call_bare, count), None
        ),
        NESTED_OFF: Config(nested_each, nested_batch, None),
        NESTED_PII: Config(nested_each, nested_batch, with_pii),
        NESTED_RAW: Config(nested_each, nested_batch, without_pii),
        FILE_OFF: Config(file_each, file_batch, None),
        FILE_PII: Config(file_each, file_batch, with_pii),
        TOP_OFF: Config(top_each, top_batch, None),
        TOP_PII: Config(top_each, top_batch, with_pii),
        TOP_RAW: Config(top_each, top_batch, without_pii),
    }
    return OverheadSetup(
        configs,
        "; ".join(f"{how}: {found}" for how, found in zip(("mapping", "file"), denied, strict=True)),
        [with_pii, without_pii],
    )


def measure_overhead(
    setup: OverheadSetup, calls: int, repeat: int, progress: Callable[[str], None]
) -> dict[str, Timing]:
    results = {name: Timing() for name in OVERHEAD_CONFIGS}
    for name in OVERHEAD_CONFIGS:
        progress(f"{name}: warm-up")
        config = setup.configs[name]
        set_run_log(config.log.log if config.log is not None else None)
        config.each(min(calls, WARMUP))
        if config.log is not None:
            config.log.flush()
            settle_writer(config.log.log, config.each, min(calls, WARMUP))
    for round_ in range(repeat):
        for name in OVERHEAD_CONFIGS:
            progress(f"{name}: run {round_ + 1} of {repeat}")
            config = setup.configs[name]
            timing = results[name]
            log = config.log
            set_run_log(log.log if log is not None else None)
            waits = log.waits if log is not None else None
            gc.collect()
            timing.add(config.each(calls))
            if log is not None:
                timing.flushes.append(log.flush())
            gc.collect()
            timing.means.append(config.batch(calls) / 1000.0)
            if log is not None:
                flushed = log.flush()
                timing.flushes.append(flushed)
                timing.flush_after_batch.append(flushed * 1e6 / calls)
                after = log.waits
                if timing.waits is not None:
                    timing.waits = None if after is None or waits is None else timing.waits + after - waits
    set_run_log(None)
    return results


WRITER_SETTLE = 15.0  # seconds of calls at most for a log to move to its writer process


def settle_writer(log: RunLog, calls: Callable[[int], object], count: int) -> None:
    """Run ``calls(count)`` until ``log`` writes from its writer process (``writer="auto"`` moves there
    once its thread is busy), for at most ``WRITER_SETTLE`` seconds: the timed runs see the steady state."""
    if log_module._cpus() < 2:  # an auto log stays on its thread there
        return
    deadline = time.monotonic() + WRITER_SETTLE
    while log.writer_pid is None and time.monotonic() < deadline:
        calls(count)
        log.flush()


def writers(logs: Sequence[Log]) -> str:
    """Where each log's records are written now."""
    return ", ".join(
        f"{Path(str(log.log.database)).name}: "
        + ("a writer process" if log.log.writer_pid is not None else "the writer thread")
        for log in logs
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def overhead_table(setup: OverheadSetup, results: dict[str, Timing], calls: int, repeat: int) -> Table:
    table = Table(
        title=f"1. Recording overhead: @runlog(service=..., policies=<10 rules>, name={TOOL!r}) on "
        f"lookup(customer, query, options: dict, limit=10) -> dict; {calls:,} calls per run",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("call")
    table.add_column("recording")
    table.add_column("p50 us", justify="right")
    table.add_column("p99 us", justify="right")
    table.add_column("p50 min-max", justify="right", style="dim")
    table.add_column("batch mean us", justify="right")
    table.add_column("recording adds p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("batch mean", justify="right")
    table.add_column("flush() after, ms (median, max)", justify="right")
    table.add_column("batch mean + flush us", justify="right")
    table.add_column("queue full", justify="right")
    for name in OVERHEAD_CONFIGS:
        timing = results[name]
        base = UNRECORDED.get(name)
        plain = results[base] if base is not None else None
        flushes = (
            f"{statistics.median(timing.flushes) * 1e3:.1f}, {max(timing.flushes) * 1e3:.1f}"
            if timing.flushes
            else ""
        )
        table.add_row(
            *ROWS[name],
            fmt(timing.p50),
            fmt(timing.p99),
            spread(timing.p50s),
            fmt(timing.mean),
            "" if plain is None else fmt(_minus(timing.p50, plain.p50)),
            "" if plain is None else fmt(_minus(timing.p99, plain.p99)),
            "" if plain is None else fmt(_minus(timing.mean, plain.mean)),
            flushes,
            fmt(timing.whole) if plain is not None else "",
            ("unknown" if timing.waits is None else f"{timing.waits:,}") if plain is not None else "",
        )
        if name in SECTION_ENDS:
            table.add_section()
    waits = [log.waits for log in setup.logs]
    counted = "unknown" if None in waits else f"{sum(w or 0 for w in waits)} times"
    table.caption = (
        f"Per call, in us. p50/p99: each call timed on its own; batch mean: {calls:,} calls timed as a "
        f"whole; medians of {repeat} runs. Recording adds: recorded - not recorded, same kind of call. "
        "flush(): called after every timed block, and timed: what the writer still had to do then; "
        "batch mean + flush: that time spread over the batch's calls. Queue full: how often a caller "
        f"waited for room, {counted} in all; dropped: {sum(log.log.dropped for log in setup.logs)}; "
        f"failed: {sum(log.log.failed for log in setup.logs)}. Rules in force: {setup.denied}. "
        f"Written (writer='auto', the default) by: {writers(setup.logs)}."
    )
    return table


# --------------------------------------------------------------------------- 2. write throughput


Prebuilt = tuple[str, int, str, float, dict[str, Any], dict[str, Any], float, list[dict[str, Any]]]


def build_records(count: int, rng: random.Random) -> list[Prebuilt]:
    """``count`` actions of runs of 10: (run_id, seq, tool, started, args, result, cost, decisions)."""
    tools = ("crm.lookup", "kb.search", "db.query", "http.get", "email.send")
    pool: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for i in range(1000):
        args: dict[str, Any] = {
            "customer": f"cust-{rng.randint(1000, 9999)}",
            "query": rng.choice(("orders", "invoices", "tickets", "refunds")),
            "options": {"status": rng.choice(("open", "closed")), "region": "eu", "max_age_days": 30},
            "limit": rng.randint(1, 200),
        }
        if i % 100 == 0:
            args["note"] = "forward the receipt to alice.martin@example.com"
        pool.append((args, {"customer": args["customer"], "rows": rng.randint(0, 50), "total": 12.5}))
    logged = [{"phase": "before", "rule": "r009", "action": "log", "decided": True}]
    base = datetime(2024, 3, 4, tzinfo=UTC).timestamp()
    records: list[Prebuilt] = []
    run_id = ""
    for i in range(count):
        seq = i % ACTIONS_PER_RUN + 1
        if seq == 1:
            run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        args, result = pool[rng.randrange(len(pool))]
        decisions = logged if rng.random() < 0.05 else []
        cost = round(rng.uniform(0.01, 0.5), 4)
        records.append((run_id, seq, rng.choice(tools), base + i * 0.5, args, result, cost, decisions))
    return records


# The actions table's columns (proctor.runs._schema), in the order encoded_row gives them.
_ACTION_COLUMNS = (
    "run_id",
    "seq",
    "tool",
    "service",
    "agent",
    "started",
    "duration",
    "status",
    "args",
    "requested_args",
    "result",
    "error",
    "labels",
    "estimated_cost",
    "actual_cost",
    "decisions",
    "approval",
    "redacted",
)
_INSERT = (
    f"INSERT OR REPLACE INTO actions ({', '.join(_ACTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ACTION_COLUMNS))})"
)


def encoded_row(record: Prebuilt) -> tuple[Any, ...]:
    """The row RunLog(pii=False) stores for ``record``, in ``_ACTION_COLUMNS`` order."""
    run_id, seq, tool, started, args, result, cost, decisions = record
    return (
        run_id,
        seq,
        tool,
        SERVICE,
        AGENT,
        started,
        0.01,
        "succeeded",
        encode(args),
        None,
        encode(result),
        None,
        None,
        cost,
        cost,
        dumps(decisions) if decisions else "[]",
        None,
        False,
    )


def hand_over(log: RunLog, records: Sequence[Prebuilt]) -> None:
    action = log.action
    for run_id, seq, tool, started, args, result, cost, decisions in records:
        action(
            run_id,
            seq,
            tool=tool,
            service=SERVICE,
            agent=AGENT,
            started=started,
            duration=0.01,
            status="succeeded",
            args=args,
            result=result,
            estimated_cost=cost,
            actual_cost=cost,
            decisions=decisions,
        )


@contextmanager
def bare_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """The run log's schema (made by RunLog), opened as RunLog opens it: WAL, synchronous=NORMAL."""
    RunLog(path, pii=False).close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    try:
        yield connection
    finally:
        connection.close()


def insert_rows(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), TRANSACTION_ROWS):
        connection.execute("BEGIN")
        connection.executemany(_INSERT, rows[start : start + TRANSACTION_ROWS])
        connection.execute("COMMIT")


def insert_encoding(connection: sqlite3.Connection, records: Sequence[Prebuilt]) -> None:
    for start in range(0, len(records), TRANSACTION_ROWS):
        rows = [encoded_row(record) for record in records[start : start + TRANSACTION_ROWS]]
        connection.execute("BEGIN")
        connection.executemany(_INSERT, rows)
        connection.execute("COMMIT")


SQLITE_ROWS = "sqlite3, rows encoded before (SQLite alone)"
SQLITE_ENCODING = "sqlite3, encoding in the loop"
LOG_RAW = "RunLog(pii=False): the storage"
LOG_PII = "RunLog(pii=True), the default"
WRITE_CONFIGS = (SQLITE_ROWS, SQLITE_ENCODING, LOG_RAW, LOG_PII)


@dataclass
class Writes:
    """The runs of one write configuration."""

    seconds: list[float] = field(default_factory=list)  # until everything is committed
    handed: list[float] = field(default_factory=list)  # until the caller handed the last record over
    waits: list[int | None] = field(default_factory=list)
    dropped: int = 0
    failed: int = 0
    stored: list[int] = field(default_factory=list)
    redacted: list[int] = field(default_factory=list)

    def rate(self, count: int) -> float | None:
        seconds = median(self.seconds)
        return count / seconds if seconds else None


def count_rows(path: Path) -> tuple[int, int]:
    """How many actions ``path`` holds, and how many of them say they were redacted."""
    connection = sqlite3.connect(path)
    try:
        total, redacted = connection.execute("SELECT COUNT(*), TOTAL(redacted) FROM actions").fetchone()
    finally:
        connection.close()
    return int(total), int(redacted)


def measure_writes(
    records: Sequence[Prebuilt], folder: Path, repeat: int, progress: Callable[[str], None]
) -> dict[str, Writes]:
    progress("encoding the rows for the bare baseline")
    rows = [encoded_row(record) for record in records]
    results = {name: Writes() for name in WRITE_CONFIGS}
    clock = time.perf_counter
    for round_ in range(repeat):
        for name in WRITE_CONFIGS:
            progress(f"{name}: run {round_ + 1} of {repeat}")
            path = folder / "writes.db"
            remove_database(path)
            result = results[name]
            if name in (SQLITE_ROWS, SQLITE_ENCODING):
                with bare_connection(path) as connection:
                    gc.collect()
                    start = clock()
                    if name == SQLITE_ROWS:
                        insert_rows(connection, rows)
                    else:
                        insert_encoding(connection, records)
                    elapsed = clock() - start
                result.seconds.append(elapsed)
                result.handed.append(elapsed)
                result.waits.append(0)
            else:
                log = open_log(path, pii=name == LOG_PII)
                gc.collect()
                start = clock()
                hand_over(log.log, records)
                handed = clock() - start
                log.flush()
                result.seconds.append(clock() - start)
                result.handed.append(handed)
                result.waits.append(log.waits)
                result.dropped += log.log.dropped
                result.failed += log.log.failed
                log.log.close()
            stored, redacted = count_rows(path)
            result.stored.append(stored)
            result.redacted.append(redacted)
            remove_database(path)
    return results


def writes_table(results: dict[str, Writes], count: int, repeat: int) -> Table:
    table = Table(
        title=f"2. Write throughput: {count:,} actions (runs of {ACTIONS_PER_RUN}) into a new SQLite file, "
        f"{TRANSACTION_ROWS} per transaction; until everything is committed",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("writer")
    table.add_column(f"actions/s (median of {repeat})", justify="right")
    table.add_column("us/action", justify="right")
    table.add_column("seconds min-max", justify="right", style="dim")
    table.add_column("caller done after s", justify="right")
    table.add_column("caller waited for room", justify="right")
    table.add_column("stored (redacted)", justify="right")
    table.add_column("vs SQLite alone", justify="right")
    floor = results[SQLITE_ROWS].rate(count)
    for name in WRITE_CONFIGS:
        result = results[name]
        rate = result.rate(count)
        seconds = median(result.seconds)
        waits = result.waits
        waited = "unknown" if None in waits else f"{statistics.median(w or 0 for w in waits):,.0f} times/run"
        stored = ", ".join(sorted({f"{s:,}" for s in result.stored}))
        redacted = ", ".join(sorted({f"{r:,}" for r in result.redacted}))
        table.add_row(
            name,
            fmt(rate, ",.0f"),
            fmt(seconds * 1e6 / count if seconds else None),
            spread(result.seconds),
            fmt(median(result.handed)),
            waited if name in (LOG_RAW, LOG_PII) else "",
            f"{stored} ({redacted})",
            fmt(ratio(floor, rate), ".2f", "x slower") if name != SQLITE_ROWS else "",
        )
    dropped = sum(r.dropped for r in results.values())
    failed = sum(r.failed for r in results.values())
    table.caption = (
        "RunLog rows: pre-built arguments handed to RunLog.action() in a loop (queue_size=10,000, "
        'on_full="block"), the clock stopped when flush() returns; "caller done": when the loop ended; '
        "pii=True redacts on the writer thread. RunLog.dropped: "
        f"{dropped}; failed: {failed}. sqlite3 rows: the same rows into the same schema with the same "
        "pragmas, executemany in one thread, no queue: encoded before the timing (SQLite alone), or each "
        "row's JSON columns encoded in the loop with proctor.runs.encode.encode (the log's work with "
        "pii=False, without its queue and thread)."
    )
    return table


# --------------------------------------------------------------------------- 3. what-if replay


WHATIF_SERVICE = "support"
WHATIF_AGENTS = tuple(f"agent-{i:02d}" for i in range(20))
HEAVY_AGENTS = 2  # the first agents spend this many times more
HEAVY_FACTOR = 4.0
RUN_SPACING = 43.2  # seconds between run starts: 2,000 runs a day
WHATIF_BASE = datetime(2024, 3, 4, tzinfo=UTC).timestamp()  # a Monday, midnight UTC
COST_TODAY_LIMIT = 800.0
COST_RUN_LIMIT = 15.0
WHATIF_TOOLS = (
    ("crm.lookup", 30.0),
    ("kb.search", 25.0),
    ("db.query", 15.0),
    ("http.get", 12.0),
    ("email.send", 10.0),
    ("payments.refund", 7.7),
    ("shell.exec", 0.2),
    ("admin.reset", 0.1),
)


def whatif_mapping(cost_today: bool = True) -> dict[str, Any]:
    """10 rules: on tool names, arguments, cost, cost_run, tool_calls_in_run, and one on cost_today."""

    def rule(rule_id: str, action: str, when: dict[str, Any]) -> dict[str, Any]:
        return {"id": rule_id, "when": when, "action": action, "message": f"bench rule {rule_id}"}

    rules = [
        rule("w00-no-shell", "deny", {"tool": "shell.exec"}),
        rule("w01-no-admin", "terminate", {"tool": {"starts_with": "admin."}}),
        rule("w02-big-refund", "deny", {"tool": "payments.refund", "args.amount": {"gt": 500}}),
        rule("w03-system-tables", "deny", {"tool": "db.query", "args.table": {"starts_with": "pg_"}}),
        rule("w04-mass-mail", "deny", {"tool": "email.send", "args.recipients": {"gt": 50}}),
        rule("w05-plain-http", "log", {"tool": "http.get", "args.url": {"starts_with": "http://"}}),
        rule("w06-costly-call", "require_approval", {"cost": {"gt": 5.0}}),
        rule("w07-costly-run", "terminate", {"cost_run": {"gt": COST_RUN_LIMIT}}),
        rule("w08-late-refund", "deny", {"tool": "payments.refund", "tool_calls_in_run": {"gt": 8}}),
    ]
    if cost_today:
        rules.append(rule("w09-daily-budget", "deny", {"cost_today": {"gt": COST_TODAY_LIMIT}}))
    return {"defaults": {"timezone": "UTC"}, "policies": rules}


def whatif_args(tool: str, rng: random.Random) -> dict[str, Any]:
    """A tool's arguments; one call in a hundred has the risky value its rule looks for."""
    risky = rng.random() < 0.01
    customer = f"cust-{rng.randint(1000, 9999)}"
    if tool == "crm.lookup":
        return {
            "customer": customer,
            "query": "orders",
            "options": dict(OPTIONS),
            "limit": rng.randint(1, 200),
        }
    if tool == "kb.search":
        return {"q": rng.choice(("refund policy", "reset password", "shipping times")), "top": 5}
    if tool == "db.query":
        return {"table": "pg_authid" if risky else rng.choice(("orders", "tickets")), "limit": 100}
    if tool == "http.get":
        host = rng.choice(("api.example.com", "status.example.org"))
        return {"url": f"{'http' if risky else 'https'}://{host}/v1", "timeout": 10}
    if tool == "email.send":
        return {"to": customer, "template": "reply", "recipients": rng.randint(51, 500) if risky else 1}
    if tool == "payments.refund":
        amount = rng.randint(501, 2000) if risky else rng.randint(5, 400)
        return {"account": f"acct-{rng.randint(1000, 9999)}", "amount": amount, "currency": "EUR"}
    if tool == "shell.exec":
        return {"command": "ls -l /srv"}
    return {"target": customer}


@dataclass
class DataSet:
    log: RunLog
    runs: int
    actions: int
    since: float
    until: float
    seconds: float  # to write it and flush


def build_dataset(path: Path, runs: int, rng: random.Random) -> DataSet:
    """``runs`` runs of ``ACTIONS_PER_RUN`` actions, written with RunLog(pii=False) and flushed."""
    tools = [name for name, _ in WHATIF_TOOLS]
    weights = [weight for _, weight in WHATIF_TOOLS]
    failure = RuntimeError("upstream timed out")
    old_rule = [{"phase": "before", "rule": "old-shell", "action": "log", "decided": True}]
    start = time.perf_counter()
    log = RunLog(path, pii=False)
    actions = 0
    for i in range(runs):
        run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        agent_index = i % len(WHATIF_AGENTS)
        factor = HEAVY_FACTOR if agent_index < HEAVY_AGENTS else 1.0
        agent = WHATIF_AGENTS[agent_index]
        started = WHATIF_BASE + i * RUN_SPACING
        ticket = {"ticket": 100_000 + i, "customer": f"cust-{rng.randint(1000, 9999)}", "priority": "normal"}
        log.run_started(
            run_id,
            service=WHATIF_SERVICE,
            agent=agent,
            tool=OUTER_TOOL,
            function="support_bot:handle_ticket",
            started=started,
            input=ticket,
        )
        total = 0.0
        at = started + 0.1
        for seq in range(1, ACTIONS_PER_RUN + 1):
            tool = rng.choices(tools, weights)[0]
            cost = rng.uniform(5.0, 9.0) if rng.random() < 0.01 else rng.uniform(0.01, 0.5)
            cost = round(cost * factor, 4)
            failed = rng.random() < 0.01
            log.action(
                run_id,
                seq,
                tool=tool,
                service=WHATIF_SERVICE,
                agent=agent,
                started=at,
                duration=1.0,
                status="failed" if failed else "succeeded",
                args=whatif_args(tool, rng),
                result={"ok": True, "items": rng.randint(0, 9)} if not failed else None,
                error=failure if failed else None,
                estimated_cost=cost,
                actual_cost=cost,
                decisions=old_rule if tool == "shell.exec" else (),
            )
            total += cost
            at += 2.0
            actions += 1
        log.run_finished(
            run_id,
            status="succeeded",
            ended=at,
            output={"answer": "resolved", "ticket": ticket["ticket"]},
            actual_cost=0.01,
            cost=round(total + 0.01, 4),
            effects={"seed": i, "now": [], "uuid": []},
        )
    if not log.flush(timeout=600):
        raise RuntimeError("the data set was not written within 600 s")
    seconds = time.perf_counter() - start
    return DataSet(log, runs, actions, WHATIF_BASE, WHATIF_BASE + runs * RUN_SPACING + 1.0, seconds)


WHATIF_FULL = "what-if, 10 rules (with cost_today: all runs on one clock)"
WHATIF_NO_DAILY = "what-if, the 9 rules without cost_today (run after run)"
READ_ONLY = "select_runs + iterate log.actions_of (reading alone)"
WHATIF_CONFIGS = (WHATIF_FULL, WHATIF_NO_DAILY, READ_ONLY)


@dataclass
class Replays:
    seconds: list[float] = field(default_factory=list)
    selecting: list[float] = field(default_factory=list)
    runs: int = 0
    actions: int = 0  # recorded actions of the runs selected
    results: list[ReplayResult] = field(default_factory=list)
    error: str | None = None

    def rate(self) -> float | None:
        seconds = median(self.seconds)
        return self.actions / seconds if seconds and self.error is None else None


def measure_whatif(
    data: DataSet, rules: dict[str, RuleSet], repeat: int, progress: Callable[[str], None]
) -> dict[str, Replays]:
    results = {name: Replays() for name in WHATIF_CONFIGS}
    log = data.log
    clock = time.perf_counter
    for round_ in range(repeat):
        for name in WHATIF_CONFIGS:
            progress(f"{name}: run {round_ + 1} of {repeat}")
            result = results[name]
            if result.error is not None:
                continue
            gc.collect()
            try:
                start = clock()
                runs = select_runs(
                    log, since=data.since, until=data.until, filters={"service": WHATIF_SERVICE}
                )
                selected = clock()
                if name == READ_ONLY:
                    actions = sum(1 for _ in log.actions_of([run.run_id for run in runs]))
                    replayed: list[ReplayResult] = []
                else:
                    replayed = what_if(log, runs, rules[name])
                done = clock()
            except Exception as exc:  # another engineer's module still in progress: report, go on
                result.error = f"{type(exc).__name__}: {exc}"
                continue
            result.seconds.append(done - start)
            result.selecting.append(selected - start)
            result.runs = len(runs)
            result.actions = actions if name == READ_ONLY else data.actions * len(runs) // data.runs
            result.results = replayed
    return results


def whatif_table(data: DataSet, results: dict[str, Replays], repeat: int) -> Table:
    table = Table(
        title=f"3. What-if replay: {data.runs:,} recorded runs x {ACTIONS_PER_RUN} actions "
        f"({data.actions:,} actions), select_runs + what_if(log, runs, rules)",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("what")
    table.add_column(f"actions/s (median of {repeat})", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("seconds min-max", justify="right", style="dim")
    table.add_column("of which select_runs s", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("decisions made", justify="right")
    for name in WHATIF_CONFIGS:
        result = results[name]
        if result.error is not None:
            table.add_row(name, "[red]error[/red]", "", "", "", "", result.error)
            continue
        decisions = sum(len(item.decisions) for item in result.results)
        table.add_row(
            name,
            fmt(result.rate(), ",.0f"),
            fmt(median(result.seconds), ".3f"),
            spread(result.seconds, ".3f"),
            fmt(median(result.selecting), ".3f"),
            f"{result.runs:,}",
            f"{decisions:,}" if name != READ_ONLY else "",
        )
    table.caption = (
        f"actions/s = recorded actions of the runs selected / (select_runs + what_if). The data set was "
        f"written with RunLog(pii=False) in {data.seconds:.2f} s before the timing "
        f"({(data.actions + 2 * data.runs) / data.seconds:,.0f} records/s, run starts and ends included). "
        "Decisions made include each run's top-level call (action 0); a run stopped by a deny or "
        "terminate is not evaluated further."
    )
    return table


def impact_lines(report: ImpactReport) -> list[str]:
    return [
        f"What the 10 rules did (ImpactReport.of(results)): {report.runs:,} runs, {report.actions:,} "
        f"decisions; {report.runs_affected:,} runs affected, {report.actions_changed:,} actions changed;",
        f"cost {report.cost_before:,.2f} -> {report.cost_after:,.2f} (saved {report.cost_saved:,.2f}); "
        f"success rate {report.success_rate_before:.1%} -> {report.success_rate_after:.1%}",
    ]


def impact_table(report: ImpactReport) -> Table:
    table = Table(title="Per rule (the deciding rule of each action)", title_justify="left")
    table.add_column("rule")
    for column in ("denied", "approval", "modified", "terminated", "logged", "runs"):
        table.add_column(column, justify="right")
    for impact in report.rules:
        table.add_row(
            impact.rule,
            *(f"{value:,}" for value in (impact.denied, impact.approval, impact.modified)),
            *(f"{value:,}" for value in (impact.terminated, impact.logged, impact.runs)),
        )
    return table


# --------------------------------------------------------------------------- targets


def targets(
    overhead: dict[str, Timing],
    logs: Sequence[Log],
    writes: dict[str, Writes],
    actions: int,
    replays: dict[str, Replays],
) -> list[Target]:
    out: list[Target] = []
    for name, official in ((NESTED_PII, True), (NESTED_RAW, False), (TOP_PII, False)):
        base = overhead[UNRECORDED[name]]
        timing = overhead[name]
        added = _minus(timing.p50, base.p50)
        out.append(
            Target(
                f"recording overhead p50: {name}",
                f"<= {TARGET_RECORDING_US:g} us" if official else "(not a target)",
                fmt(added, ".2f", " us"),
                f"not recorded p50 {fmt(base.p50)} us, recorded {fmt(timing.p50)} us; batch mean "
                f"+{fmt(_minus(timing.mean, base.mean))} us, with the flush after "
                f"+{fmt(_minus(timing.whole, base.mean))} us",
                (added <= TARGET_RECORDING_US if added is not None else None) if official else None,
                "not measured" if official else "info",
            )
        )
    for name, official in ((FILE_PII, True), (NESTED_PII, False), (NESTED_RAW, False)):
        base = overhead[UNRECORDED[name]]
        whole = overhead[name].whole
        times = ratio(whole, base.mean)
        out.append(
            Target(
                f"sustained cost, recorded / not: {name}",
                f"<= {TARGET_SUSTAINED:g}x" if official else "(info)",
                fmt(times, ".2f", "x"),
                f"batch mean + flush {fmt(whole)} us per call, not recorded {fmt(base.mean)} us",
                (times <= TARGET_SUSTAINED if times is not None else None) if official else None,
                "not measured" if official else "info",
            )
        )
    waits = [log.waits for log in logs]
    dropped = sum(log.log.dropped for log in logs)
    failed = sum(log.log.failed for log in logs)
    flushes = [f for name in (NESTED_PII, NESTED_RAW, TOP_PII, TOP_RAW) for f in overhead[name].flushes]
    known = None not in waits
    out.append(
        Target(
            "nothing recorded in (1.) is lost",
            "0 dropped, 0 failed",
            f"dropped {dropped}, failed {failed}",
            (f"callers waited for room {sum(w or 0 for w in waits)}x (on_full='block'); " if known else "")
            + f"flush after a timed block: median {fmt(median(flushes), '.3f')} s, "
            f"max {fmt(max(flushes) if flushes else None, '.3f')} s",
            dropped == 0 and failed == 0,
            "",
        )
    )
    floor = writes[SQLITE_ROWS].rate(actions)
    encoding = writes[SQLITE_ENCODING].rate(actions)
    for name, official in ((LOG_RAW, True), (LOG_PII, False)):
        rate = writes[name].rate(actions)
        result = writes[name]
        complete = all(stored == actions for stored in result.stored) and not result.dropped
        out.append(
            Target(
                f"write throughput, {name}",
                f">= {TARGET_WRITES:,.0f} actions/s" if official else "(info: the target is on pii=False)",
                fmt(rate, ",.0f", "/s"),
                f"bare sqlite3 {fmt(floor, ',.0f')}/s; encoding in the loop {fmt(encoding, ',.0f')}/s",
                (rate is not None and rate >= TARGET_WRITES and complete) if official else None,
                "not measured" if official else "info",
            )
        )
    for name, target in ((LOG_PII, TARGET_WRITES_PII), (LOG_RAW, TARGET_WRITES_RAW)):
        rate = writes[name].rate(actions)
        share = ratio(rate, floor)
        out.append(
            Target(
                f"writes against bare executemany, same rows pre-encoded: {name}",
                f">= {target:g}x",
                fmt(share, ".2f", "x"),
                f"{fmt(rate, ',.0f')}/s against {fmt(floor, ',.0f')}/s",
                share >= target if share is not None else None,
                "not measured",
            )
        )
    full = replays[WHATIF_FULL]
    rate = full.rate()
    out.append(
        Target(
            "what-if replay, 10 rules incl. cost_today (select + read + evaluate)",
            f">= {TARGET_WHATIF:,.0f} actions/s",
            fmt(rate, ",.0f", "/s"),
            f"without cost_today {fmt(replays[WHATIF_NO_DAILY].rate(), ',.0f')}/s; reading alone "
            f"{fmt(replays[READ_ONLY].rate(), ',.0f')}/s",
            None if rate is None else rate >= TARGET_WHATIF,
            full.error or "not measured",
        )
    )
    return out


def header_lines(folder: Path) -> list[str]:
    clock = time.get_clock_info("perf_counter")
    kind = filesystem(folder)
    return [
        *machine_lines({}),
        f"sqlite:  {sqlite3.sqlite_version}; databases in {folder}{f' ({kind})' if kind else ''}",
        f"clock:   time.perf_counter_ns ({clock.implementation}, resolution {clock.resolution * 1e9:g} ns)",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What recording a run costs the caller of a @runlog function, how fast the run log "
        "writes to SQLite, and how fast what-if re-evaluates recorded runs.",
        epilog="The exit status is 0 even when a target is missed: this prints a report.",
    )
    parser.add_argument(
        "--actions",
        type=positive,
        default=None,
        help=f"actions written per write-throughput run (default {DEFAULT_ACTIONS:,}; "
        f"{QUICK_ACTIONS:,} with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=positive,
        default=None,
        help=f"runs per configuration; medians are reported (default {DEFAULT_REPEAT}; "
        f"{QUICK_REPEAT} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_CALLS:,} calls, {QUICK_ACTIONS:,} actions written, "
        f"{QUICK_WHATIF_RUNS:,} runs replayed, {QUICK_REPEAT} runs each",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_run_log(None)  # recording off until a configuration records into its own log
    calls = QUICK_CALLS if args.quick else DEFAULT_CALLS
    repeat: int = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    actions: int = args.actions or (QUICK_ACTIONS if args.quick else DEFAULT_ACTIONS)
    whatif_runs = QUICK_WHATIF_RUNS if args.quick else WHATIF_RUNS

    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    progress_console = Console(stderr=True)
    folder = Path(tempfile.mkdtemp(prefix="proctor-bench-runlog-"))
    try:
        console.rule("proctor run log benchmark")
        for line in header_lines(folder):
            console.print(line)
        floor = time_empty(max(calls, 10_000))
        console.print(
            f"timing:  each call timed on its own with perf_counter_ns; an empty timed region measures "
            f"p50 {percentile_us(floor, 0.5):.3f} us, p99 {percentile_us(floor, 0.99):.3f} us "
            "(included in every per-call figure; nothing is subtracted)"
        )
        console.print(
            f"statistic: medians of {repeat} runs, rounds interleaved; {calls:,} calls per run after "
            f"{min(calls, WARMUP):,} untimed ones; gc on, collected before each timed block"
        )
        console.print()

        with status(progress_console, "1. recording overhead") as progress:
            setup = setup_overhead(folder)
            overhead = measure_overhead(setup, calls, repeat, progress)
        console.print(overhead_table(setup, overhead, calls, repeat))
        console.print()
        for log in setup.logs:
            log.log.close()

        with status(progress_console, "2. write throughput") as progress:
            progress(f"building {actions:,} records")
            records = build_records(actions, random.Random(SEED))
            writes = measure_writes(records, folder, repeat, progress)
            del records
        console.print(writes_table(writes, actions, repeat))
        console.print()

        with status(progress_console, "3. what-if") as progress:
            progress(f"writing the data set: {whatif_runs:,} runs x {ACTIONS_PER_RUN} actions")
            data = build_dataset(folder / "whatif.db", whatif_runs, random.Random(SEED + 1))
            rules = {
                WHATIF_FULL: parse_policies(whatif_mapping(), "<10 what-if rules>"),
                WHATIF_NO_DAILY: parse_policies(whatif_mapping(cost_today=False), "<9 what-if rules>"),
            }
            replays = measure_whatif(data, rules, repeat, progress)
        console.print(whatif_table(data, replays, repeat))
        full = replays[WHATIF_FULL]
        if full.error is None:
            report = ImpactReport.of(full.results)
            for line in impact_lines(report):
                console.print(line)
            console.print(impact_table(report))
        console.print()
        data.log.close()

        console.print(targets_table(targets(overhead, setup.logs, writes, actions, replays)))
        if args.quick or repeat < DEFAULT_REPEAT or actions < DEFAULT_ACTIONS:
            console.print(
                f"[yellow]note: {calls:,} calls, {actions:,} actions, {whatif_runs:,} runs x {repeat} runs "
                f"is not the issue's configuration ({DEFAULT_CALLS:,} calls, {DEFAULT_ACTIONS:,} actions, "
                f"{WHATIF_RUNS:,} runs x {DEFAULT_REPEAT}); treat the verdicts as a smoke test[/yellow]"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
