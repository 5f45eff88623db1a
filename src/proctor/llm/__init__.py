"""``instrument()``: an OpenAI or Anthropic SDK client whose LLM calls are governed and cost what they cost.

Chat completions, the Responses API and Anthropic messages (sync, async and
streamed) become governed calls, as ``@runlog`` makes them (see
``proctor.llm._governed``): rules see ``args.model``, ``args.max_tokens`` (or
``args.max_completion_tokens``, ``args.max_output_tokens``), ``args.messages``
(``contains_pii``), every other argument, and ``cost``, the estimate; a
``scheduler=`` gives each call a fair slot; budgets reserve the estimate and
settle what the response's usage cost at the model's prices (``prices.py``).
The SDKs are imported only when a client of theirs is instrumented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from proctor.errors import ConfigurationError
from proctor.guard._ledgers import note_rules
from proctor.llm._governed import Api, Governor, Settings
from proctor.llm.prices import PriceTable
from proctor.policy.base import Policy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.rules.source import PolicySource, PolicySpec
from proctor.scheduling import AsyncLOCOScheduler, LOCOScheduler

__all__ = ["instrument"]

C = TypeVar("C")

_MARK = "__proctor_instrumented__"


def instrument(
    client: C,
    *,
    agent: str | None = None,
    service: str | None = None,
    policies: PolicySpec | PolicyEnforcer | None = None,
    budget: Policy | None = None,
    scheduler: LOCOScheduler | AsyncLOCOScheduler | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    downgrade_to: str | Mapping[str, str] | None = None,
) -> C:
    """Govern ``client`` (``OpenAI``, ``AsyncOpenAI``, ``Anthropic`` or ``AsyncAnthropic``) and return it.

    Parameters:
        agent: the ``agent`` fact, and whose budget the calls spend; the service when not given.
        service: the ``service`` fact; ``"openai"`` or ``"anthropic"`` when not given.
        policies: a policy file (path, paths, mapping or ``RuleSet``: rules, and its ``budgets:``
            and ``rate_limits:``), or a ``PolicyEnforcer`` of code policies, as ``@runlog`` takes.
        budget: a ``BudgetPolicy`` (or any code policy) that reserves each call's estimate and
            settles its actual cost; checked after ``policies``' own code policies.
        scheduler: a ``LOCOScheduler`` (sync clients) or ``AsyncLOCOScheduler`` (async clients):
            each call holds one of its fair slots, a stream until it ends.
        prices: ``{model: {"input": 2.5, "output": 10.0, "cache_read": 1.25, "cache_write": 3.75}}``
            in dollars per million tokens, over genai-prices' table; a model neither knows is an
            error at its first call.
        downgrade_to: the model a ``budget=`` in ``"downgrade"`` mode switches a call to (one name,
            or ``{model: cheaper}``). A policy file's downgrade budget says it with
            ``set: {args.model: ...}`` instead.

    Governed: ``chat.completions.create`` and ``responses.create`` (OpenAI), ``messages.create``
    and ``messages.stream`` (Anthropic), with or without ``stream=True``; ``with_options()``
    and ``copy()`` return governed clients. The helpers that would spend outside the governed
    path (``chat.completions.parse``/``stream``, ``responses.parse``/``stream``,
    ``messages.parse``) raise ``ConfigurationError`` instead of running ungoverned.
    """
    kind = _kind(client)
    if getattr(client, _MARK, False):
        raise ConfigurationError("this client is already instrumented; instrument() each client once")
    asynchronous = kind in ("AsyncOpenAI", "AsyncAnthropic")
    provider = "openai" if "OpenAI" in kind else "anthropic"
    if scheduler is not None:
        wanted = AsyncLOCOScheduler if asynchronous else LOCOScheduler
        if not isinstance(scheduler, wanted):
            raise ConfigurationError(
                f"an {kind} client needs a{'n' if asynchronous else ''} {wanted.__name__} as scheduler="
            )
    source = None
    enforcer = policies if isinstance(policies, PolicyEnforcer) else None
    if policies is not None and not isinstance(policies, PolicyEnforcer):
        source = PolicySource(policies)
        current = source.current()
        note_rules(current)  # before any call, as @runlog does, so that the first calls' spend counts too
        if budget is not None and (current.budgets or current.rate_limits):
            raise ConfigurationError(
                "the policy file has budgets or rate limits of its own: declare the budget there, "
                "or pass budget= with a policy file of rules only"
            )
    if budget is not None:
        if not isinstance(budget, Policy):
            raise ConfigurationError(f"budget= takes a BudgetPolicy (a proctor Policy), got {budget!r}")
        enforcer = enforcer._extended(budget) if enforcer is not None else PolicyEnforcer([budget])
    settings = Settings(
        service=service if service is not None else provider,
        agent=agent,
        source=source,
        enforcer=enforcer,
        scheduler=scheduler,
        prices=PriceTable(provider, prices),
        downgrade_to=_chooser(downgrade_to),
    )
    _govern(client, kind, settings, asynchronous)
    return client


def _kind(client: object) -> str:
    """Which SDK client ``client`` is; ``ConfigurationError`` for anything else."""
    module = type(client).__module__.split(".")[0]
    if module == "openai":
        import openai

        if isinstance(client, openai.AsyncOpenAI):
            return "AsyncOpenAI"
        if isinstance(client, openai.OpenAI):
            return "OpenAI"
    elif module == "anthropic":
        import anthropic

        if isinstance(client, anthropic.AsyncAnthropic):
            return "AsyncAnthropic"
        if isinstance(client, anthropic.Anthropic):
            return "Anthropic"
    raise ConfigurationError(
        f"instrument() takes an OpenAI, AsyncOpenAI, Anthropic or AsyncAnthropic client, got "
        f"{type(client).__module__}.{type(client).__qualname__}"
    )


def _chooser(downgrade_to: str | Mapping[str, str] | None) -> Callable[[str], str | None] | None:
    if downgrade_to is None:
        return None
    if isinstance(downgrade_to, str):
        cheaper = downgrade_to
        return lambda model: cheaper
    if isinstance(downgrade_to, Mapping):
        table = dict(downgrade_to)
        return table.get
    raise ConfigurationError(f"downgrade_to takes a model name or {{model: cheaper}}, got {downgrade_to!r}")


def _govern(client: Any, kind: str, settings: Settings, asynchronous: bool) -> None:
    """Replace the client's spending methods by governed ones (on its resource objects)."""
    if "OpenAI" in kind:
        from proctor.llm import _openai as sdk

        lost = sdk.lost_errors()
        completions = client.chat.completions
        _replace(completions, "create", sdk.CHAT, lost, settings, asynchronous)
        _refuse(completions, "chat.completions", ("parse", "stream"))
        responses = client.responses
        _replace(responses, "create", sdk.RESPONSES, lost, settings, asynchronous)
        _refuse(responses, "responses", ("parse", "stream"))
    else:
        from proctor.llm import _anthropic as anthropic_sdk

        messages = client.messages
        governor = _replace(
            messages, "create", anthropic_sdk.MESSAGES, anthropic_sdk.lost_errors(), settings, asynchronous
        )
        _refuse(messages, "messages", ("parse",))
        messages.stream = _message_stream(governor, asynchronous)
    copy = client.copy

    def governed_copy(*args: Any, **kwargs: Any) -> Any:
        other = copy(*args, **kwargs)
        _govern(other, kind, settings, asynchronous)
        return other

    client.copy = client.with_options = governed_copy
    setattr(client, _MARK, True)


