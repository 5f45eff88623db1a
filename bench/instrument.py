"""What ``proctor.instrument()`` adds to an OpenAI SDK call, against the bare SDK call, in one run.

Run it by hand::

    .venv/bin/python bench/instrument.py            # the full run, about a minute
    .venv/bin/python bench/instrument.py --quick    # a smoke run, seconds

The server is the tests' stand-in of the OpenAI API (``tests/instrument/
llm_server.py``: a threaded ``http.server`` on loopback answering the
documented JSON and SSE shapes), run in a process of its own so that its work
does not share the measured interpreter. One ``openai.OpenAI`` client per row
(``max_retries=0``), each warmed up first; a call is
``client.chat.completions.create(model=..., messages=[one message],
max_tokens=64)``, a stream the same with ``stream=True`` read to its end. Each
call is timed on its own (``perf_counter_ns``); the rows take turns call by
call (so that the machine's load falls on all of them alike), but for the
recorded row, timed alone after them (its writer thread would slow the calls
timed next to it); the table shows
the median over ``--repeat`` rounds of each row's p50 and p99, and the ratio
of its p50 to the bare call's p50 in the same run; and the CPU time the
calling thread spent per call (``thread_time_ns``, p50: the SDK's work and
proctor's, not the wait for the server), which a loaded machine disturbs
less than wall time.

Rows: the bare SDK call; ``instrument(client, prices=...)`` (a governed call:
the estimate, the settle from usage; recording off); with a ``BudgetPolicy``
(a reservation and its settle per call); with a ``BudgetPolicy`` and 10 rules
from a policy mapping (facts, ``contains_pii`` on the messages); with the
budget and recording on (``RunLog()`` in a temporary folder: each call a
recorded run). And a stream, bare and governed (with the budget).

A second table isolates proctor's own part: the same rows with the SDK's
``create`` replaced (before ``instrument()``) by a stub that returns a parsed
``ChatCompletion`` at once, so no HTTP and no parsing, ten times the calls.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.instrument.llm_server

from _report import fmt, machine_lines, percentile_us, positive, ratio
from proctor import BudgetPolicy, RunLog, instrument, set_run_log

MODEL = "bench-model"
PRICES = {MODEL: {"input": 1.0, "output": 2.0, "cache_read": 0.5}}
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]
RULES = {
    "policies": [
        {"id": "no-big-model", "when": {"args.model": "gpt-4.5-preview"}, "action": "deny"},
        {"id": "cap-tokens", "when": {"args.max_tokens": {"gt": 100_000}}, "action": "deny"},
        {"id": "dear", "when": {"cost": {"gt": 5.0}}, "action": "deny"},
        {"id": "no-pii", "when": {"args.messages": {"contains_pii": True}}, "action": "deny"},
        {"id": "night", "when": {"time.hour": {"in": [2, 3]}, "agent": "batch"}, "action": "deny"},
        {"id": "hot", "when": {"args.temperature": {"gt": 1.5}}, "action": "log"},
        {"id": "tools", "when": {"args.tools": {"exists": True}, "agent": "intern"}, "action": "deny"},
        {"id": "other-tool", "when": {"tool": "db.*"}, "action": "deny"},
        {"id": "loop", "when": {"tool_calls_in_run": {"gt": 500}}, "action": "terminate"},
        {"id": "sys", "when": {"args.messages.0.role": "system", "agent": "guest"}, "action": "deny"},
    ]
}


def _serve(pipe: Connection) -> None:
    from tests.instrument.llm_server import LLMServer

    server = LLMServer()
    pipe.send(server.openai_url)
    pipe.recv()  # until told to stop
    server.close()


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="bench", base_url=url, max_retries=0)


def _plain(client: openai.OpenAI) -> Callable[[], Any]:
    def one() -> Any:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=64)  # type: ignore[arg-type]

    return one


def _streamed(client: openai.OpenAI) -> Callable[[], Any]:
    def one() -> Any:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=64,
            stream=True,
        )
        for _ in stream:
            pass

    return one


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=positive, default=500, help="timed calls per row and round")
    parser.add_argument("--repeat", type=positive, default=3, help="rounds")
    parser.add_argument("--quick", action="store_true", help="100 calls, 1 round")
    parser.add_argument("--stub-only", action="store_true", help="only proctor's own part (no server)")
    args = parser.parse_args()
    calls, repeat = (100, 1) if args.quick else (args.calls, args.repeat)
    console = Console(width=150)
    for line in machine_lines({"openai": openai.__version__}):
        console.print(line)
    if args.stub_only:
        set_run_log(None)
        console.print(_own_work(calls * 10, repeat, tempfile.mkdtemp(prefix="proctor-bench-instrument-")))
        return

    here, there = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(there,), daemon=True)
    server.start()
    url = here.recv()
    folder = tempfile.mkdtemp(prefix="proctor-bench-instrument-")
    set_run_log(None)
    recorded = RunLog(str(Path(folder) / "runs.db"))

    def budget() -> BudgetPolicy:
        return BudgetPolicy(default_limit=1e9)

    def governed(**options: Any) -> openai.OpenAI:
        return instrument(_client(url), prices=PRICES, **options)

    rows: list[tuple[str, Callable[[], Any], RunLog | None]] = [
        ("bare SDK call", _plain(_client(url)), None),
        ("instrument(prices=...)", _plain(instrument(_client(url), prices=PRICES)), None),
        ("+ budget", _plain(instrument(_client(url), prices=PRICES, budget=budget())), None),
        (
            "+ budget + 10 rules",
            _plain(instrument(_client(url), prices=PRICES, budget=budget(), policies=RULES)),
            None,
        ),
        (
            "+ budget, recorded (RunLog)",
            _plain(instrument(_client(url), prices=PRICES, budget=budget())),
            recorded,
        ),
        ("bare SDK stream", _streamed(_client(url)), None),
        (
            "stream, instrument + budget",
            _streamed(instrument(_client(url), prices=PRICES, budget=budget())),
            None,
        ),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in rows}
    cpu_results: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for _, call, log in rows:  # warm-up: connections, imports, first-call caches
        set_run_log(log)
        for _ in range(50):
            call()
    gc.collect()
    gc.freeze()  # the clients, the SDK and the table are not traced again by every full collection
    for _ in range(repeat):
        samples, spent = _round(rows, calls)
        for row, (name, _, _) in enumerate(rows):
            results[name].append((percentile_us(samples[row], 0.5), percentile_us(samples[row], 0.99)))
            cpu_results[name].append(percentile_us(spent[row], 0.5))
    set_run_log(None)
    recorded.close()
    here.send("stop")
    server.join(5)

    table = Table(
        title=f"OpenAI chat completion on loopback, {calls} calls x {repeat} rounds", title_justify="left"
    )
    table.add_column("")
    table.add_column("p50 us", justify="right")
    table.add_column("p99 us", justify="right")
    table.add_column("p50 vs bare", justify="right")
    table.add_column("added p50 us", justify="right")
    table.add_column("caller CPU p50 us", justify="right")
    table.add_column("CPU vs bare", justify="right")
    baseline: dict[str, tuple[float, float]] = {}
    for name, _, _ in rows:
        p50 = statistics.median(p for p, _ in results[name])
        p99 = statistics.median(p for _, p in results[name])
        used = statistics.median(cpu_results[name])
        bare = "bare SDK stream" if "stream" in name else "bare SDK call"
        if name.startswith("bare"):
            baseline[name] = (p50, used)
        base, base_cpu = baseline[bare]
        table.add_row(
            name,
            fmt(p50),
            fmt(p99),
            fmt(ratio(p50, base), ".3f", "x"),
            fmt(p50 - base, "+.1f"),
            fmt(used),
            fmt(ratio(used, base_cpu), ".3f", "x"),
        )
    console.print(table)
    spread = {name: [round(p, 1) for p, _ in results[name]] for name, _, _ in rows}
    console.print(f"p50 per round (us): {spread}")
    console.print(_own_work(calls * 10, repeat, folder))


def _round(
    rows: list[tuple[str, Callable[[], Any], RunLog | None]], calls: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Wall and caller CPU nanoseconds of ``calls`` calls of each row.

    The unrecorded rows take turns call by call, so that the machine's load falls on all of them
    alike. A recorded row runs alone after them, its log flushed before the next round: its writer
    thread, busy with what the row recorded, would slow the calls timed next to it.
    """
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    samples = [[0] * calls for _ in rows]
    spent = [[0] * calls for _ in rows]

    def timed(row: int, i: int) -> None:
        call = rows[row][1]
        start, start_cpu = clock(), cpu()
        call()
        samples[row][i] = clock() - start
        spent[row][i] = cpu() - start_cpu

    set_run_log(None)
    unrecorded = [row for row, (_, _, log) in enumerate(rows) if log is None]
    for i in range(calls):
        for row in unrecorded:
            timed(row, i)
    for row, (_, _, log) in enumerate(rows):
        if log is not None:
            set_run_log(log)
            for i in range(calls):
                timed(row, i)
            log.flush()
            set_run_log(None)
    return samples, spent


