"""GatewaySession: one client session, relayed to one upstream session, message by message.

Every message passes through unchanged (initialize and capabilities,
notifications, progress, cancellation, resources, prompts, the server's own
requests such as sampling and elicitation, and their responses), except:

- ``tools/call``: each runs in a task of its own through the gateway's
  ``ToolGuard`` for that tool, which forwards it (with the arguments a
  ``modify`` rule patched) or answers it with a tool result that has
  ``isError: true`` and says why (deny, terminate, a limit, an approval still
  pending). A ``notifications/cancelled`` for a call cancels it here as well.
- ``tools/list`` results: the tools a rule always denies for this agent are
  left out (``Gateway.filter_tools``); the annotations are kept for the
  ``annotations.*`` facts.

When the upstream server goes away, every call and request it had not
answered gets an error, and the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

from proctor.errors import PolicyViolationError, RuleViolationError, RunTerminated
from proctor.mcp_gateway.gateway import Gateway
from proctor.mcp_gateway.held import ApprovalPending
from proctor.mcp_gateway.tools import forwarding
from proctor.runtime.context import Frame, active

__all__ = ["Envelope", "GatewaySession", "Line", "Streams", "UpstreamError", "UpstreamGone", "error_result"]

logger = logging.getLogger("proctor.mcp")

RequestId = int | str


class Envelope(Protocol):
    """What a transport's streams carry: a message (the SDK's ``SessionMessage``, or a ``Line``)."""

    @property
    def message(self) -> JSONRPCMessage: ...


@dataclass(frozen=True, slots=True)
class Line:
    """A message of the stdio transport, which needs nothing more (and so not the SDK's client and
    server code, which take seconds to import)."""

    message: JSONRPCMessage


class Receiving(Protocol):
    def __aiter__(self) -> AsyncIterator[Any]: ...


class Sending(Protocol):
    async def send(self, item: Any, /) -> None: ...

    async def aclose(self) -> None: ...


Streams = tuple[Receiving, Sending]
"""A transport's two streams: envelopes (or exceptions, for what could not be read) in, envelopes out."""
Wrap = Callable[[JSONRPCMessage], Any]
"""Puts a message into its transport's envelope."""

_DRAIN = 2.0
"""Seconds the calls under way get, once the upstream is gone, to send their error results."""


class UpstreamError(Exception):
    """The upstream server answered a tools/call with a JSON-RPC error; the client gets it as is."""

    def __init__(self, error: JSONRPCError) -> None:
        self.error = error
        super().__init__(f"MCP error {error.error.code}: {error.error.message}")


class UpstreamGone(Exception):
    """The upstream server went away before it answered."""


