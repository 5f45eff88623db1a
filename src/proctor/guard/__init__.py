"""``@runlog``: the decorator that checks, limits, records and replays the calls of agent functions.

The decorator only gathers its options and picks a driver for the kind of
function. ``_flow.Guard`` is the call flow (it decides, it never waits);
``_sync``, ``_async`` and ``_generators`` drive it, and are the only code that
blocks, awaits or iterates; ``_recorder`` tells the run log, with a null
recorder for calls outside recorded runs; ``_ledgers`` keeps ``cost_today``
and a policy file's limits on the store; ``_channels`` is where approvals go.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from proctor._numbers import is_amount
from proctor.approvals.base import ApprovalChannel
from proctor.errors import ConfigurationError
from proctor.guard._async import wrap_async
from proctor.guard._channels import set_approval_channel
from proctor.guard._flow import Guard
from proctor.guard._generators import wrap_async_generator, wrap_generator
from proctor.guard._ledgers import note_rules
from proctor.guard._sync import wrap_sync
from proctor.pii.detector import PIIDetector
from proctor.policy.enforcer import PolicyEnforcer
from proctor.resource import SharedResource
from proctor.rules.source import PolicySource, PolicySpec
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler

__all__ = ["runlog", "set_approval_channel"]

F = TypeVar("F", bound=Callable[..., Any])


def runlog(
    func: F | None = None,
    /,
    *,
    service: str,
    policies: PolicySpec | PolicyEnforcer | None = None,
    agent: str | None = None,
    name: str | None = None,
    cost: float | Callable[..., float] | None = None,
    labels: Mapping[str, Any] | None = None,
    on_deny: str = "raise",
    approvals: ApprovalChannel | None = None,
    scheduler: LOCOScheduler | AsyncLOCOScheduler | None = None,
    resource: SharedResource | None = None,
    pii: PIIDetector | None = None,
    record: bool = True,
) -> Any:
    """Decorate a function so that its calls are checked against ``policies``.

    Parameters:
        service: the service the function belongs to (the ``service`` fact).
        policies: a policy file path, a list of paths, a parsed mapping or a
            ``RuleSet`` (files are reloaded when they change); or a
            ``PolicyEnforcer`` of code policies, checked with a ``Task`` of the
            call's estimated cost and labels.
        agent: the acting agent (the ``agent`` fact); the service when not given.
        name: the ``tool`` fact; the function's qualified name when not given.
        cost: the estimated cost of a call: a number, or a function called
            with the call's own arguments (the ``cost`` fact). The actual cost is what the
            call reports with ``current_run().add_cost(x)``, or a ``usage.cost``
            on its result, else the estimate.
        labels: data labels of the calls (the ``labels`` fact).
        on_deny: ``"raise"`` a ``RuleViolationError``, or ``"return"`` the
            rule's ``returns`` value (a refusal message when it has none), so
            an LLM agent can read the refusal. A rule's own ``on_deny: return``
            also returns.
        approvals: where ``require_approval`` asks; see ``set_approval_channel``
            (by default the durable approval queue).
        scheduler: take a fair slot of this scheduler for each call, after the
            rules (never while waiting for a person) and around the function;
            its enforcer's policies check the call too. A ``LOCOScheduler`` for
            plain functions, an ``AsyncLOCOScheduler`` for coroutine functions.
        resource: instead of ``scheduler``, a ``SharedResource``; every function
            decorated with the same resource shares one scheduler (default alpha).
        pii: the detector behind ``contains_pii``, for instance one with a
            backend for ``person`` and ``location``; the built-in one,
            configured by the policy file's ``pii:`` section, by default.
        record: whether a call of this function with no run around it is a
            recorded run (in the run log of ``set_run_log``, by default
            ``$PROCTOR_DB``). Inside a recorded run every decorated call is
            recorded as one of its actions, whatever its own ``record``.
    """
    if on_deny not in ("raise", "return"):
        raise ConfigurationError(f"on_deny must be 'raise' or 'return', got {on_deny!r}")
    if cost is not None and not callable(cost) and not is_amount(cost):
        raise ConfigurationError(f"cost must be a number >= 0 or a function, got {cost!r}")
    enforcer = policies if isinstance(policies, PolicyEnforcer) else None
    scan = pii.contains if pii is not None else None
    source = (
        None if policies is None or isinstance(policies, PolicyEnforcer) else PolicySource(policies, pii=scan)
    )

    if scheduler is not None and resource is not None:
        raise ConfigurationError("pass scheduler= or resource=, not both")

    def decorate(function: F) -> F:
        nonlocal scheduler
        if resource is not None:
            scheduler = _scheduler_for(resource, inspect.iscoroutinefunction(function))
        _check_scheduler(function, scheduler)
        guard = Guard(
            function,
            service,
            source,
            agent,
            name,
            cost,
            labels,
            on_deny,
            approvals,
            enforcer,
            scheduler,
            record,
        )
        if source is not None:
            note_rules(source.current())  # before any call, so that the first calls' spend counts too
        if inspect.isasyncgenfunction(function):
            wrapper: Callable[..., Any] = wrap_async_generator(guard)
        elif inspect.iscoroutinefunction(function):
            wrapper = wrap_async(guard)
        elif inspect.isgeneratorfunction(function):
            wrapper = wrap_generator(guard)
        else:
            wrapper = wrap_sync(guard)
        functools.update_wrapper(wrapper, function)
        wrapper.__proctor_guard__ = guard  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate if func is None else decorate(func)


_resource_schedulers: weakref.WeakKeyDictionary[SharedResource, LOCOScheduler | AsyncLOCOScheduler] = (
    weakref.WeakKeyDictionary()
)


def _scheduler_for(resource: SharedResource, asynchronous: bool) -> LOCOScheduler | AsyncLOCOScheduler:
    """The one scheduler that grants ``resource``'s slots to decorated functions."""
    kind = AsyncLOCOScheduler if asynchronous else LOCOScheduler
    scheduler = _resource_schedulers.get(resource)
    if scheduler is None:
        scheduler = _resource_schedulers[resource] = kind([], resource)
    elif not isinstance(scheduler, kind):
        other = "plain" if asynchronous else "async"
        raise ConfigurationError(
            f"SharedResource {resource.name!r} already serves {other} functions; one scheduler grants "
            "a resource's slots, so decorate functions of one kind per resource"
        )
    return scheduler


def _check_scheduler(function: Callable[..., Any], scheduler: object) -> None:
    if scheduler is None:
        return
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise ConfigurationError(
            "scheduler= is not supported on generators: a slot would be held across yields"
        )
    if inspect.iscoroutinefunction(function):
        if not isinstance(scheduler, AsyncLOCOScheduler):
            raise ConfigurationError("an async function needs an AsyncLOCOScheduler as scheduler=")
    elif not isinstance(scheduler, LOCOScheduler):
        raise ConfigurationError("a plain function needs a LOCOScheduler (threads) as scheduler=")
