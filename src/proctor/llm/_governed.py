"""One SDK method, governed: its calls go through the ``@runlog`` call flow and settle from their usage.

A non-streaming call is a decorated plain or coroutine function: rules,
approvals, a fair slot, the budget reservation, the run log and replay are
the decorator's. Its estimate (``cost``) is the prompt's tokens plus the
request's maximum output, priced; the call then reports what its response's
``usage`` cost (``add_cost``), which replaces the reservation.

A streaming call (``stream=True``) is a decorated generator, a *meter*: the
flow checks and admits it before the request is sent, and settles it when the
meter ends. The caller gets the SDK's own ``Stream`` (or ``AsyncStream``), whose
iterator is replaced by a relay that hands each event to the meter and on to
the caller. The meter ends when the stream does (usage priced, or the
reservation when usage never came), when it breaks (the reservation), or
when the caller closes or drops it early (the reservation); from the moment
its request is sent, the call counts as costing its reservation, so that
however the meter is ended it is never settled at zero. Streamed calls are
checked, limited and settled but, like every decorated generator, are not
recorded as actions of the run log (a replay that meets one stops unless it
runs calls live). A ``scheduler=`` slot is held until the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import weakref
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

from proctor.approvals.base import ApprovalChannel
from proctor.errors import ConfigurationError
from proctor.guard._async import wrap_async
from proctor.guard._call import Call
from proctor.guard._flow import Guard
from proctor.guard._generators import wrap_async_generator, wrap_generator
from proctor.guard._sync import wrap_sync
from proctor.llm.prices import PriceTable, Tokens
from proctor.llm.usage import DEFAULT_OUTPUT_TOKENS
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.rules.source import PolicySource
from proctor.runtime.context import Frame, active, current_run
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler
from proctor.task import Task

__all__ = ["Api", "Governor", "Settings"]


class _StreamClosed(Exception):
    """Thrown into a meter whose stream was closed or dropped before it ended."""


_END: Any = object()
"""Sent to a meter when its stream ran out."""
_STARTED: Any = object()
"""Sent to a meter once the caller has its stream, so that the flow holds no reference to it."""


@dataclass(frozen=True)
class Api:
    """What differs between the governed methods: names, the request's size, and where usage is."""

    tool: str
    """The ``tool`` fact, e.g. ``openai.chat.completions.create``."""
    prompt: Callable[[dict[str, Any]], int]
    """The estimated input tokens of a request."""
    max_output: Callable[[dict[str, Any]], int | None]
    """The request's maximum output tokens, if it gives one."""
    tokens: Callable[[Any], Tokens | None]
    """The tokens a response reports (None: it reports no usage)."""
    stream_request: Callable[[dict[str, Any]], tuple[dict[str, Any], bool]]
    """The request to send for a stream (asking for usage), and whether the caller asked for usage."""
    stream_usage: Callable[[Any, Any], Any]
    """Fold one streamed event into the usage seen so far (``None`` at the start)."""
    stream_tokens: Callable[[Any], Tokens | None]
    """The tokens of a finished stream, from what ``stream_usage`` folded; None when usage never came."""
    usage_only: Callable[[Any], bool]
    """Whether an event is the usage-only one added for proctor (not handed to callers who did not ask)."""
    lost: tuple[type[BaseException], ...]
    """Errors after which the provider may have billed the call (a lost connection, a timeout)."""


@dataclass(frozen=True)
class Settings:
    """What ``instrument()`` was given, shared by the methods of one client."""

    service: str
    agent: str | None
    source: PolicySource | None
    enforcer: PolicyEnforcer | None
    scheduler: LOCOScheduler | AsyncLOCOScheduler | None
    prices: PriceTable
    downgrade_to: Callable[[str], str | None] | None
    approvals: ApprovalChannel | None = None


class _LLMGuard(Guard):
    """The decorator's call flow, plus a code budget's downgrade: the model ``downgrade_to`` names."""

    downgrade_to: Callable[[str], str | None] | None = None

    def admitted(self, call: Call, admission: Admission) -> None:
        super().admitted(call, admission)
        choose = self.downgrade_to
        if choose is None or call.limits is not None or not admission.downgraded:
            return  # a policy file's downgrade budgets patch the call themselves (their `set:`)
        model = call.bound.get("model")
        cheaper = choose(model) if isinstance(model, str) else None
        if cheaper is None or cheaper == model:
            return
        patched = dict(call.bound)
        patched["model"] = cheaper
        call.args, call.kwargs = self.unbind(patched)
        call.requested = call.requested if call.requested is not None else call.bound
        call.bound = patched
        for decision in admission.decisions:
            if decision.downgrade:
                call.downgraded.append(
                    {"phase": "limit", "rule": decision.policy, "action": "modify", "decided": True}
                )


