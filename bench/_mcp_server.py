"""The no-op MCP server of ``bench/mcp_gateway.py``, written with the SDK: ``stdio`` or ``http PORT``."""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("bench", log_level="WARNING")


@server.tool()
def noop(n: int = 0) -> str:
    """Does nothing: what a call costs is the protocol's and the gateway's work."""
    return "ok"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
