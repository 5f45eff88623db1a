"""The MCP gateway's cost: a tool call through ``proctor mcp proxy`` against the same call made directly.

Run it with::

    .venv/bin/python bench/mcp_gateway.py              # about a minute
    .venv/bin/python bench/mcp_gateway.py --calls 300 --rounds 1

The server is ``bench/_mcp_server.py``, written with the MCP SDK, whose one tool
``noop`` does nothing. The client is the SDK's ``ClientSession``. Over stdio, the
client starts the server, or the gateway that starts the server; over
streamable HTTP, the client reaches the server's URL, or the gateway's URL in
front of it. The gateway reads a policy file of 10 rules that all apply to
every call (none matches the no-op call, so each is evaluated) and records
every session as a run in a run log (SQLite, in a temporary folder).

Latency: ``--calls`` calls one after another in one session, after a warm-up;
the p50 over ``--rounds`` rounds (the median of the rounds' p50s). Throughput
(HTTP): ``--concurrency`` calls in flight at once in one session, for
``--burst`` calls; calls per second. The targets (issue 13, item 5): the gateway
adds at most 1.5x a direct call's p50, and sustains at least 1,000 calls/s per
HTTP session. The exit status is 0 whatever the figures: this is a report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console
from rich.table import Table

from _report import Target, fmt, machine_lines, positive, targets_table

SERVER = str(Path(__file__).with_name("_mcp_server.py"))
PROCTOR = str(Path(sys.executable).with_name("proctor"))

RULES = """\
policies:
  - {id: r1, when: {tool: "write_*"}, action: deny}
  - {id: r2, when: {tool: "*", args.path: {starts_with: /etc}}, action: deny}
  - {id: r3, when: {args.n: {gt: 1000000}}, action: deny}
  - {id: r4, when: {agent: intruder}, action: deny}
  - {id: r5, when: {annotations.destructiveHint: true}, action: require_approval}
  - {id: r6, when: {tool: "delete_*"}, action: require_approval}
  - {id: r7, when: {args.query: {matches: "(?i)drop\\\\s+table"}}, action: deny}
  - {id: r8, when: {tool: "send_*", args.to: {ends_with: "@x.com"}}, action: modify, set: {args.cc: audit}}
  - {id: r9, when: {tool_calls_in_run: {gt: 1000000}}, action: terminate}
  - {id: r10, when: {server: other}, action: log}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _cpu(process: subprocess.Popen[bytes]) -> float | None:
    """CPU seconds ``process`` has used (user and system), from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _process(command: Sequence[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def _stdio(command: Sequence[str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=list(command[1:]))
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            yield client


@contextlib.asynccontextmanager
async def _http(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def _chain_cpu() -> float | None:
    """CPU seconds used so far by this process and every process it started, and theirs (from /proc)."""
    total = time.process_time()
    pending = [os.getpid()]
    while pending:
        pid = pending.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            pending.append(int(child))
    return total


async def _latencies(client: ClientSession, calls: int) -> tuple[list[float], float | None]:
    """Seconds per call, ``calls`` one after another (after a warm-up of 20); and the CPU seconds per
    call of the whole chain (client, gateway, server), which the machine's load does not inflate."""
    for _ in range(20):
        await client.call_tool("noop", {"n": 1})
    samples = []
    clock = time.perf_counter
    cpu_before = _chain_cpu()
    for _ in range(calls):
        began = clock()
        await client.call_tool("noop", {"n": 1})
        samples.append(clock() - began)
    cpu_after = _chain_cpu()
    used = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / calls
    return samples, used