def _replace(
    resource: Any,
    name: str,
    api: Api,
    lost: tuple[type[BaseException], ...],
    settings: Settings,
    asynchronous: bool,
) -> Governor:
    governor = Governor(dataclasses.replace(api, lost=lost), getattr(resource, name), settings, asynchronous)
    setattr(resource, name, governor.acall if asynchronous else governor.call)
    return governor


def _refuse(resource: Any, path: str, names: tuple[str, ...]) -> None:
    for name in names:

        def refused(*args: Any, _name: str = name, **kwargs: Any) -> Any:
            raise ConfigurationError(
                f"{path}.{_name}() is not governed by proctor.instrument(), so it is refused rather than "
                f"run outside your budgets; call {path}.create() (stream=True for a stream)"
            )

        setattr(resource, name, refused)


def _message_stream(governor: Governor, asynchronous: bool) -> Callable[..., Any]:
    """Anthropic's ``messages.stream()`` helper over the governed ``create(stream=True)``."""
    from anthropic.lib.streaming import AsyncMessageStreamManager, MessageStreamManager

    def stream(*, output_format: Any = None, **params: Any) -> Any:
        if output_format is not None and type(output_format).__name__ not in ("Omit", "NotGiven"):
            raise ConfigurationError(
                "messages.stream(output_format=...) is not governed by proctor.instrument(); pass "
                "output_config={'format': ...} and parse the text yourself"
            )
        from anthropic import omit

        if asynchronous:
            return AsyncMessageStreamManager(governor.acall(**params, stream=True), output_format=omit)
        return MessageStreamManager(lambda: governor.call(**params, stream=True), output_format=omit)

    return stream