def _report(cost: float, frame: Frame | None = None) -> None:
    """Report what the call cost, into ``frame`` (a meter's call) or the call under way."""
    if frame is None:
        current_run().add_cost(cost)
        return
    frame.reported = None  # the reservation standing in for it (see _stand_in)
    token = active.set(frame)  # an event loop shutting down may close the meter outside its call
    try:
        frame.run.add_cost(cost)
    finally:
        active.reset(token)


def _stand_in(frame: Frame | None, reservation: float) -> None:
    """From the moment its request is sent, a stream's call counts as costing its reservation.

    Whatever ends the flow's generator before the meter could report (an event loop that closes
    its async generators as it shuts down, in any order; the collector), the call is then settled
    at the reservation, never at zero. The meter's own report replaces it (``_report``). Only the
    run's ``cost`` misses it in that case, as it is added by the report.
    """
    if frame is not None:
        frame.reported = reservation


_RAW = "x-stainless-raw-response"


def _parsed(response: Any) -> Any:
    """The response model of a call made through ``with_raw_response`` (its ``parse()`` is cached),
    else the response itself."""
    if getattr(response, "usage", None) is None and hasattr(response, "http_response"):
        parse = getattr(response, "parse", None)
        if callable(parse):
            return parse()
    return response


def _not_raw(request: dict[str, Any]) -> None:
    """Refuse, before it is sent, a stream asked for through ``with_raw_response`` or
    ``with_streaming_response``: its events never pass through the meter."""
    headers = request.get("extra_headers")
    if isinstance(headers, dict) and any(str(name).lower() == _RAW for name in headers):
        raise ConfigurationError(
            "a stream through with_raw_response or with_streaming_response is not governed by "
            "proctor.instrument(), so it is refused; iterate create(stream=True) instead"
        )