async def _throughput(client: ClientSession, burst: int, concurrency: int) -> float:
    """Calls per second with ``concurrency`` calls in flight at once in one session."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await client.call_tool("noop", {"n": 1})

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(burst)))
    return burst / (time.perf_counter() - began)


def _p50(rounds: list[list[float]]) -> float:
    return statistics.median(statistics.median(samples) for samples in rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=positive, default=1000, help="calls per latency round")
    parser.add_argument("--rounds", type=positive, default=3, help="latency rounds per setup")
    parser.add_argument("--burst", type=positive, default=2000, help="calls per throughput run")
    parser.add_argument("--concurrency", type=positive, default=50, help="calls in flight at once")
    options = parser.parse_args(argv)
    console = Console()
    for line in machine_lines({"mcp": _version("mcp")}):
        console.print(line, style="dim")

    with tempfile.TemporaryDirectory(prefix="proctor-bench-mcp-") as folder:
        policies = Path(folder) / "policies.yaml"
        policies.write_text(RULES)
        os.environ["PROCTOR_DB"] = str(Path(folder) / "runs.db")
        gateway = [PROCTOR, "mcp", "proxy", "--policies", str(policies)]
        results, cpu = asyncio.run(_measure(options, gateway))

    table = Table(title="One no-op tool call, SDK client and server", title_justify="left")
    for column in ("transport", "path", "p50 latency", "ratio", "calls/s, 1 session"):
        table.add_column(column, justify="left" if column in ("transport", "path") else "right")
    for transport in ("stdio", "http"):
        direct, through = results[f"{transport} direct"], results[f"{transport} gateway"]
        for name, (p50, rate) in (("direct", direct), ("gateway, 10 rules", through)):
            table.add_row(
                transport,
                name,
                fmt(p50 * 1e6, ",.0f", " us"),
                fmt(p50 / direct[0], ".2f", "x"),
                fmt(rate, ",.0f"),
            )
    console.print(table)
    direct_cpu, gateway_cpu = cpu.pop("stdio direct", None), cpu.pop("stdio gateway", None)
    console.print(
        "stdio, CPU per call of the whole chain (client, gateway, server), one call after another: "
        f"direct {fmt(None if direct_cpu is None else direct_cpu * 1e6, ',.0f', ' us')}, "
        f"through the gateway {fmt(None if gateway_cpu is None else gateway_cpu * 1e6, ',.0f', ' us')}, "
        f"ratio {fmt(gateway_cpu / direct_cpu if gateway_cpu and direct_cpu else None, '.2f', 'x')}"
    )
    per_call = Table(
        title="CPU per call through the HTTP gateway, by process (the throughput run)", title_justify="left"
    )
    per_call.add_column("process")
    per_call.add_column("CPU per call", justify="right")
    per_call.add_column("calls/s one CPU allows", justify="right")
    for process, used in cpu.items():
        per_call.add_row(
            process,
            fmt(None if used is None else used * 1e6, ",.0f", " us"),
            fmt(1 / used if used else None, ",.0f"),
        )
    console.print(per_call)
    stdio_ratio = results["stdio gateway"][0] / results["stdio direct"][0]
    http_ratio = results["http gateway"][0] / results["http direct"][0]
    http_rate = results["http gateway"][1]
    console.print(
        targets_table(
            [
                Target(
                    "stdio: gateway p50 / direct p50",
                    "<= 1.5x",
                    f"{stdio_ratio:.2f}x",
                    "",
                    stdio_ratio <= 1.5,
                ),
                Target(
                    "HTTP: gateway p50 / direct p50", "<= 1.5x", f"{http_ratio:.2f}x", "", http_ratio <= 1.5
                ),
                Target(
                    "HTTP: calls/s through the gateway, one session",
                    ">= 1,000",
                    fmt(http_rate, ",.0f"),
                    f"direct: {fmt(results['http direct'][1], ',.0f')}",
                    http_rate is not None and http_rate >= 1000,
                ),
            ]
        )
    )
    return 0


Results = dict[str, tuple[float, float | None]]
"""Per setup: the p50 latency in seconds, and calls/s in one session (HTTP only)."""


async def _measure(
    options: argparse.Namespace, gateway: list[str]
) -> tuple[Results, dict[str, float | None]]:
    results: Results = {}
    cpu: dict[str, float | None] = {}
    server = [sys.executable, SERVER, "stdio"]
    for name, command in (("stdio direct", server), ("stdio gateway", [*gateway, "--", *server])):
        rounds = []
        chains: list[float] = []
        for _ in range(options.rounds):
            async with _stdio(command) as client:
                samples, chain = await _latencies(client, options.calls)
                rounds.append(samples)
                if chain is not None:
                    chains.append(chain)
        results[name] = (_p50(rounds), None)
        cpu[name] = statistics.median(chains) if chains else None
    upstream_port, port = _free_port(), _free_port()
    upstream = f"http://127.0.0.1:{upstream_port}/mcp"
    with (
        _process([sys.executable, SERVER, "http", str(upstream_port)], upstream_port) as server_process,
        _process([*gateway, "--upstream", upstream, "--port", str(port)], port) as gateway_process,
    ):
        for name, url in (("http direct", upstream), ("http gateway", f"http://127.0.0.1:{port}/mcp")):
            rounds = []
            for _ in range(options.rounds):
                async with _http(url) as client:
                    rounds.append((await _latencies(client, options.calls))[0])
            async with _http(url) as client:
                before = {"server": _cpu(server_process), "gateway": _cpu(gateway_process)}
                rate = await _throughput(client, options.burst, options.concurrency)
                after = {"server": _cpu(server_process), "gateway": _cpu(gateway_process)}
            results[name] = (_p50(rounds), rate)
            if name == "http gateway":  # CPU seconds per call, of each process, in the burst
                for process, spent in after.items():
                    start = before[process]
                    cpu[process] = None if spent is None or start is None else (spent - start) / options.burst
    return results, cpu


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
