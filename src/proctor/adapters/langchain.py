"""``ProctorMiddleware``: a LangChain v1 agent (``create_agent``, LangGraph) governed by proctor.

Each tool call runs through the ``@runlog`` call flow, named after the tool,
with the model's arguments as ``args.*``: a ``deny`` (or a budget's refusal)
becomes a ``ToolMessage`` with ``status="error"`` that the model reads;
``modify`` runs the tool with the patched arguments; ``terminate`` refuses
this and every later tool call of the run and ends the agent (a jump to the
end before the next model call); ``require_approval`` writes the request to
proctor's durable queue and pauses the graph with ``interrupt()``, so that the
graph resumed (``Command(resume=...)``, with a checkpointer) after a person
decided (``proctor approvals``, ``proctor serve``) runs the call or refuses it.

Each model call is a call named ``langchain.model`` with ``args.model``,
``args.messages`` (role and text) and ``args.max_tokens``: its estimate
(the prompt and the maximum output, priced by ``proctor.llm.prices``) is
reserved on the budgets, a ``downgrade`` budget switches to ``downgrade_to``,
and the response's ``usage_metadata`` priced settles the budget. A
``require_approval`` rule on model calls waits for its decision in the
durable queue, holding the graph's step, as a decorated call waits.

An agent invoked inside a ``@runlog`` call is part of that run; otherwise each
invocation is a run of its own (``langchain.agent``), recorded with its tool
and model calls as actions, so ``proctor replay --policies`` covers it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, NotRequired, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain.agents.middleware.types import ModelRequest, ModelResponse, PrivateStateAttr
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from proctor.adapters._shared import (
    BODY,
    EARLIER_RUN,
    TOOL_CALL,
    OpenRun,
    Pending,
    Policies,
    QueueApprovals,
    ToolGuards,
    keyword_function,
    lost,
    price,
)
from proctor.approvals.durable import DurableChannel
from proctor.errors import ConfigurationError, PolicyViolationError, RunTerminated
from proctor.guard._async import wrap_async
from proctor.guard._sync import wrap_sync
from proctor.llm._governed import _LLMGuard
from proctor.llm.prices import PriceTable, Tokens
from proctor.llm.usage import DEFAULT_OUTPUT_TOKENS, prompt_tokens
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.rules.source import PolicySpec
from proctor.runtime.context import Frame, active, current_run

__all__ = ["ProctorMiddleware"]

MODEL_TOOL = "langchain.model"
"""The ``tool`` fact of model calls."""


class ProctorState(AgentState[Any]):
    """The agent's state, plus the proctor run an invocation belongs to (private to the graph)."""

    proctor_run: NotRequired[Annotated[str | None, PrivateStateAttr]]


