"""instrument(): the real openai and anthropic SDKs against a local server, governed, settled from usage."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import proctor
import proctor.runs
from proctor import (
    AsyncLOCOScheduler,
    BudgetExceededError,
    BudgetPolicy,
    ConfigurationError,
    LOCOScheduler,
    PolicyEnforcer,
    RuleViolationError,
    SharedResource,
    instrument,
)
from proctor.llm.usage import prompt_tokens
from tests.instrument.llm_server import LLMServer, Usage

PRICES = {
    "test-model": {"input": 1.0, "output": 2.0, "cache_read": 0.5, "cache_write": 1.25},
    "cheap-model": {"input": 0.1, "output": 0.2},
}
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX = 400
APIS = ["chat", "responses", "messages"]


def priced(usage: Usage, api: str, model: str = "test-model") -> float:
    """What the server's usage costs at PRICES, worked out by hand for each provider's usage fields."""
    rates = PRICES[model]
    cache_read = rates.get("cache_read", rates["input"])
    cache_write = rates.get("cache_write", rates["input"])
    if api == "messages":  # Anthropic reports the cache write; OpenAI has none
        plain = usage.prompt - usage.cached - usage.cache_write
        total = plain * rates["input"] + usage.cached * cache_read + usage.cache_write * cache_write
    else:
        total = (usage.prompt - usage.cached) * rates["input"] + usage.cached * cache_read
    return (total + usage.output * rates["output"]) / 1_000_000


def estimate(api: str, model: str = "test-model") -> float:
    """The reservation: the prompt's characters / 4 (+4 a message) and the maximum output, priced."""
    prompt = prompt_tokens("Say hello.") if api == "responses" else prompt_tokens(MESSAGES)
    return (prompt * PRICES[model]["input"] + MAX * PRICES[model]["output"]) / 1_000_000


_opened: list[Any] = []


@pytest.fixture(autouse=True)
def _clients_closed() -> Iterator[None]:
    """The sync clients a test made are closed with it, so that no connection of theirs warns later."""
    yield
    while _opened:
        _opened.pop().close()


def client(server: LLMServer, api: str, asynchronous: bool = False, **options: Any) -> Any:
    """An instrumented client of the local server (an async one is closed by its test's coroutine)."""
    options.setdefault("prices", PRICES)
    if api == "messages":
        kind: Any = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        sdk = kind(api_key="test", base_url=server.anthropic_url, max_retries=0)
    else:
        kind = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        sdk = kind(api_key="test", base_url=server.openai_url, max_retries=0)
    if not asynchronous:
        _opened.append(sdk)
    return instrument(sdk, **options)


def call(sdk: Any, api: str, model: str = "test-model", **extra: Any) -> Any:
    """The API's create call (a coroutine for async clients)."""
    if api == "chat":
        return sdk.chat.completions.create(model=model, messages=MESSAGES, max_tokens=MAX, **extra)
    if api == "responses":
        return sdk.responses.create(model=model, input="Say hello.", max_output_tokens=MAX, **extra)
    return sdk.messages.create(model=model, messages=MESSAGES, max_tokens=MAX, **extra)


def agent() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("api", APIS)
def test_a_call_settles_what_its_usage_costs(llm_server: LLMServer, api: str) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, api, agent=who, budget=budget)
    response = call(sdk, api)
    assert response.usage is not None
    assert budget.spent(who) == pytest.approx(priced(llm_server.usage, api), abs=1e-9)
    assert budget.reserved(who) == 0


@pytest.mark.parametrize("api", APIS)
def test_a_stream_settles_what_its_usage_costs(llm_server: LLMServer, api: str) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, api, agent=who, budget=budget)
    with call(sdk, api, stream=True) as stream:
        events = list(stream)
    assert events
    assert type(stream).__name__ == "Stream"  # the SDK's own stream object
    assert budget.spent(who) == pytest.approx(priced(llm_server.usage, api), abs=1e-9)
    assert budget.reserved(who) == 0


@pytest.mark.parametrize("api", APIS)
def test_async_calls_and_streams_settle_what_their_usage_costs(llm_server: LLMServer, api: str) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()

    async def main() -> None:
        sdk = client(llm_server, api, asynchronous=True, agent=who, budget=budget)
        await call(sdk, api)
        stream = await call(sdk, api, stream=True)
        async with stream:
            events = [event async for event in stream]
        assert events
        await sdk.close()

    asyncio.run(main())
    assert budget.spent(who) == pytest.approx(2 * priced(llm_server.usage, api), abs=1e-9)
    assert budget.reserved(who) == 0


