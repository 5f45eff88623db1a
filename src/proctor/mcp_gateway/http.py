"""The gateway over streamable HTTP: clients at ``http://HOST:PORT/mcp``, the server at a URL.

Each client session (an ``initialize`` without a session id opens one) gets a
``StreamableHTTPServerTransport`` of the SDK and an upstream session of its
own through the SDK's ``streamable_http_client``; a ``GatewaySession``
relays between the two. The client's DELETE, or the idle timeout, ends both.
The gateway answers each request with one JSON body rather than an event
stream (it costs a third less CPU per call); what the server sends the client
during a call (progress, sampling and elicitation requests) goes on the
session's GET stream, which the spec allows and the SDK's client reads.
"""

from __future__ import annotations

import logging
import uuid

import anyio
import httpx2
import uvicorn
from anyio.abc import TaskGroup, TaskStatus
from mcp.client.streamable_http import streamable_http_client
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCMessage
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.session import GatewaySession

__all__ = ["GatewayApp", "serve_http"]

logger = logging.getLogger("proctor.mcp")

PATH = "/mcp"
_GRACE = 2
"""Seconds open sessions get to end after SIGTERM or Ctrl-C (a client's open stream never ends)."""
_KEPT_CONNECTIONS = 256
"""Connections to the upstream a session keeps open between calls."""
IDLE_TIMEOUT = 1800.0
"""Seconds a session may go without a request in flight before it ends (the SDK's default)."""


class GatewayApp:
    """The ASGI application of the HTTP gateway; ``run`` must be entered around serving it."""

    def __init__(self, gateway: Gateway, upstream: str, *, host: str = "127.0.0.1") -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.security = (
            TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
            if host in ("127.0.0.1", "localhost", "::1")
            else None
        )
        self._sessions: dict[str, StreamableHTTPServerTransport] = {}
        self._tasks: TaskGroup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http" or scope["path"].rstrip("/") != PATH:
            await JSONResponse({"error": f"not found; MCP is served at {PATH}"}, 404)(scope, receive, send)
            return
        request = Request(scope, receive)
        session_id = request.headers.get("mcp-session-id")
        if session_id is not None:
            transport = self._sessions.get(session_id)
            if transport is None:
                await JSONResponse({"error": "session not found"}, 404)(scope, receive, send)
                return
            await transport.handle_request(scope, receive, send)
            if transport.is_terminated:
                self._sessions.pop(session_id, None)
            return
        transport = StreamableHTTPServerTransport(
            mcp_session_id=uuid.uuid4().hex,
            is_json_response_enabled=True,
            security_settings=self.security,
            idle_timeout=IDLE_TIMEOUT,
        )
        assert transport.mcp_session_id is not None
        self._sessions[transport.mcp_session_id] = transport
        assert self._tasks is not None, "GatewayApp.run() is not entered"
        await self._tasks.start(self._relay, transport)
        await transport.handle_request(scope, receive, send)

    async def _relay(
        self,
        transport: StreamableHTTPServerTransport,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        session_id = transport.mcp_session_id
        assert session_id is not None
        try:
            async with (
                transport.connect() as client,
                _upstream_client() as http,
                streamable_http_client(self.upstream, http_client=http) as upstream,
            ):
                task_status.started()
                idle = transport.idle_scope or anyio.CancelScope()
                with idle:
                    await GatewaySession(self.gateway, client, upstream, wrap=_envelope).run()
        except Exception:
            logger.exception("MCP session %s failed", session_id)
        finally:
            self._sessions.pop(session_id, None)
            if not transport.is_terminated:
                with anyio.CancelScope(shield=True):
                    await transport.terminate()

    async def run(self) -> None:
        """Serve sessions until cancelled."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            await anyio.sleep_forever()


def _upstream_client() -> httpx2.AsyncClient:
    """The SDK's HTTP client settings, keeping a connection for each of many calls at once (by default
    only 20 are kept, and a session with more calls in flight opens a connection per call)."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=_KEPT_CONNECTIONS),
    )


def _envelope(message: JSONRPCMessage) -> SessionMessage:
    return SessionMessage(message)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_http(gateway: Gateway, upstream: str, *, host: str = "127.0.0.1", port: int = 8471) -> None:
    """Serve the gateway on ``http://host:port/mcp`` in front of the streamable-HTTP server ``upstream``."""
    app = GatewayApp(gateway, upstream, host=host)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=_GRACE
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app.run)
        logger.warning("MCP gateway on http://%s:%d%s in front of %s", host, port, PATH, upstream)
        await server.serve()
        tasks.cancel_scope.cancel()