class ProctorMiddleware(AgentMiddleware[ProctorState, Any, Any]):
    """Govern a ``create_agent`` agent: ``create_agent(model, tools, middleware=[ProctorMiddleware(...)])``.

    Parameters:
        policies: a policy file (path, paths, mapping or ``RuleSet``: rules, budgets, rate limits)
            or a ``PolicyEnforcer`` of code policies, as ``@runlog`` takes.
        agent: the ``agent`` fact, and whose budget the calls spend; the service when not given.
        service: the ``service`` fact (``"langchain"`` when not given).
        budget: a ``BudgetPolicy`` (or any code policy) that reserves each model call's estimate
            and settles its priced usage.
        prices: ``{model: {"input": ..., "output": ...}}`` in dollars per million tokens, over
            genai-prices' table (a model neither knows is an error at its first call).
        downgrade_to: the chat model a downgrade budget switches to.
        provider: the genai-prices provider the model names are looked up under (``"openai"``
            when not given; ``"anthropic"`` for Claude models).
        approvals: the durable queue approval requests go to (a ``DurableChannel``; the run
            log's database by default).
    """

    state_schema = ProctorState

    def __init__(
        self,
        *,
        policies: PolicySpec | PolicyEnforcer | None = None,
        agent: str | None = None,
        service: str = "langchain",
        budget: Policy | None = None,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        downgrade_to: BaseChatModel | None = None,
        provider: str | None = None,
        approvals: DurableChannel | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.agent = agent
        self.policies = Policies.of(policies, budget)
        self.approvals = QueueApprovals(approvals)
        self.downgrade_to = downgrade_to
        self.provider = provider
        self._overrides = prices
        self._prices: dict[str, PriceTable] = {}
        self._tools = ToolGuards(service, agent, self.policies, self.approvals)
        self._models: dict[bool, Callable[..., Any]] = {}
        self._runs: dict[str, OpenRun] = {}

    # The run an invocation is.

    def before_agent(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Open a run for this invocation, unless it is made inside a ``@runlog`` call."""
        if active.get() is not None:
            return None
        run = OpenRun(self.service, self.agent, "langchain.agent", _last_text(state.get("messages")))
        self._runs[run.run_id] = run
        return {"proctor_run": run.run_id}

    async def abefore_agent(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.before_agent(state, runtime)

    def after_agent(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Close the invocation's run: succeeded, or terminated when a rule stopped it."""
        key = state.get("proctor_run")
        run = self._runs.pop(key, None) if key else None
        if run is not None:
            run.close(_last_text(state.get("messages")))
        return None

    async def aafter_agent(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.after_agent(state, runtime)

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """A run a rule terminated ends here, before its next model call."""
        terminated = self._frame(state).run.terminated
        if terminated is None:
            return None
        text = f"Stopped by policy {terminated.rule_id}: {terminated.detail}"
        return {"jump_to": "end", "messages": [AIMessage(content=text)]}

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: ProctorState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    def _frame(self, state: Any) -> Frame:
        """The frame the agent's calls run in: the ``@runlog`` call around it, or its own run."""
        outer = active.get()
        if outer is not None:
            return outer
        key = state.get("proctor_run") if isinstance(state, Mapping) else None
        run = self._runs.get(key) if key else None
        if run is None:  # resumed in another process, or invoked without before_agent
            run = OpenRun(self.service, self.agent, "langchain.agent", _last_text(_get(state, "messages")))
            self._runs[key or run.run_id] = run
        return run.frame

    # Tool calls.

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        """Run the tool call through the call flow; a refusal is an error ``ToolMessage``."""
        tool_call = request.tool_call
        args = dict(tool_call.get("args") or {})
        frame = self._frame(request.state)
        refused = _refused_by_termination(frame, tool_call)
        if refused is not None:
            return refused
        driver = self._tools.driver(tool_call["name"], tuple(args), False)

        def body(patched: dict[str, Any]) -> Any:
            return handler(_with_args(request, args, patched))

        tokens = BODY.set(body), TOOL_CALL.set(tool_call.get("id")), active.set(frame)
        earlier = EARLIER_RUN.set(_earlier(request.state, frame))
        try:
            while True:
                try:
                    return driver(**args)  # type: ignore[no-any-return]
                except Pending as pending:
                    self._pause(pending)
        except (PolicyViolationError, RunTerminated) as exc:
            return _error(tool_call, exc)
        finally:
            EARLIER_RUN.reset(earlier)
            active.reset(tokens[2])
            TOOL_CALL.reset(tokens[1])
            BODY.reset(tokens[0])

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """``wrap_tool_call`` for ``ainvoke``/``astream``."""
        tool_call = request.tool_call
        args = dict(tool_call.get("args") or {})
        frame = self._frame(request.state)
        refused = _refused_by_termination(frame, tool_call)
        if refused is not None:
            return refused
        driver = self._tools.driver(tool_call["name"], tuple(args), True)

        async def body(patched: dict[str, Any]) -> Any:
            return await handler(_with_args(request, args, patched))

        tokens = BODY.set(body), TOOL_CALL.set(tool_call.get("id")), active.set(frame)
        earlier = EARLIER_RUN.set(_earlier(request.state, frame))
        try:
            while True:
                try:
                    return await driver(**args)  # type: ignore[no-any-return]
                except Pending as pending:
                    self._pause(pending)
        except (PolicyViolationError, RunTerminated) as exc:
            return _error(tool_call, exc)
        finally:
            EARLIER_RUN.reset(earlier)
            active.reset(tokens[2])
            TOOL_CALL.reset(tokens[1])
            BODY.reset(tokens[0])

    def _pause(self, pending: Pending) -> None:
        """Pause the graph until a person decided (``interrupt()``); returns once resumed and decided."""
        request = pending.request
        payload = {
            "proctor_approval": pending.ticket,
            "tool": request.tool,
            "rule": request.rule_id,
            "message": request.message,
            "decide": f"proctor approvals approve {pending.ticket} (or deny), or in proctor serve",
        }
        interrupt(payload)  # the first time, this pauses the graph; resumed, it returns
        while self.approvals.pending(pending.ticket):
            interrupt(payload)  # resumed before anyone decided: pause again

    # Model calls.

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> Any:
        """Reserve the call's estimate, switch to ``downgrade_to`` when a budget says so, settle usage."""
        name = _model_name(request.model)

        def body(args: dict[str, Any]) -> Any:
            try:
                response = handler(self._patched(request, name, args))
            except Exception as exc:
                self._lost(args, exc)
                raise
            current_run().add_cost(self._cost(args, response))
            return response

        own = active.get() is None  # the agent's own run, not a @runlog call's
        tokens = BODY.set(body), active.set(self._frame(request.state))
        try:
            return self._model_driver(False)(**self._model_args(request, name))
        except Exception as exc:
            if own:
                self._failed(request.state, exc)
            raise
        finally:
            active.reset(tokens[1])
            BODY.reset(tokens[0])

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> Any:
        """``wrap_model_call`` for ``ainvoke``/``astream``."""
        name = _model_name(request.model)

        async def body(args: dict[str, Any]) -> Any:
            try:
                response = await handler(self._patched(request, name, args))
            except Exception as exc:
                self._lost(args, exc)
                raise
            current_run().add_cost(self._cost(args, response))
            return response

        own = active.get() is None  # the agent's own run, not a @runlog call's
        tokens = BODY.set(body), active.set(self._frame(request.state))
        try:
            return await self._model_driver(True)(**self._model_args(request, name))
        except Exception as exc:
            if own:
                self._failed(request.state, exc)
            raise
        finally:
            active.reset(tokens[1])
            BODY.reset(tokens[0])

    def _lost(self, args: dict[str, Any], error: Exception) -> None:
        """A model call lost its connection or timed out, after which the provider may have billed
        it: it costs its estimate, never nothing (an error the provider answered costs nothing)."""
        if lost(error):
            current_run().add_cost(self._estimate(**args))

    def _failed(self, state: Any, error: Exception) -> None:
        """A model call raised, so the agent ends here: its own run ends as failed."""
        if isinstance(error, GraphBubbleUp):
            return  # a pause
        key = state.get("proctor_run") if isinstance(state, Mapping) else None
        run = self._runs.pop(key, None) if key else None
        if run is not None:
            run.close(error=error)

    def _model_args(self, request: ModelRequest[Any], name: str) -> dict[str, Any]:
        messages = [_plain(message) for message in request.messages]
        if request.system_message is not None:
            messages.insert(0, _plain(request.system_message))
        max_tokens = getattr(request.model, "max_tokens", None)
        return {"model": name, "messages": messages, "max_tokens": max_tokens}

    def _model_driver(self, asynchronous: bool) -> Callable[..., Any]:
        driver = self._models.get(asynchronous)
        if driver is None:
            guard = _LLMGuard(
                keyword_function(MODEL_TOOL, ("model", "messages", "max_tokens"), asynchronous),
                self.service,
                self.policies.source,
                self.agent,
                MODEL_TOOL,
                self._estimate,
                None,
                "raise",
                None,
                self.policies.model_enforcer,
                None,
                True,
            )
            cheaper = _model_name(self.downgrade_to) if self.downgrade_to is not None else None
            guard.downgrade_to = (lambda model: cheaper) if cheaper is not None else None
            driver = self._models[asynchronous] = wrap_async(guard) if asynchronous else wrap_sync(guard)
        return driver

    def _patched(self, request: ModelRequest[Any], name: str, args: dict[str, Any]) -> ModelRequest[Any]:
        """The request with what the flow changed in its arguments: the model (a downgrade or a
        rule's ``set``), the messages' text (``redact``, ``set`` on ``args.messages.N.content``),
        ``max_tokens`` (``clamp``)."""
        before = self._model_args(request, name)
        request = self._switched(request, name, args["model"])
        if args["messages"] != before["messages"]:
            request = _with_texts(request, before["messages"], args["messages"])
        maximum = args["max_tokens"]
        if maximum != before["max_tokens"] and isinstance(maximum, int):
            request = request.override(model_settings={**request.model_settings, "max_tokens": maximum})
        return request

    def _switched(self, request: ModelRequest[Any], name: str, model: str) -> ModelRequest[Any]:
        """The request, with the model a downgrade (or a rule) switched it to."""
        if model == name:
            return request
        cheaper = self.downgrade_to
        if cheaper is None or _model_name(cheaper) != model:
            raise ConfigurationError(
                f"a budget or rule switched the model to {model!r}, but ProctorMiddleware has no such "
                "chat model: pass downgrade_to=<the chat model named so>"
            )
        return request.override(model=cheaper)

    def _table(self) -> PriceTable:
        provider = self.provider or "openai"
        table = self._prices.get(provider)
        if table is None:
            table = self._prices[provider] = PriceTable(provider, self._overrides)
        return table

    def _estimate(self, model: str, messages: list[Any], max_tokens: int | None) -> float:
        """A model call's cost before it runs: its prompt and maximum output, priced."""
        output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_OUTPUT_TOKENS
        return self._table().rates(model).cost(Tokens(input=prompt_tokens(messages), output=output))

    def _cost(self, args: dict[str, Any], response: Any) -> float:
        """What a model call cost: its messages' ``usage_metadata`` priced, else its estimate."""
        model = args["model"]
        messages = response.result if isinstance(response, ModelResponse) else [response]
        total: float | None = None
        for message in messages:
            cost = price(self._table(), model, getattr(message, "usage_metadata", None))
            if cost is not None:
                total = (total or 0.0) + cost
        return total if total is not None else self._estimate(**args)


def _model_name(model: BaseChatModel) -> str:
    """A chat model's model name (``model_name`` or ``model``), else its LangChain type."""
    for attribute in ("model_name", "model"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type


def _plain(message: BaseMessage) -> dict[str, Any]:
    """A message as rules see it (and the run log keeps it): its role and text."""
    return {"role": message.type, "content": message.text}


def _with_texts(request: ModelRequest[Any], before: list[Any], after: Any) -> ModelRequest[Any]:
    """The request whose messages carry the texts rules patched (``args.messages.N.content``)."""
    if not isinstance(after, list) or len(after) != len(before):
        raise ConfigurationError(
            "a rule replaced args.messages of a LangChain model call as a whole; patch the text of "
            "each message instead (args.messages.0.content), or deny the call"
        )
    system = request.system_message
    messages = [system, *request.messages] if system is not None else list(request.messages)
    changed: list[Any] = [
        message if new == old else message.model_copy(update={"content": _content(new)})
        for message, old, new in zip(messages, before, after, strict=True)
    ]
    if system is not None:
        return request.override(system_message=cast(SystemMessage, changed[0]), messages=changed[1:])
    return request.override(messages=changed)


def _content(message: Any) -> str:
    content = message.get("content") if isinstance(message, Mapping) else message
    return content if isinstance(content, str) else str(content)


def _last_text(messages: Any) -> str | None:
    if not messages:
        return None
    last = messages[-1]
    return last.text if isinstance(last, BaseMessage) else str(last)


def _earlier(state: Any, frame: Frame) -> str | None:
    """The run the invocation began in, when it is not the one its calls now run in (it was
    resumed by another process, whose run of its own continues it)."""
    key = _get(state, "proctor_run")
    return key if isinstance(key, str) and key != frame.run.run_id else None


def _get(state: Any, key: str) -> Any:
    return state.get(key) if isinstance(state, Mapping) else getattr(state, key, None)


def _with_args(request: ToolCallRequest, args: dict[str, Any], patched: dict[str, Any]) -> ToolCallRequest:
    if patched == args:
        return request
    return request.override(tool_call={**request.tool_call, "args": patched})


def _error(tool_call: Any, error: PolicyViolationError | RunTerminated) -> ToolMessage:
    """The ``ToolMessage`` the model reads instead of the tool's answer."""
    if isinstance(error, RunTerminated):
        text = f"Stopped by policy {error.rule_id}: {error.detail}"
    else:
        text = f"Denied by policy {error.policy_name}: {error.detail}"
    return ToolMessage(
        content=text, tool_call_id=tool_call.get("id"), name=tool_call.get("name"), status="error"
    )


def _refused_by_termination(frame: Frame, tool_call: Any) -> ToolMessage | None:
    terminated = frame.run.terminated
    return _error(tool_call, terminated) if terminated is not None else None
