"""The driver of plain functions: the call flow, with the waits done by blocking this thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from proctor.decision import Action
from proctor.errors import PolicyViolationError
from proctor.guard._call import LIVE, PROCEED, Call, Refusal, status_of
from proctor.guard._flow import Guard, replaying_only
from proctor.outcome import Outcome, Status
from proctor.outcome import status_of as outcome_status_of
from proctor.runs.log import NO_RESULT
from proctor.runtime.context import active
from proctor.scheduling import LOCOScheduler
from proctor.telemetry import _hook
from proctor.telemetry._hook import CallTelemetry

__all__ = ["decide", "wrap_sync"]


def wrap_sync(guard: Guard) -> Callable[..., Any]:
    """The wrapper of a plain function."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = guard.start(args, kwargs, active.get())
        recorder = call.recorder
        recorder.opened(guard, call)
        telemetry = _hook.active  # None unless telemetry is on: the only cost it has otherwise
        opened = telemetry.opened(guard, call) if telemetry is not None else None
        began: float | None = None  # when the function was called (or answered from a replay)
        duration: float | None = None
        result: Any = NO_RESULT
        try:
            guard.check(call, guard.rules_for(call.run))
            decided = decide(guard, call, telemetry)
            if decided is not PROCEED:
                recorder.closed(guard, call, "denied", None, NO_RESULT, decided, None)
                if telemetry is not None:
                    telemetry.closed(guard, call, opened, "denied", NO_RESULT, None)
                return decided
            token = active.set(call.frame)
            try:
                began = time.perf_counter()
                result = _invoke(guard, call)
                duration = time.perf_counter() - began
            finally:
                active.reset(token)
            returned = guard.finish(call, result)
        except BaseException as exc:
            if began is not None and duration is None:  # the function (or its slot or policies) raised
                duration = time.perf_counter() - began
            status = status_of(exc)
            try:
                recorder.closed(guard, call, status, duration, result, NO_RESULT, exc)
            finally:
                if telemetry is not None:
                    telemetry.closed(guard, call, opened, status, result, exc)
            raise
        after = call.after
        status = "denied" if after is not None and after.action is Action.DENY else "succeeded"
        recorder.closed(guard, call, status, duration, result, returned, None)
        if telemetry is not None:
            telemetry.closed(guard, call, opened, status, result, None)
        return returned

    return wrapper


def decide(guard: Guard, call: Call, telemetry: CallTelemetry | None = None) -> Any:
    """Refuse a denied call; for one that needs approval, ask and wait. ``PROCEED`` when it runs."""
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
                decision = channel.request(request)
            except BaseException:  # Ctrl-C, SystemExit, a failure: nobody may approve a call that stopped
                channel.withdraw(request)
                raise
            finally:
                if telemetry is not None:
                    telemetry.approval_ended()
        outcome = guard.approved(call, decision)
        if isinstance(outcome, Refusal):
            return guard.refusal(call.verdict, outcome.detail)
    return PROCEED


def _invoke(guard: Guard, call: Call) -> Any:
    """The call's result: a replay's recorded answer, or the function's, inside a scheduler slot (if
    any) and between its enforcer's admit and settle (if any)."""
    if call.run.replay is not None:
        answer = call.recorder.replayed(guard, call)
        if answer is not LIVE:
            return answer
    scheduler = guard.scheduler
    if (scheduler is None and call.enforcer is None) or replaying_only(call.run):
        return guard.function(*call.args, **call.kwargs)
    if isinstance(scheduler, LOCOScheduler):
        granted = False
        telemetry = _hook.active
        asked = time.perf_counter() if telemetry is not None else 0.0
        try:
            with scheduler.acquire(guard.agent, guard.task(call)) as grant:
                granted = True
                if telemetry is not None:
                    telemetry.slot_waited(guard, time.perf_counter() - asked)
                result = _checked(guard, call)
                grant.cost = guard.actual_cost(call, result)
        except PolicyViolationError as exc:
            if not granted:  # the scheduler's policies refused the call itself
                call.policy_error = exc
            raise
        return result
    return _checked(guard, call)


def _checked(guard: Guard, call: Call) -> Any:
    enforcer = call.enforcer
    if enforcer is None:
        return guard.function(*call.args, **call.kwargs)
    try:
        admission = enforcer.admit(guard.agent, guard.task(call))
    except PolicyViolationError as exc:
        call.policy_error = exc
        raise
    try:
        guard.admitted(call, admission)
        result = guard.function(*call.args, **call.kwargs)
        actual = guard.actual_cost(call, result)
    except BaseException as exc:
        enforcer.settle(admission, Outcome(outcome_status_of(exc), call.frame.reported or 0.0, exc))
        raise
    enforcer.settle(admission, Outcome(Status.SUCCESS, actual))
    return result
