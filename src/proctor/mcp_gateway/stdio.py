"""The gateway over stdio: the client on this process's stdin and stdout, the server a child process.

The client side reads stdin with the event loop (no thread per line, and a
read that ends when the session does); what the gateway writes goes to the
original stdout, while fd 1 itself points at stderr, so that nothing printed
by mistake can corrupt the protocol. The server side is the SDK's
``stdio_client``, which starts ``command`` and stops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter

from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.session import GatewaySession, Streams

__all__ = ["serve_stdio", "stdio_streams"]

logger = logging.getLogger("proctor.mcp")

_LINE_LIMIT = 1 << 30
"""The longest message a client may send, in bytes."""


@contextlib.asynccontextmanager
async def stdio_streams(stdin: int = 0, stdout: int = 1) -> AsyncIterator[Streams]:
    """MCP messages read from file descriptor ``stdin`` and written to ``stdout``, one JSON per line."""
    loop = asyncio.get_running_loop()
    out = os.dup(stdout)
    if stdout == 1:
        os.dup2(2, 1)  # stray prints go to stderr, not into the protocol
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(stdin, "rb", buffering=0, closefd=False)
    )
    write_transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    to_gateway, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_client, from_gateway = anyio.create_memory_object_stream[SessionMessage](0)

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
                if not line.strip():
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:
                    await to_gateway.send(exc)
                    continue
                await to_gateway.send(SessionMessage(message))

    async def write() -> None:
        async with from_gateway:
            async for item in from_gateway:
                text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                writer.write(text.encode() + b"\n")
                await writer.drain()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            tasks.start_soon(write)
            try:
                yield from_client, to_client
            finally:
                tasks.cancel_scope.cancel()
    finally:
        read_transport.close()
        with contextlib.suppress(Exception):
            writer.close()


async def serve_stdio(gateway: Gateway, command: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Serve one client on stdio in front of the server ``command args``; returns the exit status.

    0 when the client ended the session, 1 when the server went away first (its calls under way got
    error results, its other requests errors).
    """
    upstream = StdioServerParameters(command=command, args=list(args), env=env)
    async with stdio_streams() as client, stdio_client(upstream, errlog=sys.stderr) as server:
        session = GatewaySession(gateway, client, server)
        await session.run()
    return 1 if session.gone is not None else 0