def test_anthropic_stream_helper_is_governed(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "messages", agent=who, budget=budget)
    with sdk.messages.stream(model="test-model", messages=MESSAGES, max_tokens=MAX) as stream:
        assert "".join(stream.text_stream) == "Hello."
    assert budget.spent(who) == pytest.approx(priced(llm_server.usage, "messages"), abs=1e-9)


def test_a_chat_stream_asks_for_usage_and_hands_its_chunk_only_to_who_asked(llm_server: LLMServer) -> None:
    sdk = client(llm_server, "chat")
    plain = list(call(sdk, "chat", stream=True))
    assert llm_server.requests[-1][1]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in plain)  # no usage-only chunk: as without proctor
    assert [chunk.choices[0].delta.content for chunk in plain] == ["", "Hel", "lo.", None]

    asked = list(call(sdk, "chat", stream=True, stream_options={"include_usage": True}))
    assert not asked[-1].choices
    assert asked[-1].usage.prompt_tokens == llm_server.usage.prompt


@pytest.mark.parametrize("api", APIS)
def test_a_stream_cut_before_its_usage_settles_the_reservation(llm_server: LLMServer, api: str) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, api, agent=who, budget=budget)
    llm_server.mode = "cut"
    error = anthropic.APIConnectionError if api == "messages" else openai.APIConnectionError
    with pytest.raises(error):
        for _ in call(sdk, api, stream=True):
            pass
    assert budget.spent(who) == pytest.approx(estimate(api), abs=1e-9)
    assert budget.reserved(who) == 0


def test_a_stream_closed_or_dropped_early_settles_the_reservation(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "chat", agent=who, budget=budget)
    with call(sdk, "chat", stream=True) as stream:
        next(iter(stream))
    assert budget.spent(who) == pytest.approx(estimate("chat"), abs=1e-9)

    stream = call(sdk, "chat", stream=True)  # never read, never closed
    assert budget.reserved(who) == pytest.approx(estimate("chat"), abs=1e-9)
    response = stream.response
    del stream
    gc.collect()
    assert budget.spent(who) == pytest.approx(2 * estimate("chat"), abs=1e-9)
    assert budget.reserved(who) == 0
    response.close()  # the connection the dropped stream left open


def test_an_error_answer_costs_nothing(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "chat", agent=who, budget=budget)
    llm_server.mode = "error"
    with pytest.raises(openai.BadRequestError):
        call(sdk, "chat")
    with pytest.raises(openai.BadRequestError):
        call(sdk, "chat", stream=True)
    assert budget.spent(who) == 0
    assert budget.reserved(who) == 0


@pytest.mark.parametrize("api", APIS)
def test_a_denied_call_never_reaches_the_server(llm_server: LLMServer, api: str) -> None:
    rules = {
        "policies": [
            {"id": "no-big", "when": {"args.model": "big-model"}, "action": "deny"},
            {"id": "no-pii", "when": {"args.messages": {"contains_pii": True}}, "action": "deny"},
            {"id": "dear", "when": {"cost": {"gt": 0.5}}, "action": "deny"},
        ]
    }
    dear = {"big-model": {"input": 1, "output": 1}, "dear-model": {"input": 1000, "output": 2000}}
    sdk = client(llm_server, api, policies=rules, prices={**PRICES, **dear})
    with pytest.raises(RuleViolationError, match="no-big"):
        call(sdk, api, model="big-model")
    with pytest.raises(RuleViolationError, match="no-big"):
        call(sdk, api, model="big-model", stream=True)
    with pytest.raises(RuleViolationError, match="dear"):
        call(sdk, api, model="dear-model")  # its estimate, over 0.5
    if api != "responses":
        leaky = [{"role": "user", "content": "Mail jane.doe@example.com my card 4111 1111 1111 1111"}]
        with pytest.raises(RuleViolationError, match="no-pii"):
            (sdk.messages if api == "messages" else sdk.chat.completions).create(
                model="test-model", messages=leaky, max_tokens=MAX
            )
    assert llm_server.requests == []
    call(sdk, api)
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize("api", APIS)
def test_an_unknown_model_is_an_error_naming_it_at_the_first_call(llm_server: LLMServer, api: str) -> None:
    sdk = client(llm_server, api, budget=BudgetPolicy(default_limit=1.0))
    with pytest.raises(ConfigurationError, match="'no-such-model'"):
        call(sdk, api, model="no-such-model")
    with pytest.raises(ConfigurationError, match="'no-such-model'"):
        call(sdk, api, model="no-such-model", stream=True)
    assert llm_server.requests == []


