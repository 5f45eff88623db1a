"""The gateway over stdio: the client on this process's stdin and stdout, the server a child process.

Both sides are read by the event loop itself (no thread per line, and reads
that end when the session does), one JSON-RPC message per line, parsed and
written with the SDK's message types (``mcp_types``, without the rest of the
SDK). What the gateway writes to the client goes to the original stdout,
while fd 1 itself points at stderr, so that nothing printed by mistake can
corrupt the protocol. The server is started
by ``spawn`` (``proctor.mcp_gateway.child``) before the SDK is imported, so
that its start-up and the gateway's overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from typing import IO

import anyio
from mcp_types import jsonrpc_message_adapter

from proctor.mcp_gateway.child import stop
from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.session import GatewaySession, Line, Streams

__all__ = ["line_streams", "serve_stdio"]

logger = logging.getLogger("proctor.mcp")

_LINE_LIMIT = 1 << 30
"""The longest message, in bytes."""


@contextlib.asynccontextmanager
async def line_streams(source: IO[bytes], sink: IO[bytes]) -> AsyncIterator[Streams]:
    """MCP messages read from the pipe ``source`` and written to the pipe ``sink``, one JSON per line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), source)
    write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sink)
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    to_gateway, from_pipe = anyio.create_memory_object_stream[Line | Exception](0)
    to_pipe, from_gateway = anyio.create_memory_object_stream[Line](0)

    async def read() -> None:
        async with to_gateway:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError) as exc:
                    await to_gateway.send(exc)
                    continue
                if not line:
                    return
                if line.isspace():
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:
                    await to_gateway.send(exc)
                    continue
                await to_gateway.send(Line(message))

    async def write() -> None:
        async with from_gateway:
            async for item in from_gateway:
                writer.write(item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")
                await writer.drain()
            writer.close()  # the gateway is done with this side: the reader sees the end

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            tasks.start_soon(write)
            try:
                yield from_pipe, to_pipe
            finally:
                tasks.cancel_scope.cancel()
    finally:
        read_transport.close()
        write_transport.close()


async def serve_stdio(gateway: Gateway, server: subprocess.Popen[bytes]) -> int:
    """Serve one client on stdio in front of ``server`` (started by ``child.spawn``); returns the exit
    status: 0 when the client ended the session, 1 when the server went away first (its calls under
    way got error results, its other requests errors)."""
    assert server.stdin is not None
    assert server.stdout is not None
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints go to stderr, not into the protocol
    stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
    try:
        async with line_streams(stdin, out) as client, line_streams(server.stdout, server.stdin) as upstream:
            session = GatewaySession(gateway, client, upstream)
            await session.run()
    finally:
        await asyncio.to_thread(stop, server)
    return 1 if session.gone is not None else 0
