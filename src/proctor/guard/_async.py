"""The driver of coroutine functions: the call flow, with the waits awaited.

A store that can wait (a SQLite file another process holds) must never hold up
the event loop: for calls whose checks or settles reach such a store, those
steps run on proctor's store threads while the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from proctor._signals import leave_signals_to_main_thread
from proctor.decision import Action
from proctor.errors import PolicyViolationError
from proctor.guard._call import LIVE, PROCEED, Call, Refusal, status_of
from proctor.guard._flow import Guard, replaying_only
from proctor.outcome import Outcome, Status
from proctor.outcome import status_of as outcome_status_of
from proctor.policy.enforcer import PolicyEnforcer
from proctor.runs.log import NO_RESULT
from proctor.runtime.context import active
from proctor.scheduling import AsyncLOCOScheduler
from proctor.telemetry import _hook
from proctor.telemetry._hook import CallTelemetry

__all__ = ["decide", "off_loop", "wrap_async"]

T = TypeVar("T")

_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def wrap_async(guard: Guard) -> Callable[..., Any]:
    """The wrapper of a coroutine function."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = guard.start(args, kwargs, active.get())
        recorder = call.recorder
        recorder.opened(guard, call)
        rules = guard.rules_for(call.run)
        off = call.off_loop = guard.waits_on_stores(rules)
        telemetry = _hook.active  # None unless telemetry is on: the only cost it has otherwise
        opened = telemetry.opened(guard, call) if telemetry is not None else None
        began: float | None = None
        duration: float | None = None
        result: Any = NO_RESULT
        try:
            if off:
                await off_loop(guard.check, call, rules)
            else:
                guard.check(call, rules)
            decided = await decide(guard, call, telemetry)
            if decided is not PROCEED:
                recorder.closed(guard, call, "denied", None, NO_RESULT, decided, None)
                if telemetry is not None:
                    telemetry.closed(guard, call, opened, "denied", NO_RESULT, None)
                return decided
            token = active.set(call.frame)
            try:
                began = time.perf_counter()
                result = await _invoke(guard, call)
                duration = time.perf_counter() - began
            finally:
                active.reset(token)
            returned = await off_loop(guard.finish, call, result) if off else guard.finish(call, result)
        except BaseException as exc:
            if began is not None and duration is None:  # the function (or its slot or policies) raised
                duration = time.perf_counter() - began
            status = status_of(exc)
            closing = (guard, call, status, duration, result, NO_RESULT, exc)
            try:
                if off:  # it may settle what the call held
                    await off_loop(recorder.closed, *closing)
                else:
                    recorder.closed(*closing)
            finally:
                if telemetry is not None:  # here, in the call's context, where its span was made current
                    telemetry.closed(guard, call, opened, status, result, exc)
            raise
        after = call.after
        status = "denied" if after is not None and after.action is Action.DENY else "succeeded"
        recorder.closed(guard, call, status, duration, result, returned, None)
        if telemetry is not None:
            telemetry.closed(guard, call, opened, status, result, None)
        return returned

    return wrapper


async def decide(guard: Guard, call: Call, telemetry: CallTelemetry | None = None) -> Any:
    """Refuse a denied call; for one that needs approval, ask and await. ``PROCEED`` when it runs."""
    action = call.verdict.action
    if action is Action.DENY:
        return guard.refusal(call.verdict, call.verdict.message)
    if action is Action.REQUIRE_APPROVAL:
        replayed, decision = guard.replayed_approval(call)
        if not replayed:
            channel, request = guard.approval_request(call)
            if telemetry is not None:
                telemetry.approval_asked()
            try:
                # A person may take minutes: the channel waits as a coroutine (and withdraws when cancelled).
                decision = await channel.arequest(request)
            finally:
                if telemetry is not None:
                    telemetry.approval_ended()
        outcome = (
            await off_loop(guard.approved, call, decision)
            if call.off_loop
            else guard.approved(call, decision)
        )
        if isinstance(outcome, Refusal):
            return guard.refusal(call.verdict, outcome.detail)
    return PROCEED


async def _invoke(guard: Guard, call: Call) -> Any:
    if call.run.replay is not None:
        answer = call.recorder.replayed(guard, call)
        if answer is not LIVE:
            return answer
    scheduler = guard.scheduler
    if (scheduler is None and call.enforcer is None) or replaying_only(call.run):
        return await guard.function(*call.args, **call.kwargs)
    if isinstance(scheduler, AsyncLOCOScheduler):
        granted = False
        telemetry = _hook.active
        asked = time.perf_counter() if telemetry is not None else 0.0
        try:
            async with scheduler.acquire(guard.agent, guard.task(call)) as grant:
                granted = True
                if telemetry is not None:
                    telemetry.slot_waited(guard, time.perf_counter() - asked)
                result = await _checked(guard, call)
                grant.cost = guard.actual_cost(call, result)
        except PolicyViolationError as exc:
            if not granted:
                call.policy_error = exc
            raise
        return result
    return await _checked(guard, call)


async def _checked(guard: Guard, call: Call) -> Any:
    enforcer = call.enforcer
    if enforcer is None:
        return await guard.function(*call.args, **call.kwargs)
    off = enforcer.blocking
    try:
        if off:
            admission = await off_loop(enforcer.admit, guard.agent, guard.task(call), withdraw=enforcer)
        else:
            admission = enforcer.admit(guard.agent, guard.task(call))
    except PolicyViolationError as exc:
        call.policy_error = exc
        raise
    try:
        guard.admitted(call, admission)
        result = await guard.function(*call.args, **call.kwargs)
        outcome = Outcome(Status.SUCCESS, guard.actual_cost(call, result))
    except BaseException as exc:
        failed = Outcome(outcome_status_of(exc), call.frame.reported or 0.0, exc)
        if off:
            await off_loop(enforcer.settle, admission, failed)
        else:
            enforcer.settle(admission, failed)
        raise
    if off:
        try:
            await off_loop(enforcer.settle, admission, outcome)
        except asyncio.CancelledError:  # the call ran and was settled: its spend counts as well
            await off_loop(guard.account, call, result)
            raise
    else:
        enforcer.settle(admission, outcome)
    return result


def _store_threads() -> ThreadPoolExecutor:
    """The threads that make the store steps of async calls (created at the first such step)."""
    global _threads
    if _threads is None:
        with _threads_lock:
            if _threads is None:
                _threads = ThreadPoolExecutor(
                    4, thread_name_prefix="proctor-store", initializer=leave_signals_to_main_thread
                )
    return _threads


async def off_loop(function: Callable[..., T], *args: Any, withdraw: PolicyEnforcer | None = None) -> T:
    """``function(*args)`` on proctor's store threads, so that a store that waits (a busy SQLite
    file) never holds up the event loop.

    A cancelled caller does not cut the step short: the step ends on its thread, and only then
    does the cancellation go on, so that what the caller does next (give back what the call
    holds) sees the step done. With ``withdraw``, the admission the step made is withdrawn first.
    """
    future = asyncio.get_running_loop().run_in_executor(
        _store_threads(), contextvars.copy_context().run, functools.partial(function, *args)
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:  # cancelled again: the step still has to end first
                continue
        if withdraw is not None and not future.cancelled() and future.exception() is None:
            await off_loop(withdraw.withdraw, future.result())  # the call never ran
        raise