def test_the_price_table_is_genai_prices_read_offline(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "chat", agent=who, budget=budget, prices={})
    call(sdk, "chat", model="gpt-4o")
    usage = llm_server.usage  # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens
    expected = ((usage.prompt - usage.cached) * 2.5 + usage.cached * 1.25 + usage.output * 10) / 1e6
    assert budget.spent(who) == pytest.approx(expected, abs=1e-9)


def test_a_downgrade_budget_switches_the_model_the_server_sees(llm_server: LLMServer) -> None:
    who = agent()
    budget = BudgetPolicy(default_limit=estimate("chat") * 1.5, on_exceeded="downgrade")
    sdk = client(llm_server, "chat", agent=who, budget=budget, downgrade_to="cheap-model")
    call(sdk, "chat")
    call(sdk, "chat")
    assert llm_server.models() == ["test-model", "cheap-model"]
    expected = priced(llm_server.usage, "chat") + priced(llm_server.usage, "chat", "cheap-model")
    assert budget.spent(who) == pytest.approx(expected, abs=1e-9)


def test_a_policy_file_downgrade_budget_switches_the_model(llm_server: LLMServer) -> None:
    rules = {
        "budgets": [
            {
                "id": f"llm-{uuid.uuid4().hex[:8]}",
                "per": "agent",
                "limit": estimate("messages") * 1.5,
                "mode": "downgrade",
                "set": {"args.model": "cheap-model"},
            }
        ]
    }
    sdk = client(llm_server, "messages", agent=agent(), policies=rules)
    call(sdk, "messages")
    with call(sdk, "messages", stream=True) as stream:
        list(stream)
    assert llm_server.models() == ["test-model", "cheap-model"]


def test_concurrent_async_calls_never_take_spend_past_the_budget(llm_server: LLMServer) -> None:
    who = agent()
    llm_server.usage = Usage(prompt=12, output=200, cached=0, cache_write=0, reasoning=0)  # within estimates
    limit = estimate("chat") * 5.5
    budget = BudgetPolicy(default_limit=limit)
    outcomes: list[Any] = []

    async def one(sdk: Any, index: int) -> None:
        if index % 2:
            async for _ in await call(sdk, "chat", stream=True):
                pass
        else:
            await call(sdk, "chat")

    async def main() -> None:
        sdk = client(llm_server, "chat", asynchronous=True, agent=who, budget=budget)
        outcomes.extend(await asyncio.gather(*(one(sdk, i) for i in range(24)), return_exceptions=True))
        await sdk.close()

    asyncio.run(main())
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert all(o is None or isinstance(o, BudgetExceededError) for o in outcomes)
    ran = len(outcomes) - len(refused)
    assert ran >= 5
    assert refused
    assert len(llm_server.requests) == ran
    assert budget.spent(who) == pytest.approx(ran * priced(llm_server.usage, "chat"), abs=1e-9)
    assert budget.spent(who) <= limit


def test_a_scheduler_slot_is_held_until_a_stream_ends(llm_server: LLMServer) -> None:
    resource = SharedResource(f"llm-{uuid.uuid4().hex[:8]}", capacity=1)
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    scheduler = LOCOScheduler([], resource, enforcer=PolicyEnforcer([budget]))
    sdk = client(llm_server, "messages", agent=who, scheduler=scheduler)
    call(sdk, "messages")
    assert resource.holder_count == 0
    stream = call(sdk, "messages", stream=True)
    assert resource.holder_count == 1
    list(stream)
    assert resource.holder_count == 0
    assert budget.spent(who) == pytest.approx(2 * priced(llm_server.usage, "messages"), abs=1e-9)


