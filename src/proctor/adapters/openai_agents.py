"""``ProctorAgents``: an OpenAI Agents SDK agent governed by proctor, with guardrails made from a policy file.

``ProctorAgents(...).govern(agent)`` returns a copy of the agent whose function
tools carry proctor's tool input and output guardrails and ``needs_approval``
callable, and whose calls run through the ``@runlog`` call flow (each is a
call named after the tool, its JSON arguments as ``args.*``):

- ``needs_approval`` (the SDK's first step of a tool call) checks the rules.
  A ``require_approval`` writes the request to proctor's durable queue and
  returns True while nobody has decided: the run stops with an interruption.
  Once people decided (``proctor approvals``, ``proctor serve``),
  ``resume_state(result)`` approves the decided interruptions in the SDK's
  state, and the resumed run takes proctor's decision (a refusal reaches the
  model as a rejected tool call);
- the input guardrail rejects a denied call with ``reject_content`` (the
  model reads the rule's message), and raises for ``terminate``, which ends
  the run (``ToolInputGuardrailTripwireTriggered``) and refuses every later
  call of it;
- the tool runs with the arguments ``modify`` rules patched, inside the
  budgets' reservation, and is recorded in the run log;
- the output guardrail rejects an output that rules checked after the call
  deny (``reject_content``).

``hooks`` (pass them to ``Runner.run(..., hooks=...)``) reserve each model
call's estimate on the budgets (``budget=``, or the policy file's budgets)
before it is sent, and settle the usage the response reports, priced by
``proctor.llm.prices``. ``await ProctorAgents.run(agent, input)`` is
``Runner.run`` with those hooks, recorded as one run whose actions are the
tool calls; so is a ``Runner.run`` made inside a ``@runlog`` call (its run has
them, and the model spend in its cost). Outside both, each tool call is a
recorded run of its own.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents import Agent, FunctionTool, RunHooks, Runner, RunResult, ToolGuardrailFunctionOutput
from agents.items import ModelResponse
from agents.run_context import RunContextWrapper
from agents.tool_context import ToolContext
from agents.tool_guardrails import (
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)

from proctor.adapters._shared import (
    BODY,
    TOOL_CALL,
    OpenRun,
    Pending,
    Policies,
    QueueApprovals,
    keyword_function,
    lost,
)
from proctor.approvals.durable import DurableChannel
from proctor.errors import PolicyViolationError, RunTerminated
from proctor.guard import _ledgers
from proctor.guard._async import _invoke as invoke
from proctor.guard._async import decide, off_loop
from proctor.guard._call import PROCEED, Call, status_of
from proctor.guard._flow import Guard
from proctor.llm.prices import PriceTable, Tokens
from proctor.llm.usage import DEFAULT_OUTPUT_TOKENS, prompt_tokens
from proctor.outcome import Outcome, Status
from proctor.outcome import status_of as outcome_status_of
from proctor.policy.base import Policy
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.rules.source import PolicySpec
from proctor.runs.log import NO_RESULT
from proctor.runtime.context import Frame, active
from proctor.task import Task
from proctor.telemetry import _hook

__all__ = ["MODEL_TOOL", "ProctorAgents"]

logger = logging.getLogger("proctor.adapters")

MODEL_TOOL = "openai_agents.model"
"""The ``tool`` a policy file's budgets see for model calls (``per: tool``)."""


@dataclass
class _Refused:
    """Why a tool call may not run: the text the model reads, and whether the run ends."""

    text: str
    terminates: bool = False