class Governor:
    """The governed replacement of one SDK method (``create``) of one client."""

    def __init__(
        self, api: Api, original: Callable[..., Any], settings: Settings, asynchronous: bool
    ) -> None:
        self.api = api
        self.original = original
        self.settings = settings
        self.asynchronous = asynchronous
        self.prices = settings.prices
        signature = _keyword_signature(original)
        if asynchronous:
            plain: Callable[..., Any] = self._acall
            meter: Callable[..., Any] = self._ameter_function()
        else:
            plain, meter = self._call, self._meter
        self._plain = self._wrap(plain, signature, wrap_async if asynchronous else wrap_sync)
        self._streamed = self._wrap(
            meter, signature, wrap_async_generator if asynchronous else wrap_generator, slots=False
        )

    def _wrap(
        self,
        body: Callable[..., Any],
        signature: inspect.Signature,
        driver: Callable[[Guard], Callable[..., Any]],
        *,
        slots: bool = True,
    ) -> Callable[..., Any]:
        """``body`` as a decorated function whose arguments are the SDK method's keywords."""
        settings = self.settings
        function = _shaped(body, signature, self.api.tool)
        guard = _LLMGuard(
            function,
            settings.service,
            settings.source,
            settings.agent,
            self.api.tool,
            self.estimate,
            None,
            "raise",
            settings.approvals,
            settings.enforcer,
            settings.scheduler if slots else None,
            True,
        )
        guard.downgrade_to = settings.downgrade_to
        return driver(guard)

    # The estimate, and what a response cost.

    def estimate(self, *args: Any, **request: Any) -> float:
        """The cost of ``request`` before it runs: its prompt and its maximum output, priced."""
        rates = self.prices.rates(request.get("model"))
        output = self.api.max_output(request)
        tokens = Tokens(
            input=self.api.prompt(request), output=DEFAULT_OUTPUT_TOKENS if output is None else output
        )
        return rates.cost(tokens)

    def _priced(self, request: dict[str, Any], tokens: Tokens | None) -> float:
        """What the call cost: its tokens at its model's rates; the estimate when it reported none."""
        if tokens is None:
            return self.estimate(**request)
        return self.prices.rates(request.get("model")).cost(tokens)

    # Plain calls.

    def _call(self, **request: Any) -> Any:
        self.prices.rates(request.get("model"))  # a model without a price is refused before it is sent
        try:
            response = self.original(**request)
        except self.api.lost:
            _report(self.estimate(**request))  # it may have run: the reservation, never zero
            raise
        _report(self._priced(request, self.api.tokens(_parsed(response))))
        return response

    async def _acall(self, **request: Any) -> Any:
        self.prices.rates(request.get("model"))
        try:
            response = await self.original(**request)
        except self.api.lost:
            _report(self.estimate(**request))
            raise
        _report(self._priced(request, self.api.tokens(_parsed(response))))
        return response

    # Streams: the meter (a decorated generator) and the relay the caller iterates.

    def _meter(self, **request: Any) -> Generator[Any, Any, None]:
        self.prices.rates(request.get("model"))
        _not_raw(request)
        frame = active.get()
        sent, asked = self.api.stream_request(request)
        seen: Any = None
        with contextlib.ExitStack() as slot:
            grant = None
            scheduler = self.settings.scheduler
            if isinstance(scheduler, LOCOScheduler):
                grant = slot.enter_context(scheduler.acquire(self._agent(), self._task(request)))
            try:
                stream = self.original(**sent)
            except self.api.lost:
                _report(self.estimate(**request), frame)
                raise
            _stand_in(frame, self.estimate(**request))
            try:
                event = yield stream, asked
                del stream
                while event is not _END:
                    if event is not _STARTED:
                        seen = self.api.stream_usage(event, seen)
                    event = yield None
            finally:  # ended, broken or dropped: what the usage seen says, else the reservation
                self._settle_stream(request, seen, frame, grant)

    def _ameter_function(self) -> Callable[..., AsyncGenerator[Any, Any]]:
        """The async meter, as a function of its own (an async generator cannot delegate to another
        one as ``yield from`` lets a generator do)."""
        governor = self

        async def meter(**request: Any) -> AsyncGenerator[Any, Any]:
            governor.prices.rates(request.get("model"))
            _not_raw(request)
            frame = active.get()
            sent, asked = governor.api.stream_request(request)
            seen: Any = None
            async with contextlib.AsyncExitStack() as slot:
                grant = None
                scheduler = governor.settings.scheduler
                if isinstance(scheduler, AsyncLOCOScheduler):
                    grant = await slot.enter_async_context(
                        scheduler.acquire(governor._agent(), governor._task(request))
                    )
                try:
                    stream = await governor.original(**sent)
                except governor.api.lost:
                    _report(governor.estimate(**request), frame)
                    raise
                _stand_in(frame, governor.estimate(**request))
                try:
                    event = yield stream, asked
                    del stream
                    while event is not _END:
                        if event is not _STARTED:
                            seen = governor.api.stream_usage(event, seen)
                        event = yield None
                finally:
                    governor._settle_stream(request, seen, frame, grant)

        return meter

    def _settle_stream(self, request: dict[str, Any], seen: Any, frame: Any, grant: Any) -> None:
        """Price a stream's usage as far as it was seen, and report it to the call and its slot."""
        cost = self._priced(request, self.api.stream_tokens(seen))
        _report(cost, frame)
        if grant is not None:
            grant.cost = cost

    def _agent(self) -> str:
        return self.settings.agent if self.settings.agent is not None else self.settings.service

    def _task(self, request: dict[str, Any]) -> Task:
        return Task(task_type=self.api.tool, cost=self.estimate(**request))

    # The governed method.

    def call(self, **kwargs: Any) -> Any:
        """The governed ``create``: a plain call, or a stream whose meter runs until it ends."""
        if kwargs.get("stream") is not True:
            return self._plain(**kwargs)
        meter = self._streamed(**kwargs)
        first = next(meter)  # checks, admits (or raises), and sends the request
        if not isinstance(first, tuple):  # a refusal a rule returns instead of raising
            meter.close()
            return first
        stream, asked = first
        meter.send(_STARTED)
        original = stream._iterator
        hide = None if asked else self.api.usage_only
        stream._iterator = _relay(meter, original, hide)
        closing = stream.close

        def close() -> None:
            _abandon(meter)
            closing()

        stream.close = close
        weakref.finalize(stream, _abandon, meter).atexit = False
        return stream

    async def acall(self, **kwargs: Any) -> Any:
        """The governed async ``create``."""
        if kwargs.get("stream") is not True:
            return await self._plain(**kwargs)
        meter = self._streamed(**kwargs)
        first = await meter.__anext__()
        if not isinstance(first, tuple):
            await meter.aclose()
            return first
        stream, asked = first
        await meter.asend(_STARTED)
        original = stream._iterator
        hide = None if asked else self.api.usage_only
        stream._iterator = _arelay(meter, original, hide)
        closing = stream.close

        async def close() -> None:
            await _aabandon(meter)
            await closing()

        stream.close = close
        weakref.finalize(stream, _abandon_later, meter).atexit = False
        return stream


