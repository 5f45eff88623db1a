"""The drivers of generator functions: checked once before the first item, settled after the last.

Generator calls are not recorded (a replay refuses them unless it runs calls
live); the function's frame is the active call only while it produces an item.
An async generator's store steps (its check's holds, its enforcer's admit and
settle) run on proctor's store threads when a store can wait, as a coroutine's do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from proctor.decision import Action
from proctor.errors import PolicyViolationError
from proctor.guard import _async, _sync
from proctor.guard._call import PROCEED, Call
from proctor.guard._call import status_of as call_status
from proctor.guard._flow import Guard, replaying_only
from proctor.outcome import Outcome, Status, status_of
from proctor.policy.enforcer import Admission, PolicyEnforcer
from proctor.rules.ruleset import RuleSet
from proctor.runs.log import NO_RESULT
from proctor.runtime.context import active
from proctor.telemetry import _hook

__all__ = ["wrap_async_generator", "wrap_generator"]


def wrap_generator(guard: Guard) -> Callable[..., Any]:
    """The wrapper of a generator function."""
    function = guard.function

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call, rules = _started(guard, args, kwargs)
        telemetry = _hook.active  # its span is not made current: the consumer runs between items
        opened = telemetry.opened(guard, call, current=False) if telemetry is not None else None
        returned: Any = None
        try:
            guard.check(call, rules)
            decided = _sync.decide(guard, call, telemetry)
            if decided is PROCEED:
                returned = yield from _items(guard, call, function)
        except BaseException as exc:
            if telemetry is not None:
                telemetry.closed(guard, call, opened, call_status(exc), NO_RESULT, exc)
            raise
        if decided is not PROCEED:
            if telemetry is not None:
                telemetry.closed(guard, call, opened, "denied", NO_RESULT, None)
            yield decided  # the refusal is the one item, for an agent to read
            return None
        if telemetry is not None:
            telemetry.closed(guard, call, opened, _ended(call), returned, None)
        return returned

    return wrapper


def _items(guard: Guard, call: Call, function: Callable[..., Any]) -> Generator[Any, Any, Any]:
    """The items of an admitted generator call, each made with its frame active; settled after."""
    admission = _admit(guard, call)
    items = function(*call.args, **call.kwargs)
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            # The call's frame is active only while the generator runs, not between items.
            token = active.set(call.frame)
            try:
                item = items.send(sent) if thrown is None else items.throw(thrown)
            except StopIteration as stop:
                returned = stop.value
                break
            finally:
                active.reset(token)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                thrown, sent = exc, None
    except BaseException as exc:
        _failed(admission, exc, guard, call)
        raise
    finally:
        # An early break or close() finishes the function inside its run, not outside.
        token = active.set(call.frame)
        try:
            items.close()
        finally:
            active.reset(token)
    _finished(admission, guard, call, returned)
    return returned


def wrap_async_generator(guard: Guard) -> Callable[..., Any]:
    """The wrapper of an async generator function; its store steps run off the loop, as a coroutine's."""
    function = guard.function
    step = _async.off_loop

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call, rules = _started(guard, args, kwargs)
        telemetry = _hook.active  # its span is not made current: the consumer runs between items
        opened = telemetry.opened(guard, call, current=False) if telemetry is not None else None
        try:
            off = call.off_loop = guard.waits_on_stores(rules)
            if off:
                await step(guard.check, call, rules)
            else:
                guard.check(call, rules)
            decided = await _async.decide(guard, call, telemetry)
            if decided is PROCEED:
                admission: tuple[PolicyEnforcer, Admission] | None = None
                enforcer = call.enforcer
                if enforcer is not None and not replaying_only(call.run):
                    off = off or enforcer.blocking
                    if off:
                        try:
                            admission = (
                                enforcer,
                                await step(_admission, guard, call, enforcer, withdraw=enforcer),
                            )
                        except asyncio.CancelledError:  # the admission was withdrawn: give back the holds
                            await step(guard.abandon, call)
                            raise
                    else:
                        admission = (enforcer, _admission(guard, call, enforcer))
                items = function(*call.args, **call.kwargs)
                sent: Any = None
                thrown: BaseException | None = None
                try:
                    while True:
                        token = active.set(call.frame)
                        try:
                            item = await (items.asend(sent) if thrown is None else items.athrow(thrown))
                        except StopAsyncIteration:
                            break
                        finally:
                            active.reset(token)
                        thrown = None
                        try:
                            sent = yield item
                        except GeneratorExit:
                            raise
                        except BaseException as exc:
                            thrown, sent = exc, None
                except BaseException as exc:
                    if off:
                        await step(_failed, admission, exc, guard, call)
                    else:
                        _failed(admission, exc, guard, call)
                    raise
                finally:
                    token = active.set(call.frame)
                    try:
                        await items.aclose()
                    finally:
                        active.reset(token)
                if off:
                    await step(_finished, admission, guard, call, None)
                else:
                    _finished(admission, guard, call, None)
        except BaseException as exc:
            if telemetry is not None:
                telemetry.closed(guard, call, opened, call_status(exc), NO_RESULT, exc)
            raise
        if decided is not PROCEED:
            if telemetry is not None:
                telemetry.closed(guard, call, opened, "denied", NO_RESULT, None)
            yield decided
            return
        if telemetry is not None:
            telemetry.closed(guard, call, opened, _ended(call), None, None)

    return wrapper


