"""The MCP gateway: proctor's policy files, approvals, limits and run log in front of any MCP server.

``proctor mcp proxy`` serves MCP to a client (over stdio, or streamable HTTP)
and forwards to one upstream server; each ``tools/call`` goes through the same
call flow as a call of an ``@runlog`` coroutine function. The transports
(``stdio``, ``http``) and the relay (``session``) need the ``mcp`` extra (the
official MCP SDK); this package's own name never shadows the SDK's ``mcp``.
Importing the package does not import the SDK (it takes seconds), so that
``proctor mcp proxy`` starts the upstream server first and imports meanwhile.
"""

from __future__ import annotations

from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.held import ApprovalPending, HeldApprovals

__all__ = ["ApprovalPending", "Gateway", "HeldApprovals"]