def _stubbed(url: str) -> openai.OpenAI:
    """A client whose ``chat.completions.create`` answers a parsed completion without any I/O."""
    sdk = _client(url)
    method = sdk.chat.completions.create
    answer = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        }
    )

    def create(**request: Any) -> ChatCompletion:
        return answer

    create.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    sdk.chat.completions.create = create  # type: ignore[method-assign,assignment]
    return sdk


def _own_work(calls: int, repeat: int, folder: str) -> Table:
    """proctor's own part of a governed call: the SDK method replaced by a stub, so no HTTP, no parsing."""
    recorded = RunLog(str(Path(folder) / "own.db"))
    rows: list[tuple[str, Callable[[], Any], RunLog | None]] = [
        ("stub, not instrumented", _plain(_stubbed("http://127.0.0.1:9/v1")), None),
        (
            "instrument(prices=...)",
            _plain(instrument(_stubbed("http://127.0.0.1:9/v1"), prices=PRICES)),
            None,
        ),
    ]
    for name, options, log in (
        ("+ budget", {}, None),
        ("+ budget + 10 rules", {"policies": RULES}, None),
        ("+ budget, recorded (RunLog)", {}, recorded),
    ):
        governed = instrument(
            _stubbed("http://127.0.0.1:9/v1"),
            prices=PRICES,
            budget=BudgetPolicy(default_limit=1e9),
            **options,  # type: ignore[arg-type]
        )
        rows.append((name, _plain(governed), log))
    found: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    found_cpu: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    gc.collect()
    gc.freeze()  # the clients, the SDK and the table are not traced again by every full collection
    for _ in range(repeat):
        samples, spent = _round(rows, calls)
        for row, (name, _, _) in enumerate(rows):
            found[name].append(percentile_us(samples[row], 0.5))
            found_cpu[name].append(percentile_us(spent[row], 0.5))
    set_run_log(None)
    recorded.close()
    table = Table(
        title=f"proctor's own part: create() answered by a stub, {calls} calls x {repeat} rounds",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("p50 us", justify="right")
    table.add_column("added p50 us", justify="right")
    table.add_column("CPU p50 us", justify="right")
    table.add_column("added CPU us", justify="right")
    stub = statistics.median(found["stub, not instrumented"])
    stub_cpu = statistics.median(found_cpu["stub, not instrumented"])
    for name, _, _ in rows:
        p50, used = statistics.median(found[name]), statistics.median(found_cpu[name])
        table.add_row(name, fmt(p50), fmt(p50 - stub, "+.1f"), fmt(used), fmt(used - stub_cpu, "+.1f"))
    return table


if __name__ == "__main__":
    main()