def _ended(call: Call) -> str:
    """How a generator call that ran out ended: denied when a rule on its output denied it."""
    after = call.after
    return "denied" if after is not None and after.action is Action.DENY else "succeeded"


def _started(guard: Guard, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Call, RuleSet | None]:
    """Start the call (never recorded), and the rules to check it with; a replay refuses it unless it
    runs calls live."""
    parent = active.get()
    if parent is not None and parent.run.replay is not None:
        parent.run.replay.unrecorded(guard.tool, guard.bind(args, kwargs))
    call = guard.start(args, kwargs, parent, watch=False)
    return call, guard.source.current() if guard.source is not None else None


def _admit(guard: Guard, call: Call) -> tuple[PolicyEnforcer, Admission] | None:
    """The generator's check by its enforcer, before its first item; what to settle after its last."""
    enforcer = call.enforcer
    if enforcer is None or replaying_only(call.run):
        return None
    return enforcer, _admission(guard, call, enforcer)


def _admission(guard: Guard, call: Call, enforcer: PolicyEnforcer) -> Admission:
    """``enforcer``'s admission of the call; a refusal or failure gives back what the check held."""
    try:
        admission = enforcer.admit(guard.agent, guard.task(call))
    except PolicyViolationError as exc:
        call.policy_error = exc
        guard.abandon(call)
        raise
    try:
        guard.admitted(call, admission)
    except BaseException as exc:
        enforcer.settle(admission, Outcome(status_of(exc), 0.0, exc))
        guard.abandon(call)
        raise
    return admission


def _failed(
    admission: tuple[PolicyEnforcer, Admission] | None, error: BaseException, guard: Guard, call: Call
) -> None:
    """Settle a generator that raised (or was closed) and give back what its check held."""
    _settle(admission, error, guard, call, None)
    guard.abandon(call)


def _finished(
    admission: tuple[PolicyEnforcer, Admission] | None, guard: Guard, call: Call, returned: Any
) -> None:
    """Settle a generator that ran out, and account its call."""
    _settle(admission, None, guard, call, returned)
    guard.finish(call, returned)


def _settle(
    admission: tuple[PolicyEnforcer, Admission] | None,
    error: BaseException | None,
    guard: Guard,
    call: Call,
    returned: Any,
) -> None:
    if admission is None:
        return
    enforcer, admitted = admission
    if error is not None:
        enforcer.settle(admitted, Outcome(status_of(error), call.frame.reported or 0.0, error))
    else:
        enforcer.settle(admitted, Outcome(Status.SUCCESS, guard.actual_cost(call, returned)))
