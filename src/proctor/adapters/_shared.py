"""What both framework adapters need: policy settings, a guard per tool, runs, and approvals by tool call.

A framework's tool call becomes a call of a decorated function: one ``Guard``
per tool (and per set of argument names), whose function is a keyword-only
shape of the tool's arguments that runs what the framework gave for this one
call (``BODY``). Rules, patches, budgets and the run log are the decorator's.

An approval cannot block a framework that pauses instead (LangGraph's
``interrupt()``, the Agents SDK's interruptions): ``QueueApprovals`` writes the
request to proctor's durable queue and, while nobody has decided, raises
``Pending``; the call is tried again when the framework resumes, and finds the
request again by the tool call's id (in the request's message), decided or not.
"""

from __future__ import annotations

import inspect
import keyword
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from proctor.approvals.base import ApprovalChannel, ApprovalDecision, ApprovalRequest
from proctor.approvals.durable import DurableChannel
from proctor.errors import ConfigurationError
from proctor.guard._async import off_loop, wrap_async
from proctor.guard._flow import Guard
from proctor.guard._ledgers import note_rules
from proctor.guard._sync import wrap_sync
from proctor.llm.prices import PriceTable, Tokens
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.rules.source import PolicySource, PolicySpec
from proctor.runs.log import NO_RESULT
from proctor.runtime.context import Frame

__all__ = [
    "BODY",
    "EARLIER_RUN",
    "TOOL_CALL",
    "OpenRun",
    "Pending",
    "Policies",
    "QueueApprovals",
    "ToolGuards",
    "keyword_function",
    "lost",
    "price",
]

BODY: ContextVar[Callable[[dict[str, Any]], Any] | None] = ContextVar("proctor_adapter_body", default=None)
"""What the guarded function of the call being made runs, given its (patched) arguments."""
TOOL_CALL: ContextVar[str | None] = ContextVar("proctor_adapter_tool_call", default=None)
"""The framework's id of the tool call being made (how its approval request is found again)."""
EARLIER_RUN: ContextVar[str | None] = ContextVar("proctor_adapter_earlier_run", default=None)
"""The run an interrupted agent began in, when it resumed in a run of its own (another process)."""


class Pending(BaseException):
    """A person has not decided the call's approval yet: the framework pauses, and asks again later."""

    def __init__(self, ticket: str, request: ApprovalRequest) -> None:
        super().__init__(ticket)
        self.ticket = ticket
        self.request = request


@dataclass(frozen=True)
class Policies:
    """What an adapter was given: the rules (and their file's limits), code policies, a code budget."""

    source: PolicySource | None
    enforcer: PolicyEnforcer | None
    """Code policies, checked on tool and model calls."""
    model_enforcer: PolicyEnforcer | None
    """Those and the code ``budget=``, checked on model calls."""

    @classmethod
    def of(cls, policies: PolicySpec | PolicyEnforcer | None, budget: Policy | None) -> Policies:
        """As ``instrument()`` reads them: a policy file's budgets, or ``budget=``, not both."""
        source = None
        enforcer = policies if isinstance(policies, PolicyEnforcer) else None
        if policies is not None and not isinstance(policies, PolicyEnforcer):
            source = PolicySource(policies)
            current = source.current()
            note_rules(current)  # before any call, as @runlog does
            if budget is not None and (current.budgets or current.rate_limits):
                raise ConfigurationError(
                    "the policy file has budgets or rate limits of its own: declare the budget there, "
                    "or pass budget= with a policy file of rules only"
                )
        model_enforcer = enforcer
        if budget is not None:
            if not isinstance(budget, Policy):
                raise ConfigurationError(f"budget= takes a BudgetPolicy (a proctor Policy), got {budget!r}")
            model_enforcer = enforcer._extended(budget) if enforcer is not None else PolicyEnforcer([budget])
        return cls(source, enforcer, model_enforcer)


def keyword_function(name: str, keys: tuple[str, ...], asynchronous: bool) -> Callable[..., Any]:
    """A function named ``name`` with keyword-only parameters ``keys`` that runs ``BODY``.

    When a key cannot be a parameter's name (``from``, ``max-tokens``), the function takes
    ``**arguments`` instead, and rules see the arguments as ``args.arguments.<key>``.
    """
    if asynchronous:

        async def acall(**args: Any) -> Any:
            body = BODY.get()
            assert body is not None
            return await body(args)

        function: Callable[..., Any] = acall
    else:

        def call(**args: Any) -> Any:
            body = BODY.get()
            assert body is not None
            return body(args)

        function = call
    if all(key.isidentifier() and not keyword.iskeyword(key) for key in keys):
        parameters = [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY) for key in keys]
    else:  # a name Python cannot take as a parameter ("from"): rules see args.arguments.<name>
        parameters = [inspect.Parameter("arguments", inspect.Parameter.VAR_KEYWORD)]
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__qualname__ = function.__name__ = name
    function.__module__ = __name__
    return function


