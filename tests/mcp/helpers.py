"""Start the gateway and the test MCP server as real processes; drive them with the SDK's ClientSession."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from proctor.cli.main import cli as main
from proctor.runs.log import RunLog
from tests.servers import end_process, free_port

PROCTOR = str(Path(sys.executable).with_name("proctor"))
SERVER = str(Path(__file__).with_name("server.py"))


def gateway_command(policies: Path, db: Path, *options: str) -> list[str]:
    return [PROCTOR, "mcp", "proxy", "--policies", str(policies), "--db", str(db), *options]


@contextlib.asynccontextmanager
async def stdio_session(
    policies: Path, db: Path, *options: str, **session: Any
) -> AsyncIterator[ClientSession]:
    """A ClientSession with the gateway over stdio, in front of the test server (a child of the gateway)."""
    command = gateway_command(policies, db, *options, "--", sys.executable, SERVER, "stdio")
    params = StdioServerParameters(command=command[0], args=command[1:], env=_env())
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write, **session) as client,
        ):
            await client.initialize()
            yield client


@contextlib.asynccontextmanager
async def http_session(url: str, **session: Any) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write, **session) as client:
        await client.initialize()
        yield client


@contextlib.contextmanager
def http_gateway(policies: Path, db: Path, *options: str) -> Iterator[str]:
    """The test server over streamable HTTP, and the gateway in front of it; yields the gateway's URL."""
    upstream_port, port = free_port(), free_port()
    server = gateway = None
    try:
        server = _start([sys.executable, SERVER, "http", str(upstream_port)])
        gateway = _start(
            gateway_command(
                policies,
                db,
                *options,
                "--upstream",
                f"http://127.0.0.1:{upstream_port}/mcp",
                "--port",
                str(port),
            )
        )
        _wait_for(upstream_port, server)
        _wait_for(port, gateway)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        end_process(gateway, 5.0)
        end_process(server, 5.0)


def text(result: Any) -> str:
    """The text of a tool result's first content block."""
    return str(result.content[0].text)


def runs(db: Path) -> list[Any]:
    with contextlib.closing(RunLog(db)) as log:
        return log.runs(limit=None)


def actions(db: Path, run_id: str) -> list[Any]:
    with contextlib.closing(RunLog(db)) as log:
        return log.actions(run_id)


def cli(*args: str) -> Any:
    """``proctor ARGS`` in this process (click's runner): for commands that need no process of their own."""
    return CliRunner().invoke(main, list(args))


def proctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROCTOR, *args], capture_output=True, text=True, env=_env(), timeout=60, check=False
    )


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROCTOR_APPROVERS", None)
    return env


def _start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return
        time.sleep(0.03)
    raise RuntimeError(f"nothing listens on port {port}")