def test_an_async_client_needs_an_async_scheduler(llm_server: LLMServer) -> None:
    scheduler = LOCOScheduler([], SharedResource(f"llm-{uuid.uuid4().hex[:8]}", capacity=1))
    with pytest.raises(ConfigurationError, match="AsyncLOCOScheduler"):
        client(llm_server, "chat", asynchronous=True, scheduler=scheduler)

    async def main() -> None:
        resource = SharedResource(f"llm-{uuid.uuid4().hex[:8]}", capacity=1)
        sdk = client(llm_server, "chat", asynchronous=True, scheduler=AsyncLOCOScheduler([], resource))
        stream = await call(sdk, "chat", stream=True)
        assert resource.holder_count == 1
        await stream.close()
        assert resource.holder_count == 0
        await sdk.close()

    asyncio.run(main())


def test_calls_are_recorded_in_the_run_log(llm_server: LLMServer) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sdk = client(llm_server, "chat", service=service)
    call(sdk, "chat")
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    assert run.tool == "openai.chat.completions.create"
    assert run.status == "succeeded"
    assert run.cost == pytest.approx(priced(llm_server.usage, "chat"), abs=1e-9)


def test_copies_are_governed_and_ungoverned_helpers_refused(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "chat", agent=who, budget=budget)
    call(sdk.with_options(timeout=5.0), "chat")
    assert budget.spent(who) == pytest.approx(priced(llm_server.usage, "chat"), abs=1e-9)
    with pytest.raises(ConfigurationError, match=r"chat\.completions\.parse"):
        sdk.chat.completions.parse(model="test-model", messages=MESSAGES)
    with pytest.raises(ConfigurationError, match="already instrumented"):
        instrument(sdk)
    with pytest.raises(ConfigurationError, match="OpenAI, AsyncOpenAI, Anthropic or AsyncAnthropic"):
        instrument(object())
    assert llm_server.requests == [llm_server.requests[0]]


def test_a_run_replays_its_llm_calls_from_the_log(llm_server: LLMServer) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sdk = client(llm_server, "chat", service=service)

    @proctor.runlog(service=service)
    def answer(question: str) -> str:
        response = sdk.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": question}], max_tokens=MAX
        )
        return str(response.choices[0].message.content)

    assert answer("hello") == "Hello."
    proctor.flush()
    log = proctor.runs.run_log()
    assert log is not None
    [run] = log.runs(service=service, limit=5)
    [action] = log.actions(run.run_id)
    assert action.tool == "openai.chat.completions.create"
    assert action.actual_cost == pytest.approx(priced(llm_server.usage, "chat"), abs=1e-9)

    same = proctor.replay(run.run_id, function=answer)
    assert same.identical
    assert len(llm_server.requests) == 1  # answered from the log
    stricter = {"policies": [{"id": "no-test-model", "when": {"args.model": "test-model"}, "action": "deny"}]}
    changed = proctor.replay(run.run_id, policies=stricter, function=answer)
    assert changed.status_after == "denied"


def test_raw_responses_settle_their_usage_and_raw_streams_are_refused(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    sdk = client(llm_server, "chat", agent=who, budget=budget)
    raw = sdk.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES, max_tokens=MAX)
    assert raw.headers["content-type"] == "application/json"
    assert raw.parse().usage.prompt_tokens == llm_server.usage.prompt
    assert budget.spent(who) == pytest.approx(priced(llm_server.usage, "chat"), abs=1e-9)
    with pytest.raises(ConfigurationError, match="with_raw_response"):
        sdk.chat.completions.with_raw_response.create(
            model="test-model", messages=MESSAGES, max_tokens=MAX, stream=True
        )
    assert len(llm_server.requests) == 1


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_async_stream_left_open_when_its_loop_ends_settles_the_reservation(llm_server: LLMServer) -> None:
    budget, who = BudgetPolicy(default_limit=1.0), agent()
    kept: list[Any] = []

    async def main() -> None:
        sdk = client(llm_server, "messages", asynchronous=True, agent=who, budget=budget)
        stream = await call(sdk, "messages", stream=True)
        await stream.__anext__()
        kept.append((sdk, stream))  # neither read to its end nor closed

    asyncio.run(main())
    assert budget.spent(who) == pytest.approx(estimate("messages"), abs=1e-9)
    assert budget.reserved(who) == 0
    kept.clear()
    gc.collect()  # its connection, left open with its loop gone, warns here rather than in a later test