class ToolGuards:
    """The decorated shape of each tool: one guard (and driver) per tool name, argument names and kind."""

    def __init__(
        self,
        service: str,
        agent: str | None,
        policies: Policies,
        approvals: ApprovalChannel,
        on_deny: str = "raise",
    ) -> None:
        self.service = service
        self.agent = agent
        self.policies = policies
        self.approvals = approvals
        self.on_deny = on_deny
        self._drivers: dict[tuple[str, tuple[str, ...], bool], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def driver(self, name: str, keys: tuple[str, ...], asynchronous: bool) -> Callable[..., Any]:
        """The decorated function for tool ``name`` called with arguments ``keys``."""
        key = (name, keys, asynchronous)
        driver = self._drivers.get(key)
        if driver is None:
            guard = Guard(
                keyword_function(name, keys, asynchronous),
                self.service,
                self.policies.source,
                self.agent,
                name,
                None,
                None,
                self.on_deny,
                self.approvals,
                self.policies.enforcer,
                None,
                True,
            )
            driver = wrap_async(guard) if asynchronous else wrap_sync(guard)
            with self._lock:
                driver = self._drivers.setdefault(key, driver)
        return driver


class OpenRun:
    """A run the adapter opened itself (no ``@runlog`` call around the agent): recorded like one.

    ``frame`` is what the run's tool and model calls have as their parent; ``close`` ends it in
    the run log with its status and output.
    """

    def __init__(self, service: str, agent: str | None, kind: str, input: Any) -> None:
        def agent_run(input: Any) -> Any:  # the run's own call; never called
            return None

        agent_run.__qualname__ = agent_run.__name__ = kind
        agent_run.__module__ = __name__
        self.guard = Guard(agent_run, service, None, agent, kind, None, None, "raise", None, None, None, True)
        self.call = self.guard.start((input,), {}, None)
        self.call.recorder.opened(self.guard, self.call)
        self.frame: Frame = self.call.frame
        self.began = time.perf_counter()
        self.closed = False

    @property
    def run_id(self) -> str:
        return self.frame.run.run_id

    def close(self, output: Any = NO_RESULT, error: BaseException | None = None) -> None:
        """End the run: ``terminated`` when a rule stopped it, else succeeded, or failed with ``error``."""
        if self.closed:
            return
        self.closed = True
        run = self.frame.run
        call = self.call
        call.actual = run.cost
        call.settled = True  # its calls settled their own spend
        if error is not None:
            status = "failed" if isinstance(error, Exception) else "cancelled"
            if run.terminated is not None:
                status = "terminated"
            output = NO_RESULT
        else:
            status = "terminated" if run.terminated is not None else "succeeded"
        duration = time.perf_counter() - self.began
        call.recorder.closed(self.guard, call, status, duration, output, output, error)


class QueueApprovals(ApprovalChannel):
    """Approvals in proctor's durable queue, for frameworks that pause instead of waiting.

    ``request`` returns the decision when people made it (None: the request expired with
    nobody deciding, so the rule's ``on_timeout`` applies), and raises ``Pending`` while it
    waits; the request names the tool call (``TOOL_CALL``), so a resumed call finds it again (in
    its run, or in ``EARLIER_RUN``, the run it began in before another process resumed it).
    """

    def __init__(self, queue: DurableChannel | None = None) -> None:
        self.queue = queue if queue is not None else DurableChannel()
        self.tickets: dict[str, str] = {}
        """The request each tool call made, by the framework's tool call id (in this process)."""

    def request(self, request: ApprovalRequest) -> ApprovalDecision | None:
        tool_call = TOOL_CALL.get()
        if tool_call is None:
            raise ConfigurationError("a tool call's approval was asked outside a framework's tool call")
        request = replace(request, message=f"{request.message} (tool call {tool_call})")
        store = self.queue.store()
        record = None
        ticket = self.tickets.get(tool_call)
        if ticket is not None:
            record = store.get(ticket)
        else:  # the latest request this tool call made, in this run or the one it resumed
            earlier = EARLIER_RUN.get()
            for run_id in (request.run_id,) if earlier is None else (earlier, request.run_id):
                for each in store.of_run(run_id):
                    if (
                        each.tool == request.tool
                        and each.rule_id == request.rule_id
                        and each.message == request.message
                    ):
                        record = each
        if record is None or record.status == "cancelled":
            ticket = self.tickets[tool_call] = self.queue.submit(request)
            raise Pending(ticket, request)
        if record.pending and record.deadline > time.time():
            self.tickets[tool_call] = record.id
            raise Pending(record.id, request)
        self.tickets.pop(tool_call, None)  # decided: the call takes its decision now
        if record.pending:
            return self.queue.expire(record.id)  # a decision that came in meanwhile wins
        return self.queue.poll([record.id])[record.id]

    async def arequest(self, request: ApprovalRequest) -> ApprovalDecision | None:
        return await off_loop(self.request, request)  # short database steps, off the event loop

    def withdraw(self, request: ApprovalRequest) -> None:
        """A call that pauses for its approval keeps its request: the resumed call takes its decision."""

    def decided(self, tool_call: str) -> bool:
        """Whether the request tool call ``tool_call`` made (in this process) no longer waits for people."""
        ticket = self.tickets.get(tool_call)
        return ticket is not None and not self.pending(ticket)

    def pending(self, ticket: str) -> bool:
        """Whether request ``ticket`` still waits for people (and its deadline has not passed)."""
        record = self.queue.store().get(ticket)
        return record.pending and record.deadline > time.time()


_LOST = frozenset(("APIConnectionError", "APITimeoutError"))
"""The provider SDKs' errors (OpenAI's, Anthropic's) after which a call may have been billed."""


def lost(error: BaseException) -> bool:
    """Whether a model call that raised ``error`` may have been billed: its connection was lost or
    it timed out (an error the provider answered, such as HTTP 400 or 429, is not billed)."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return any(kind.__name__ in _LOST for kind in type(error).__mro__)


def price(prices: PriceTable, model: str, usage: Mapping[str, Any] | None) -> float | None:
    """What ``usage`` (LangChain's ``usage_metadata`` keys) cost at ``model``'s rates; None without usage."""
    if not usage:
        return None
    details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}
    tokens = Tokens(
        input=int(usage.get("input_tokens") or 0),
        output=int(usage.get("output_tokens") or 0),
        cache_read=int(details.get("cache_read") or 0),
        cache_write=int(details.get("cache_creation") or 0),
        reasoning=int(output_details.get("reasoning") or 0),
    )
    return prices.rates(model).cost(tokens)
