"""A real MCP server for the gateway's tests, written with the SDK: ``server.py stdio|http PORT``.

Its tools: ``echo`` (says what it got), ``write_file`` (destructive, writes nothing),
``read_file`` (read-only), ``big`` (a result of ``size`` characters), ``slow`` (sleeps; ``peak``:
the most that ran at once), ``crash`` (the process dies mid-call), ``priced`` (reports its cost
in ``_meta``), ``seen`` (the arguments of every call so far), ``ask`` (asks the client to sample).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, SamplingMessage, TextContent, ToolAnnotations

server = MCPServer("test-server")
calls: list[dict[str, Any]] = []


@server.tool()
def echo(text: str, times: int = 1) -> str:
    calls.append({"tool": "echo", "text": text, "times": times})
    return " ".join([text] * times)


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def write_file(path: str, content: str = "") -> str:
    calls.append({"tool": "write_file", "path": path})
    return f"wrote {len(content)} characters to {path}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_file(path: str) -> str:
    calls.append({"tool": "read_file", "path": path})
    return f"contents of {path}"


@server.tool()
def big(size: int) -> str:
    return "x" * size


running = [0, 0]  # slow calls running now, and the most that ever ran at once


@server.tool()
async def slow(seconds: float) -> str:
    running[0] += 1
    running[1] = max(running)
    try:
        await asyncio.sleep(seconds)
    finally:
        running[0] -= 1
    calls.append({"tool": "slow", "seconds": seconds})
    return "done"


@server.tool()
def peak() -> int:
    return running[1]


@server.tool()
def crash() -> str:
    os._exit(3)


@server.tool()
def priced(amount: float) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="priced")], _meta={"cost": amount})


@server.tool()
def seen() -> str:
    return json.dumps(calls)


@server.tool()
async def ask(question: str, ctx: Context) -> str:
    reply = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))],
        max_tokens=10,
    )
    return f"the client said: {reply.content.text}"  # type: ignore[union-attr]


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
