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

_FLUSH = 5.0
"""Seconds the run log gets to write the session's records before the gateway exits."""
_LINE_LIMIT = 1 << 30
"""The longest message, in bytes."""


class _Lines:
    """The messages read from a pipe, one JSON per line; what could not be read comes as an exception."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> Line | Exception:
        while True:
            try:
                line = await self._reader.readline()
            except (ValueError, asyncio.LimitOverrunError) as exc:
                return exc
            if not line:
                raise StopAsyncIteration
            if line.isspace():
                continue
            try:
                return Line(jsonrpc_message_adapter.validate_json(line, by_name=False))
            except Exception as exc:
                return exc


class _Writer:
    """Writes each message as one line to a pipe; a pipe that closed raises ``anyio.BrokenResourceError``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    async def send(self, item: Line, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:  # the reader went away (BrokenPipeError, a closed transport)
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        """Close the pipe: the reader at the other end sees the end of the session."""
        if not self._closed:
            self._closed = True
            self._writer.close()


@contextlib.asynccontextmanager
async def line_streams(source: IO[bytes], sink: IO[bytes]) -> AsyncIterator[Streams]:
    """MCP messages read from the pipe ``source`` and written to the pipe ``sink``, one JSON per line.

    No task and no queue in between: the session reads and writes the pipes itself.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), source)
    write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sink)
    try:
        yield _Lines(reader), _Writer(asyncio.StreamWriter(write_transport, protocol, None, loop))
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
    session: GatewaySession | None = None
    try:
        async with line_streams(stdin, out) as client, line_streams(server.stdout, server.stdin) as upstream:
            session = GatewaySession(gateway, client, upstream)
            await session.run()
    finally:
        log = session.frame.run.log if session is not None and session.frame is not None else None
        if log is not None:  # first: a client done with the session may soon stop this process
            await asyncio.to_thread(log.flush, _FLUSH)
        await asyncio.to_thread(stop, server)
    return 1 if session.gone is not None else 0
