"""HeldApprovals: durable approvals for MCP clients, which time out long before a person answers.

A tool call that needs approval waits up to ``hold`` seconds (30 by default)
in the durable queue. When nobody decided by then, the call ends with
``ApprovalPending``: the client gets an error result that names the request
and says to call again once it is approved. The same call made again (same
service, agent, tool, rule and arguments, compared by a hash of the arguments
written into the request) finds that request: its decision if people gave
one, else it holds again. Each decision answers one call; changed arguments
make a new request. A call the client cancels leaves its request pending, so
that the call made again still finds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import replace

from proctor.approvals.base import ApprovalDecision, ApprovalRequest
from proctor.approvals.durable import DurableChannel
from proctor.approvals.store import ApprovalRecord, ApprovalStore
from proctor.errors import ProctorError

__all__ = ["ApprovalPending", "HeldApprovals", "arguments_tag"]

_LOOK_BACK = 200
"""How many of the newest requests of each status a call looks through for its own."""


class ApprovalPending(ProctorError):
    """A tool call's approval request is still pending after the hold: call again once it is decided."""

    def __init__(self, record: ApprovalRecord, held: float) -> None:
        self.record = record
        self.held = held
        super().__init__(
            f"This call needs approval (rule {record.rule_id}: {record.message}). Approval request "
            f"{record.id} is pending; no decision came within {held:g}s. Call the tool again with the "
            f"same arguments once it is approved (`proctor approvals approve {record.id}`, or in "
            "`proctor serve`)."
        )


def arguments_tag(request: ApprovalRequest) -> str:
    """What binds a request to its arguments: a hash of them (and of the tool), kept in its message."""
    text = json.dumps([request.tool, request.args], sort_keys=True, default=repr, separators=(",", ":"))
    return f" [arguments sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}]"


class HeldApprovals(DurableChannel):
    """The durable queue, waiting ``hold`` seconds per call at most; see the module's docstring."""

    def __init__(self, hold: float = 30.0, store: ApprovalStore | None = None) -> None:
        super().__init__(store)
        if not hold >= 0:
            raise ValueError(f"hold must be 0 or more seconds, got {hold!r}")
        self.hold = hold
        self._answered: set[str] = set()  # requests whose decision a call got already
        self._finding = threading.Lock()

    def find_or_submit(self, request: ApprovalRequest) -> ApprovalRecord:
        """The request a call with these arguments made before (pending, or decided and not yet
        used), else a new one."""
        tag = arguments_tag(request)
        store = self.store()
        with self._finding:  # two calls at once with the same arguments share one request
            for status in ("approved", "denied", "pending"):
                for record in store.list(status, _LOOK_BACK):
                    if (
                        record.id not in self._answered
                        and record.message.endswith(tag)
                        and record.tool == request.tool
                        and record.agent == request.agent
                        and record.service == request.service
                        and record.rule_id == request.rule_id
                    ):
                        return record
            return store.get(self.submit(replace(request, message=request.message + tag)))

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        loop = asyncio.get_running_loop()
        record: ApprovalRecord = await self._call(loop, self.find_or_submit, request)
        ticket = record.id
        if not record.pending:
            return await self._answer(loop, ticket)
        wait = min(self.hold, max(0.0, record.deadline - time.time()))
        watcher = self._watcher(loop)
        answer = watcher.watch(ticket)
        try:
            await asyncio.wait((answer,), timeout=wait)
        finally:  # cancelled too: the request stays pending, for the same call made again
            watcher.forget(ticket)
        if answer.done():
            self._answered.add(ticket)
            return answer.result()
        if time.time() >= record.deadline:  # the rule's own timeout has passed: on_timeout applies
            self._answered.add(ticket)
            expired: ApprovalDecision | None = await self._call(loop, self.expire, ticket)
            return expired
        raise ApprovalPending(record, wait)

    async def _answer(self, loop: asyncio.AbstractEventLoop, ticket: str) -> ApprovalDecision | None:
        self._answered.add(ticket)
        finished = await self._call(loop, self.poll, (ticket,))
        answer: ApprovalDecision | None = finished.get(ticket)
        return answer