class ProctorAgents:
    """Proctor for the OpenAI Agents SDK: ``governed = ProctorAgents(policies=...).govern(agent)``.

    Parameters:
        policies: a policy file (path, paths, mapping or ``RuleSet``) or a ``PolicyEnforcer``.
        agent: the ``agent`` fact, and whose budget the calls spend; the service when not given.
        service: the ``service`` fact (``"openai-agents"`` when not given).
        budget: a ``BudgetPolicy`` (or any code policy) for the model calls, settled by ``hooks``.
        prices: ``{model: {"input": ..., "output": ...}}`` in dollars per million tokens, over
            genai-prices' table (a model neither knows is an error at its first call).
        provider: the genai-prices provider model names are looked up under (``"openai"``).
        approvals: the durable queue approval requests go to (a ``DurableChannel``).
    """

    def __init__(
        self,
        *,
        policies: PolicySpec | PolicyEnforcer | None = None,
        agent: str | None = None,
        service: str = "openai-agents",
        budget: Policy | None = None,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        provider: str = "openai",
        approvals: DurableChannel | None = None,
    ) -> None:
        self.service = service
        self.agent = agent
        self.policies = Policies.of(policies, budget)
        self.approvals = QueueApprovals(approvals)
        self.prices = PriceTable(provider, prices)
        self.hooks = _Hooks(self)
        """``RunHooks`` that reserve and settle each model call's cost on the budgets."""
        self.input_guardrail: ToolInputGuardrail[Any] = ToolInputGuardrail(
            guardrail_function=self._input, name="proctor"
        )
        self.output_guardrail: ToolOutputGuardrail[Any] = ToolOutputGuardrail(
            guardrail_function=self._output, name="proctor"
        )
        self._guards: dict[tuple[str, tuple[str, ...]], Guard] = {}
        self._open: dict[str, tuple[Guard, Call]] = {}  # calls checked and let through, by tool call id
        self._refused: dict[str, _Refused] = {}  # calls refused before they ran
        self._denied_outputs: dict[str, str] = {}  # outputs the rules after the call denied
        self._spans: dict[int, Any] = {}  # what telemetry opened for each call, by id(call)
        self._lock = threading.Lock()

    # Governing an agent.

    def govern(self, agent: Agent[Any]) -> Agent[Any]:
        """A copy of ``agent`` whose function tools are governed (other tools are left as they are)."""
        return agent.clone(tools=[self.tool(tool) for tool in agent.tools])

    def tool(self, tool: Any) -> Any:
        """A governed copy of a ``FunctionTool`` (anything else is returned as it is)."""
        if not isinstance(tool, FunctionTool):
            return tool
        governed = copy.copy(tool)
        original = tool.on_invoke_tool
        name = tool.name

        async def on_invoke_tool(context: ToolContext[Any], arguments: str) -> Any:
            return await self._invoke(name, context, arguments, original)

        governed.on_invoke_tool = on_invoke_tool
        governed.tool_input_guardrails = [*(tool.tool_input_guardrails or []), self.input_guardrail]
        governed.tool_output_guardrails = [*(tool.tool_output_guardrails or []), self.output_guardrail]
        if tool.needs_approval is False:

            async def needs_approval(
                context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
            ) -> bool:
                """Check the call against the rules; True while its approval waits for people."""
                return await self._check(name, dict(params), call_id)

            governed.needs_approval = needs_approval
        return governed

    async def run(self, agent: Agent[Any], input: Any, **kwargs: Any) -> RunResult:
        """``Runner.run(agent, input, hooks=self.hooks, **kwargs)`` as one recorded run
        (``openai_agents.run``) whose actions are the tool calls, unless a ``@runlog`` call is
        already around it (its run then has them). A run a rule terminated is recorded so."""
        kwargs.setdefault("hooks", self.hooks)
        if active.get() is not None:
            return await Runner.run(agent, input, **kwargs)
        run = OpenRun(
            self.service, self.agent, "openai_agents.run", input if isinstance(input, str) else None
        )
        token = active.set(run.frame)
        try:
            result = await Runner.run(agent, input, **kwargs)
        except BaseException as exc:
            await self.hooks.abandon(run.frame, exc)
            run.close(error=exc)
            raise
        finally:
            active.reset(token)
        run.close(None if result.interruptions else _plain(result.final_output))
        return result

    def resume_state(self, result: Any) -> Any:
        """The ``RunState`` to resume an interrupted run with: every interruption whose proctor
        request people decided is approved in it, so that the resumed call takes proctor's decision
        (an approval runs it, a refusal reaches the model). Undecided ones stay interrupted.

        The requests are known by tool call in the process that made them: resume a run there (a
        run resumed elsewhere asks for its approvals anew)."""
        state = result.to_state()
        for item in result.interruptions:
            call_id = getattr(item, "call_id", None)
            if isinstance(call_id, str) and self.approvals.decided(call_id):
                state.approve(item)
        return state

    # The steps of a tool call, in the SDK's order.

    async def _input(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        """Reject a refused call (``reject_content``); a terminated run raises."""
        context = data.context
        call_id = context.tool_call_id
        unchecked = call_id not in self._open and call_id not in self._refused  # needs_approval was not asked
        if unchecked and await self._check(context.tool_name, _arguments(context.tool_arguments), call_id):
            self._refused[call_id] = _Refused(_waiting(self.approvals.tickets.get(call_id)))
        refused = self._refused.pop(call_id, None)
        if refused is None:
            return ToolGuardrailFunctionOutput.allow()
        if refused.terminates:
            return ToolGuardrailFunctionOutput.raise_exception(output_info=refused.text)
        return ToolGuardrailFunctionOutput.reject_content(refused.text)

    async def _output(self, data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        """Reject an output that the rules checked after the call denied."""
        text = self._denied_outputs.pop(data.context.tool_call_id, None)
        if text is None:
            return ToolGuardrailFunctionOutput.allow()
        return ToolGuardrailFunctionOutput.reject_content(text)

    async def _check(self, name: str, args: dict[str, Any], call_id: str) -> bool:
        """Start the call and apply the rules' verdict; True when it waits for a person."""
        earlier = self._open.pop(call_id, None)
        if earlier is not None:  # checked before, never run (the SDK asks again after an interruption)
            await self._close(*earlier, "cancelled", None, _Stopped("checked again"))
        guard = self._guard(name, tuple(args))
        parent = active.get()
        try:
            call = guard.start((), args, parent)
        except RunTerminated as exc:  # the run was stopped earlier
            self._refused[call_id] = _Refused(_text(exc), terminates=True)
            return False
        call.recorder.opened(guard, call)
        telemetry = _hook.active  # None unless telemetry is on
        if telemetry is not None:  # the span is not made current: the call ends in another step
            self._spans[id(call)] = telemetry.opened(guard, call, current=False)
        rules = guard.rules_for(call.run)
        call.off_loop = guard.waits_on_stores(rules)
        token = TOOL_CALL.set(call_id)
        try:
            if call.off_loop:
                await off_loop(guard.check, call, rules)
            else:
                guard.check(call, rules)
            decided = await decide(guard, call, telemetry)
        except Pending:
            await self._close(guard, call, "cancelled", None, _Stopped("waits for approval"))
            return True
        except (PolicyViolationError, RunTerminated) as exc:
            await self._close(guard, call, status_of(exc), None, exc)
            self._refused[call_id] = _Refused(_text(exc), terminates=isinstance(exc, RunTerminated))
            return False
        except BaseException as exc:
            await self._close(guard, call, status_of(exc), None, exc)
            raise
        finally:
            TOOL_CALL.reset(token)
        assert decided is PROCEED  # on_deny is "raise": a refusal raised
        self._open[call_id] = (guard, call)
        return False

    async def _invoke(self, name: str, context: ToolContext[Any], arguments: str, original: Any) -> Any:
        """Run the checked call (checking it first if no guardrail did), in its budgets, recorded."""
        call_id = context.tool_call_id
        opened = self._open.pop(call_id, None)
        if opened is None:  # no guardrail checked it: check it now
            refused = self._refused.pop(call_id, None)
            if refused is None:
                if await self._check(name, _arguments(arguments), call_id):
                    return _waiting(self.approvals.tickets.get(call_id))
                opened = self._open.pop(call_id, None)
                refused = self._refused.pop(call_id, None)
            if opened is None:
                assert refused is not None
                return refused.text
        guard, call = opened

        async def body(patched: dict[str, Any]) -> Any:
            return await original(context, json.dumps(patched))

        tokens = BODY.set(body), active.set(call.frame)
        began = time.perf_counter()
        result: Any = NO_RESULT
        try:
            try:
                result = await invoke(guard, call)
            finally:
                active.reset(tokens[1])
                BODY.reset(tokens[0])
            duration = time.perf_counter() - began
            returned = (
                await off_loop(guard.finish, call, result) if call.off_loop else guard.finish(call, result)
            )
        except PolicyViolationError as exc:  # a budget refused it, or the rules denied its output
            await self._close(guard, call, "denied", time.perf_counter() - began, exc, result)
            text = _text(exc)
            if result is not NO_RESULT:
                self._denied_outputs[call_id] = text
            return text
        except BaseException as exc:
            await self._close(guard, call, status_of(exc), time.perf_counter() - began, exc, result)
            raise
        await self._close(guard, call, "succeeded", duration, None, result, returned)
        return returned

    async def _close(
        self,
        guard: Guard,
        call: Call,
        status: str,
        duration: float | None,
        error: BaseException | None,
        result: Any = NO_RESULT,
        returned: Any = NO_RESULT,
    ) -> None:
        closing = (guard, call, status, duration, result, returned, error)
        try:
            if call.off_loop:
                await off_loop(call.recorder.closed, *closing)
            else:
                call.recorder.closed(*closing)
        finally:
            opened = self._spans.pop(id(call), None)
            telemetry = _hook.active
            if telemetry is not None:
                telemetry.closed(guard, call, opened, status, result, error)

    def _guard(self, name: str, keys: tuple[str, ...]) -> Guard:
        key = (name, keys)
        guard = self._guards.get(key)
        if guard is None:
            guard = Guard(
                keyword_function(name, keys, True),
                self.service,
                self.policies.source,
                self.agent,
                name,
                None,
                None,
                "raise",
                self.approvals,
                self.policies.enforcer,
                None,
                True,
            )
            with self._lock:
                guard = self._guards.setdefault(key, guard)
        return guard

    # Model calls (the hooks).

    def model_enforcer(self) -> PolicyEnforcer | None:
        """The budgets model calls reserve on: ``budget=``, else the policy file's budgets."""
        if self.policies.model_enforcer is not None:
            return self.policies.model_enforcer
        source = self.policies.source
        if source is None:
            return None
        rules = source.current()
        if not (rules.budgets or rules.rate_limits):
            return None
        agent = self.agent if self.agent is not None else self.service
        return _ledgers.limits_of(rules).enforcer(agent=agent, service=self.service, tool=MODEL_TOOL)

    def estimate(self, model: str, agent: Agent[Any], system_prompt: str | None, items: Any) -> float:
        """A model call's cost before it is sent: its prompt and maximum output, priced."""
        maximum = agent.model_settings.max_tokens
        output = maximum if isinstance(maximum, int) and maximum > 0 else DEFAULT_OUTPUT_TOKENS
        return self.prices.rates(model).cost(Tokens(input=prompt_tokens(system_prompt, items), output=output))

    def cost(self, model: str, usage: Any) -> float:
        """What a response's ``Usage`` cost at ``model``'s rates."""
        cached = getattr(getattr(usage, "input_tokens_details", None), "cached_tokens", 0) or 0
        reasoning = getattr(getattr(usage, "output_tokens_details", None), "reasoning_tokens", 0) or 0
        tokens = Tokens(
            input=usage.input_tokens, output=usage.output_tokens, cache_read=cached, reasoning=reasoning
        )
        return self.prices.rates(model).cost(tokens)


class _Hooks(RunHooks[Any]):
    """Reserve a model call's estimate before it is sent; settle its usage when it returns."""

    def __init__(self, owner: ProctorAgents) -> None:
        self.owner = owner
        self._reserved: dict[tuple[int, str], tuple[PolicyEnforcer, Admission, str, Frame | None]] = {}

    async def on_llm_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], system_prompt: str | None, input_items: Any
    ) -> None:
        owner = self.owner
        model = _model_name(agent)
        estimate = owner.estimate(model, agent, system_prompt, input_items)  # an unpriced model stops here
        enforcer = owner.model_enforcer()
        if enforcer is None:
            return
        who = owner.agent if owner.agent is not None else owner.service
        task = Task(task_type=MODEL_TOOL, cost=estimate)
        if enforcer.blocking:
            admission = await off_loop(enforcer.admit, who, task, withdraw=enforcer)
        else:
            admission = enforcer.admit(who, task)
        if admission.downgraded:
            logger.warning(
                "a downgrade budget let %s's call to %s run over its limit; the Agents SDK's hooks cannot "
                "switch its model, so it runs on %s (give the agent the cheaper model, or use mode: reject)",
                agent.name,
                model,
                model,
            )
        self._reserved[(id(context), agent.name)] = (enforcer, admission, model, active.get())

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        owner = self.owner
        reserved = self._reserved.pop((id(context), agent.name), None)
        model = reserved[2] if reserved is not None else _model_name(agent)
        actual = owner.cost(model, response.usage)
        if reserved is not None:
            await _settle(reserved[0], reserved[1], Outcome(Status.SUCCESS, actual))
        frame = active.get()
        if frame is not None:  # inside a @runlog call: the run's cost
            frame.run.add_cost(actual)

    async def abandon(self, frame: Frame, error: BaseException) -> None:
        """The run of ``frame`` failed: a model call that never returned is charged its reservation
        when its connection was lost or it timed out (the provider may have billed it), else nothing."""
        cost = None if lost(error) else 0.0  # None: the reservation
        for key, (enforcer, admission, _, opened_in) in list(self._reserved.items()):
            if opened_in is frame and self._reserved.pop(key, None) is not None:
                await _settle(enforcer, admission, Outcome(outcome_status_of(error), cost, error))


async def _settle(enforcer: PolicyEnforcer, admission: Admission, outcome: Outcome) -> None:
    if enforcer.blocking:
        await off_loop(enforcer.settle, admission, outcome)
    else:
        enforcer.settle(admission, outcome)


class _Stopped(BaseException):
    """How a call paused for its approval ends in the run log (cancelled: it will be asked again)."""


def _model_name(agent: Agent[Any]) -> str:
    model = agent.model
    if isinstance(model, str) and model:
        return model
    name = getattr(model, "model", None)
    if isinstance(name, str) and name:
        return name
    return type(model).__name__


def _plain(output: Any) -> Any:
    """A run's final output as the run log keeps it (text, or what JSON holds)."""
    if output is None or isinstance(output, str | int | float | bool | list | dict):
        return output
    dump = getattr(output, "model_dump", None)
    return dump() if callable(dump) else str(output)


def _waiting(ticket: str | None) -> str:
    return f"This call waits for approval {ticket or ''}; try again later."


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(error: PolicyViolationError | RunTerminated) -> str:
    if isinstance(error, RunTerminated):
        return f"Stopped by policy {error.rule_id}: {error.detail}"
    return f"Denied by policy {error.policy_name}: {error.detail}"