def error_result(text: str) -> dict[str, Any]:
    """A tool result the model reads as a failure: ``isError: true`` and ``text``."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


def refusal_text(error: BaseException) -> str:
    """What the client reads when the gateway refuses a call."""
    if isinstance(error, RunTerminated):
        return (
            f"Session terminated by policy {error.rule_id}: {error.detail}. Every later tool call of "
            "this session is refused."
        )
    if isinstance(error, RuleViolationError):
        return f"Denied by policy {error.rule_id}: {error.detail}"
    if isinstance(error, PolicyViolationError):
        return f"Refused by {error.policy_name}: {error.detail}"
    return str(error)


class GatewaySession:
    """Relays one client session (``client``) to one upstream session (``upstream``); see the module.

    ``wrap`` puts each message into its transport's envelope (the SDK's ``SessionMessage`` for HTTP).
    """

    def __init__(
        self,
        gateway: Gateway,
        client: Streams,
        upstream: Streams,
        *,
        wrap: Wrap | None = None,
    ) -> None:
        self.gateway = gateway
        self.client_read, self.client_write = client
        self.upstream_read, self.upstream_write = upstream
        self.wrap: Wrap = wrap if wrap is not None else _line
        self.agent = gateway.agent or gateway.service
        self.frame: Frame | None = None
        self.gone: str | None = None
        """Why the upstream is gone, once it is."""
        self._calls: dict[RequestId, asyncio.Task[None]] = {}  # the tool calls under way
        self._waiting: dict[RequestId, asyncio.Future[JSONRPCMessage]] = {}
        self._forwarded: set[RequestId] = set()  # the client's requests the upstream has to answer
        self._lists: set[RequestId] = set()
        self._dropped: set[RequestId] = set()  # cancelled calls: their late answers go nowhere
        self._ids = itertools.count(1)
        self._learned = False
        self._learning = anyio.Lock()
        self._idle = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None

    async def run(self) -> None:
        """Relay until the client or the upstream ends the session; the session's run ends with it."""
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._from_upstream)
                await self._from_client()
                tasks.cancel_scope.cancel()  # the client is gone: so are its calls
        finally:
            with anyio.CancelScope(shield=True):
                calls = list(self._calls.values())
                for call in calls:
                    call.cancel()
                if calls:  # each ends as cancelled in the run log
                    await asyncio.wait(calls)
                with contextlib.suppress(Exception):
                    await self.upstream_write.aclose()
            if self.frame is not None:
                failed = self.gone is not None
                self.gateway.end_run(
                    self.frame,
                    "failed" if failed else "succeeded",
                    UpstreamGone(self.gone) if failed else None,
                )

    # -- from the client

    async def _from_client(self) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):  # the client left
            await self._relay_client()

    async def _relay_client(self) -> None:
        async for item in self.client_read:
            if isinstance(item, Exception):
                logger.warning("a message from the client could not be read: %s", item)
                continue
            message = item.message
            if isinstance(message, JSONRPCRequest):
                method = message.method
                if method == "tools/call":
                    self._start_call(message)
                    continue
                if method == "initialize":
                    self._initialize(message)
                elif method == "tools/list":
                    self._lists.add(message.id)
                if self.gone is not None:
                    await self._to_client(_error(message.id, self.gone))
                    continue
                self._forwarded.add(message.id)
            elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
                request = (message.params or {}).get("requestId")
                call = self._calls.get(request) if isinstance(request, (int, str)) else None
                if call is not None:
                    self._dropped.add(request)  # type: ignore[arg-type]
                    call.cancel()
            try:
                await self._to_upstream(message)
            except UpstreamGone as exc:
                if isinstance(message, JSONRPCRequest):
                    self._forwarded.discard(message.id)
                    await self._to_client(_error(message.id, str(exc)))

    def _initialize(self, request: JSONRPCRequest) -> None:
        client = (request.params or {}).get("clientInfo")
        client = client if isinstance(client, Mapping) else None
        if self.gateway.agent is None and client is not None and isinstance(client.get("name"), str):
            self.agent = client["name"]
        if self.frame is None:
            self.frame = self.gateway.start_run(self.agent, client)

    def _start_call(self, request: JSONRPCRequest) -> None:
        """Run the call in a task of its own (an asyncio task: the cheapest kind), so that calls overlap."""
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        call = asyncio.get_running_loop().create_task(self._tool_call(request))
        self._calls[request.id] = call
        call.add_done_callback(functools.partial(self._call_done, request.id))

    def _call_done(self, request: RequestId, call: asyncio.Task[None]) -> None:
        if self._calls.get(request) is call:
            del self._calls[request]
        if not self._calls:
            self._idle.set()

    async def _tool_call(self, request: JSONRPCRequest) -> None:
        try:
            reply = await self._govern(request)
        except UpstreamGone as exc:
            reply = _error(request.id, str(exc))
        except Exception as exc:  # a bug here must not end the session: the client gets an error
            logger.exception("tools/call %r failed in the gateway", request.id)
            reply = _error(request.id, f"the gateway failed: {type(exc).__name__}: {exc}")
        await self._to_client(reply)

    async def _govern(self, request: JSONRPCRequest) -> JSONRPCMessage:
        """The answer to a tools/call: the upstream's, or the gateway's refusal."""
        params = request.params or {}
        name = params.get("name")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(name, str) or not isinstance(arguments, dict):  # the server says what is wrong
            reply: JSONRPCMessage = await self._forward(request, arguments, raw=True)
            return reply
        if self.frame is None:
            self.frame = self.gateway.start_run(self.agent, None)
        if not self._learned and "annotations" in self.gateway.source.current().uses:
            await self._learn()  # once per session: the annotations of tools not listed yet
        call = self.gateway.tool(self.agent, name)
        active_token = active.set(self.frame)
        forward_token = forwarding.set(functools.partial(self._forward, request))
        try:
            result = await call(**arguments)
        except UpstreamError as exc:
            if exc.error.error.code != CONNECTION_CLOSED:
                return exc.error  # the server's own error, as it gave it
            # the transport's: the server went away during the call (the HTTP client transport says so),
            # and its session with it: this one ends too, once this call has its answer
            result = error_result(
                f"The tool call failed: the MCP server {self.gateway.server!r} closed the connection "
                f"({exc.error.error.message})"
            )
            assert self._tasks is not None
            self._tasks.start_soon(self._upstream_gone)
        except (PolicyViolationError, RunTerminated, ApprovalPending) as exc:
            result = error_result(refusal_text(exc))
        except UpstreamGone as exc:
            result = error_result(f"The tool call failed: {exc}")
        except Exception as exc:
            logger.exception("tools/call %s failed in the gateway", name)
            result = error_result(f"The gateway could not make the call: {type(exc).__name__}: {exc}")
        finally:
            forwarding.reset(forward_token)
            active.reset(active_token)
        return JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)

    async def _forward(self, request: JSONRPCRequest, arguments: Any, *, raw: bool = False) -> Any:
        """Send the call upstream with ``arguments``; its result (raw: the reply as it is)."""
        if self.gone is not None:
            raise UpstreamGone(self.gone)
        if not raw:
            params = dict(request.params or {})
            params["arguments"] = arguments
            request = JSONRPCRequest(jsonrpc="2.0", id=request.id, method=request.method, params=params)
        future = self._waiting[request.id] = asyncio.get_running_loop().create_future()
        try:
            await self._to_upstream(request)
            reply = await future
        finally:
            self._waiting.pop(request.id, None)
        if raw:
            return reply
        if isinstance(reply, JSONRPCError):
            raise UpstreamError(reply)
        assert isinstance(reply, JSONRPCResponse)
        return reply.result

    async def _learn(self) -> None:
        """Ask the upstream for its tools (all pages), for their annotations."""
        async with self._learning:
            if self._learned:
                return
            cursor = None
            while True:
                ask = f"proctor-{next(self._ids)}"
                future = self._waiting[ask] = asyncio.get_running_loop().create_future()
                try:
                    params = {"cursor": cursor} if cursor else None
                    await self._to_upstream(
                        JSONRPCRequest(jsonrpc="2.0", id=ask, method="tools/list", params=params)
                    )
                    reply = await future
                finally:
                    self._waiting.pop(ask, None)
                if not isinstance(reply, JSONRPCResponse):
                    break
                tools = reply.result.get("tools")
                self.gateway.learn(tools if isinstance(tools, list) else [])
                cursor = reply.result.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    break
            self._learned = True

    # -- from the upstream

    async def _from_upstream(self) -> None:
        try:
            async for item in self.upstream_read:
                if isinstance(item, Exception):
                    logger.warning("a message from the MCP server could not be read: %s", item)
                    continue
                message = item.message
                if isinstance(message, (JSONRPCResponse, JSONRPCError)):
                    answered = message.id
                    if answered is None:
                        pass
                    elif (future := self._waiting.get(answered)) is not None:
                        if not future.done():
                            future.set_result(message)
                        continue
                    elif answered in self._dropped:
                        self._dropped.discard(answered)
                        continue
                    else:
                        self._forwarded.discard(answered)
                        if answered in self._lists:
                            self._lists.discard(answered)
                            message = self._listed(message)
                await self._to_client(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        await self._upstream_gone()

    async def _upstream_gone(self) -> None:
        """The upstream closed: fail what it had not answered, and end the session."""
        if self.gone is not None:
            return
        self.gone = f"the MCP server {self.gateway.server!r} closed the connection (it exited or crashed)"
        logger.error("%s; ending the session", self.gone)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(UpstreamGone(self.gone))
        if self._calls:
            with anyio.move_on_after(_DRAIN):
                await self._idle.wait()
        for request in list(self._forwarded):
            await self._to_client(_error(request, self.gone))
        self._forwarded.clear()
        with contextlib.suppress(Exception):
            await self.client_write.aclose()
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()

    def _listed(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """A tools/list result without the tools a rule always denies for this agent."""
        if not isinstance(message, JSONRPCResponse):
            return message
        tools = message.result.get("tools")
        if not isinstance(tools, list):
            return message
        gateway = self.gateway
        gateway.learn(tools)
        if not gateway.filter_tools:
            return message
        kept = [
            tool for tool in tools if not (isinstance(tool, Mapping) and gateway.hidden(self.agent, tool))
        ]
        if len(kept) == len(tools):
            return message
        return JSONRPCResponse(jsonrpc="2.0", id=message.id, result={**message.result, "tools": kept})

    # -- sending

    async def _to_upstream(self, message: JSONRPCMessage) -> None:
        try:
            await self.upstream_write.send(self.wrap(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if isinstance(message, JSONRPCRequest):
                raise UpstreamGone(self.gone or "the MCP server is not connected") from None

    async def _to_client(self, message: JSONRPCMessage) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.client_write.send(self.wrap(message))


def _line(message: JSONRPCMessage) -> Line:
    return Line(message)


def _error(request: RequestId, text: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request, error=ErrorData(code=INTERNAL_ERROR, message=text))
