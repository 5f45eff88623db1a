"""Gateway: what every session of one ``proctor mcp proxy`` shares.

The policy source (loaded at start, reloaded when the file changes), the
approval channel, the fair slot's scheduler, the upstream server's tool
annotations, and one ``ToolGuard`` per agent and tool. Each client session is
a run of its own (``start_run`` / ``end_run``), recorded in the run log like
the run of a top-level ``@runlog`` call; its tool calls are the run's actions.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proctor.approvals.base import ApprovalChannel
from proctor.decision import Action
from proctor.guard._ledgers import note_rules
from proctor.mcp_gateway.held import HeldApprovals
from proctor.mcp_gateway.tools import ToolGuard, tool_cost
from proctor.rules.facts import MISSING, Facts
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.default import run_log
from proctor.runtime.context import Frame
from proctor.runtime.run import Run, WatchedRun
from proctor.scheduling import AsyncLOCOScheduler

__all__ = ["SESSION_FUNCTION", "Gateway"]

SESSION_FUNCTION = "proctor.mcp_gateway.session:GatewaySession"
"""What the run log names as a gateway session's code (there is none to replay: what-if works)."""


class Gateway:
    """The settings and shared state of an MCP gateway in front of one upstream server.

    Parameters:
        policies: the policy file(s), as ``@runlog(policies=...)`` takes them; a file that fails to
            load raises ``PolicyConfigError`` here (file:line:column), a later change that fails is
            logged and the rules in force stay.
        service: the ``service`` fact, and the service runs are recorded under.
        agent: the ``agent`` fact; by default the client's name from its ``initialize``, else ``service``.
        server: the ``server`` fact: a name for the upstream server.
        hold: how long a call that needs approval waits before it returns "call again".
        filter_tools: leave the tools that a rule always denies out of ``tools/list``.
        scheduler: put every tool call behind a fair slot of this scheduler.
        approvals: where ``require_approval`` asks; by default the durable queue with ``hold``.
        labels: the ``labels`` fact of every call.
        record: record each session as a run in the run log (``$PROCTOR_DB``).
    """

    def __init__(
        self,
        policies: PolicySpec,
        *,
        service: str = "mcp",
        agent: str | None = None,
        server: str = "upstream",
        hold: float = 30.0,
        filter_tools: bool = True,
        scheduler: AsyncLOCOScheduler | None = None,
        approvals: ApprovalChannel | None = None,
        labels: Mapping[str, Any] | None = None,
        record: bool = True,
    ) -> None:
        self.source = PolicySource(policies)
        note_rules(self.source.current())  # before any call, so that the first calls' spend counts too
        self.service = service
        self.agent = agent
        self.server = server
        self.filter_tools = filter_tools
        self.scheduler = scheduler
        self.approvals = approvals if approvals is not None else HeldApprovals(hold)
        self.labels = dict(labels) if labels else None
        self.record = record
        self.annotations: dict[str, Any] = {}
        """The upstream's tools' annotations by tool name, as its tools/list said."""
        self._tools: dict[tuple[str, str], Callable[..., Awaitable[Any]]] = {}

    def tool(self, agent: str, name: str) -> Callable[..., Awaitable[Any]]:
        """The guarded call of tool ``name`` for ``agent``: ``await tool(**arguments)``."""
        key = (agent, name)
        wrapper = self._tools.get(key)
        if wrapper is None:
            wrapper = self._tools[key] = ToolGuard(self, agent, name).wrapper()
        return wrapper

    def learn(self, tools: list[Any]) -> None:
        """Keep the annotations of the tools a tools/list result lists."""
        for tool in tools:
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
                annotations = tool.get("annotations")
                self.annotations[tool["name"]] = dict(annotations) if isinstance(annotations, Mapping) else {}

    def hidden(self, agent: str, tool: Mapping[str, Any]) -> bool:
        """Whether a rule denies every call of ``tool`` by ``agent``, whatever its arguments and context.

        Decided on the facts known before any call (tool, agent, service, server, annotations,
        labels, the tool's cost); a rule that reads anything else does not match here.
        """
        if not self.filter_tools:
            return False
        name = tool.get("name")
        if not isinstance(name, str):
            return False
        rules = self.source.current()
        annotations = tool.get("annotations")
        facts = Facts(
            agent=agent,
            service=self.service,
            tool=name,
            cost=tool_cost(rules, name),
            labels=self.labels if self.labels is not None else MISSING,
            server=self.server,
            annotations=dict(annotations) if isinstance(annotations, Mapping) else {},
        )
        verdict = rules.evaluate(facts)
        return verdict.action is Action.DENY and verdict.rule is not None

    def start_run(self, agent: str, client: Mapping[str, Any] | None) -> Frame:
        """A new run for a client session; returns the frame its tool calls are made in."""
        input = {"server": self.server, "client": dict(client) if client else None}
        log = run_log() if self.record else None
        run: Run
        if log is None:
            run = Run(self.service, agent, input)
        else:
            run = WatchedRun(self.service, agent, input, log, None)
            log.run_started(
                run.run_id,
                service=self.service,
                agent=agent,
                tool=f"mcp:{self.server}",
                function=SESSION_FUNCTION,
                started=run.started,
                input=input,
                labels=self.labels,
            )
        return Frame(run)

    @staticmethod
    def end_run(frame: Frame, status: str, error: BaseException | None = None) -> None:
        """Record how a session's run ended: ``terminated`` when a rule ended it, else ``status``."""
        run = frame.run
        if run.log is None:
            return
        if run.terminated is not None:
            status, error = "terminated", run.terminated
        run.log.run_finished(run.run_id, status=status, ended=time.time(), error=error, cost=run.cost)
