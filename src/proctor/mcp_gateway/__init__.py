"""The MCP gateway: proctor's policy files, approvals, limits and run log in front of any MCP server.

``proctor mcp proxy`` serves MCP to a client (over stdio, or streamable HTTP)
and forwards to one upstream server; each ``tools/call`` goes through the same
call flow as a call of an ``@runlog`` coroutine function. Needs the ``mcp``
extra (the official MCP SDK). This package is named so that it never shadows
the SDK's own ``mcp`` package.
"""

from __future__ import annotations

from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.held import ApprovalPending, HeldApprovals
from proctor.mcp_gateway.session import GatewaySession

__all__ = ["ApprovalPending", "Gateway", "GatewaySession", "HeldApprovals"]