def _relay(meter: Generator[Any, Any, Any], events: Any, hide: Callable[[Any], bool] | None) -> Any:
    """The caller's iterator over a governed stream: each event goes to the meter, then to the caller."""
    try:
        for event in events:
            meter.send(event)
            if hide is not None and hide(event):
                continue
            yield event
    except GeneratorExit:  # closed or dropped before the end
        _abandon(meter)
        raise
    except BaseException as exc:  # the stream broke: the meter settles the reservation
        with contextlib.suppress(BaseException):
            meter.throw(exc)
        raise
    with contextlib.suppress(StopIteration):
        meter.send(_END)


async def _arelay(meter: AsyncGenerator[Any, Any], events: Any, hide: Callable[[Any], bool] | None) -> Any:
    try:
        async for event in events:
            await meter.asend(event)
            if hide is not None and hide(event):
                continue
            yield event
    except GeneratorExit:
        await _aabandon(meter)
        raise
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            await meter.athrow(exc)
        raise
    with contextlib.suppress(StopAsyncIteration):
        await meter.asend(_END)


def _abandon(meter: Generator[Any, Any, Any]) -> None:
    """End a meter whose stream stopped early: it settles the reservation. Nothing if it ended."""
    with contextlib.suppress(_StreamClosed, StopIteration, ValueError):  # ValueError: it is running
        meter.throw(_StreamClosed("the stream was closed before it ended"))


async def _aabandon(meter: AsyncGenerator[Any, Any]) -> None:
    with contextlib.suppress(_StreamClosed, StopAsyncIteration, RuntimeError):
        await meter.athrow(_StreamClosed("the stream was closed before it ended"))


_ending: set[asyncio.Task[None]] = set()


def _abandon_later(meter: AsyncGenerator[Any, Any]) -> None:
    """An async stream was dropped unclosed: end its meter on the running loop, if there is one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop to run it on: the reservation is given back when its lease runs out
    task = loop.create_task(_aabandon(meter))
    _ending.add(task)
    task.add_done_callback(_ending.discard)


def _keyword_signature(method: Callable[..., Any]) -> inspect.Signature:
    """The SDK method's parameters as keyword-only ones without defaults, so that a call's arguments
    (the ``args`` fact, and what the run log records) are exactly the keywords the caller gave."""
    parameters = [
        inspect.Parameter(parameter.name, inspect.Parameter.KEYWORD_ONLY)
        for parameter in inspect.signature(method).parameters.values()
        if parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return inspect.Signature(parameters)


def _shaped(body: Callable[..., Any], signature: inspect.Signature, tool: str) -> Callable[..., Any]:
    """``body`` (a bound method taking ``**request``) as a function with ``signature``, named ``tool``.

    An async generator ``body`` is already such a function (see ``Governor._ameter_function``).
    """
    if inspect.isasyncgenfunction(body):
        shaped: Callable[..., Any] = body
    elif inspect.isgeneratorfunction(body):

        def gen(**request: Any) -> Generator[Any, Any, Any]:
            return (yield from body(**request))  # sends and throws reach the body

        shaped = gen
    elif inspect.iscoroutinefunction(body):

        async def coro(**request: Any) -> Any:
            return await body(**request)

        shaped = coro
    else:

        def plain(**request: Any) -> Any:
            return body(**request)

        shaped = plain
    shaped.__signature__ = signature  # type: ignore[attr-defined]
    shaped.__qualname__ = shaped.__name__ = tool
    shaped.__module__ = __name__
    return shaped
