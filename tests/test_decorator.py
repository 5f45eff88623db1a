"""@runlog: runs, tool calls, and every rule action, on sync, async and generator functions."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    ApprovalDecision,
    AutoChannel,
    ConfigurationError,
    PolicyConfigError,
    RuleViolationError,
    RunTerminated,
    current_run,
    runlog,
)


def rules(*policies: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"policies": list(policies), **top}


def test_deny_raises_with_the_rule_and_the_call_does_not_run() -> None:
    ran: list[int] = []

    @runlog(
        service="s",
        cost=2.0,
        policies=rules(
            {
                "id": "cost_control",
                "name": "Cost",
                "when": {"cost": {"gt": 1.0}},
                "action": "deny",
                "message": "too expensive",
            }
        ),
    )
    def expensive() -> None:
        ran.append(1)

    with pytest.raises(RuleViolationError) as info:
        expensive()
    assert ran == []
    error = info.value
    assert (error.rule_id, error.rule_name, error.detail, error.policy_name) == (
        "cost_control",
        "Cost",
        "too expensive",
        "cost_control",
    )
    assert error.agent_id == "s"


def test_on_deny_return_gives_the_refusal_to_the_agent() -> None:
    policy = rules(
        {
            "id": "no_delete",
            "when": {"args.sql": {"starts_with": "DELETE"}},
            "action": "deny",
            "message": "no deletes",
        },
        {
            "id": "no_drop",
            "when": {"args.sql": {"contains": "DROP"}},
            "action": "deny",
            "on_deny": "return",
            "returns": {"error": "refused"},
        },
    )

    @runlog(service="db", policies=policy, on_deny="return")
    def query(sql: str) -> str:
        return "rows"

    assert query("SELECT 1") == "rows"
    assert query("DELETE FROM t") == "Denied by policy no_delete: no deletes"

    @runlog(service="db", policies=policy)
    def strict_query(sql: str) -> str:
        return "rows"

    assert strict_query("DROP TABLE t") == {"error": "refused"}  # the rule's own on_deny
    with pytest.raises(RuleViolationError):
        strict_query("DELETE FROM t")


def test_nested_calls_are_tool_calls_of_one_run() -> None:
    seen: list[tuple[str, int]] = []

    @runlog(service="agent", name="search")
    def search(q: str) -> str:
        run = current_run()
        seen.append((run.run_id, run.tool_calls))
        return q.upper()

    @runlog(service="agent")
    def handle(user_input: str) -> list[str]:
        return [search(user_input), search("x")]

    assert handle("hi") == ["HI", "X"]
    assert seen[0][0] == seen[1][0]
    assert [count for _, count in seen] == [1, 2]
    with pytest.raises(LookupError, match="not inside a @runlog call"):
        current_run()


def test_terminate_stops_the_run_and_refuses_every_later_call() -> None:
    calls: list[str] = []
    policy = rules(
        {"id": "loop", "when": {"tool_calls_in_run": {"gt": 2}}, "action": "terminate", "message": "loop"}
    )

    @runlog(service="a", policies=policy, name="step")
    def step(i: int) -> None:
        calls.append(f"step {i}")

    @runlog(service="a", policies=policy)
    def agent() -> None:
        for i in range(10):
            try:
                step(i)
            except RunTerminated:
                calls.append("terminated")
        step(99)

    with pytest.raises(RunTerminated, match="terminated by rule 'loop': loop"):
        agent()
    assert calls == ["step 0", "step 1", "step 2", *["terminated"] * 7]


def test_modify_patches_arguments_without_touching_the_callers() -> None:
    policy = rules(
        {"id": "cap", "when": {"tool": "search"}, "action": "modify", "clamp": {"args.limit": {"max": 100}}},
        {
            "id": "safe",
            "when": {"tool": "search"},
            "action": "modify",
            "set": {"args.options.safe": True},
            "redact": ["args.token"],
        },
    )
    received: list[Any] = []

    @runlog(service="s", name="search", policies=policy)
    def search(query: str, limit: int = 10, options: dict[str, Any] | None = None, token: str = "") -> None:
        received.append((query, limit, options, token))

    options = {"lang": "en"}
    search("q", 5000, options, token="secret")
    assert received == [("q", 100, {"lang": "en", "safe": True}, "[REDACTED]")]
    assert options == {"lang": "en"}  # the caller's dict is unchanged
    search("q")
    assert received[-1] == ("q", 10, {"safe": True}, "")


def test_log_allows_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    @runlog(
        service="s",
        policies=rules({"id": "watch", "when": {"args.n": {"gt": 5}}, "action": "log", "message": "big n"}),
    )
    def work(n: int) -> int:
        return n

    with caplog.at_level(logging.WARNING, logger="proctor.rules"):
        assert work(10) == 10
    assert "rule 'watch' matched" in caplog.text
    assert "big n" in caplog.text


def test_require_approval_waits_for_a_decision() -> None:
    policy = rules(
        {
            "id": "pay",
            "when": {"args.amount": {"gt": 100}},
            "action": "require_approval",
            "approvers": ["finance"],
            "timeout": 5,
        }
    )
    channel = AutoChannel([True, ApprovalDecision(False, "bob", "not this month"), None])

    @runlog(service="billing", policies=policy, approvals=channel)
    def pay(amount: float) -> str:
        return f"paid {amount:g}"

    assert pay(50) == "paid 50"
    assert pay(500) == "paid 500"
    with pytest.raises(RuleViolationError, match="approval refused by bob: not this month"):
        pay(600)
    with pytest.raises(RuleViolationError, match="approval timed out"):
        pay(700)
    request = channel.requests[0]
    assert (request.rule_id, request.approvers, request.timeout, request.tool) == (
        "pay",
        ("finance",),
        5.0,
        request.tool,
    )
    assert request.args == {"amount": 500}


def test_approval_timeout_can_allow() -> None:
    policy = rules({"id": "p", "action": "require_approval", "on_timeout": "allow"})

    @runlog(service="s", policies=policy, approvals=AutoChannel(default=None))
    def act() -> str:
        return "done"

    assert act() == "done"


def test_async_functions_and_tool_calls_across_await() -> None:
    policy = rules({"id": "no_b", "when": {"args.x": "b"}, "action": "deny"})

    @runlog(service="s", name="tool", policies=policy)
    async def tool(x: str) -> str:
        await asyncio.sleep(0)
        return current_run().run_id

    @runlog(service="s", policies=policy)
    async def agent() -> tuple[str, str]:
        first = await tool("a")
        second = await asyncio.create_task(tool("c"))
        with pytest.raises(RuleViolationError):
            await tool("b")
        return first, second

    first, second = asyncio.run(agent())
    assert first == second


def test_generators_are_checked_before_the_first_item() -> None:
    policy = rules({"id": "no", "when": {"args.n": {"gt": 3}}, "action": "deny"})

    @runlog(service="s", policies=policy)
    def count(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    assert list(count(3)) == [0, 1, 2]
    gen = count(5)  # nothing checked until iteration starts
    with pytest.raises(RuleViolationError):
        next(gen)

    @runlog(service="s", policies=policy)
    async def acount(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i

    async def collect(n: int) -> list[int]:
        return [i async for i in acount(n)]

    assert asyncio.run(collect(2)) == [0, 1]
    with pytest.raises(RuleViolationError):
        asyncio.run(collect(9))


def test_methods_and_threads_with_copied_context() -> None:
    class Agent:
        @runlog(service="s", name="lookup")
        def lookup(self, key: str) -> str:
            return current_run().run_id

    @runlog(service="s")
    def agent() -> list[str]:
        results: list[str] = []
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(lambda: results.append(Agent().lookup("k")),)
        )
        thread.start()
        thread.join()
        results.append(current_run().run_id)
        return results

    inner, outer = agent()
    assert inner == outer


def test_cost_facts_add_up_in_the_run() -> None:
    policy = rules(
        {"id": "run_budget", "when": {"cost_run": {"gte": 2.5}}, "action": "deny", "message": "run budget"}
    )

    @runlog(service="cost-test", name="llm", policies=policy, cost=lambda prompt: len(prompt) / 10)
    def llm(prompt: str) -> dict[str, Any]:
        return {"usage": {"cost": 1.0}}  # actual cost reported on the result

    @runlog(service="cost-test", name="reporter", policies=policy)
    def reporter() -> None:
        current_run().add_cost(0.5)

    @runlog(service="cost-test", policies=policy)
    def agent() -> float:
        llm("x" * 50)  # estimate 5.0, actual 1.0
        reporter()
        llm("y")
        with pytest.raises(RuleViolationError, match="run budget"):
            llm("z")
        return current_run().cost

    assert agent() == 2.5


def test_same_call_in_run_detects_loops() -> None:
    policy = rules({"id": "loop", "when": {"same_call_in_run": {"gte": 2}}, "action": "deny"})

    @runlog(service="s", name="fetch", policies=policy)
    def fetch(url: str) -> str:
        return url

    @runlog(service="s")
    def agent() -> list[str]:
        out = []
        for url in ["a", "a", "b", "a"]:
            try:
                out.append(fetch(url))
            except RuleViolationError:
                out.append("loop")
        return out

    assert agent() == ["a", "a", "b", "loop"]


def test_output_rules_are_checked_after_the_call() -> None:
    policy = rules(
        {
            "id": "leak",
            "when": {"output.secret": {"exists": True}},
            "action": "deny",
            "message": "leaks a secret",
        }
    )

    @runlog(service="s", policies=policy)
    def read(key: str) -> dict[str, str]:
        return {"secret": "x"} if key == "s" else {"value": "y"}

    assert read("v") == {"value": "y"}
    with pytest.raises(RuleViolationError, match="leaks a secret"):
        read("s")


def test_a_broken_policy_file_fails_at_decoration(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("policies:\n- id: a\n  action: deny\n  when: {cost: {gtt: 1}}\n")
    with pytest.raises(PolicyConfigError, match=r"p\.yaml:4:17: unknown operator 'gtt'"):
        runlog(service="s", policies=str(path))(lambda: None)


def test_bad_decorator_arguments() -> None:
    with pytest.raises(ValueError, match="on_deny must be 'raise' or 'return'"):
        runlog(service="s", on_deny="ignore")
    with pytest.raises(ValueError, match="cost must be a number >= 0 or a function"):
        runlog(service="s", cost=-1)


def test_scheduler_slots_and_code_policies_compose_with_rules() -> None:
    from proctor import BudgetExceededError, BudgetPolicy, LOCOScheduler, SharedResource

    budget = BudgetPolicy(default_limit=1.0)
    scheduler = LOCOScheduler([], SharedResource("llm_api", capacity=1), budget=budget)
    policy = rules({"id": "no_secrets", "when": {"args.prompt": {"contains": "password"}}, "action": "deny"})
    holders: list[int] = []

    @runlog(service="bot", name="llm", policies=policy, scheduler=scheduler, cost=0.4)
    def llm(prompt: str) -> str:
        holders.append(scheduler.resource.holder_count)
        current_run().add_cost(0.3)  # settles the budget instead of the 0.4 estimate
        return "ok"

    assert llm("hi") == "ok"
    assert holders == [1]
    assert (budget.spent("bot"), budget.reserved("bot")) == (0.3, 0.0)
    with pytest.raises(RuleViolationError):
        llm("my password is")  # denied by the rule before any slot is taken
    assert scheduler.get_agent("bot").stats.granted == 1
    assert llm("again") == "ok"
    assert llm("and again") == "ok"  # 0.9 spent
    with pytest.raises(BudgetExceededError):
        llm("one more")  # 0.9 + 0.4 > 1.0
    assert scheduler.resource.holder_count == 0


def test_async_scheduler_and_an_enforcer_as_policies() -> None:
    from proctor import AsyncLOCOScheduler, PolicyEnforcer, PolicyViolationError, RatePolicy, SharedResource

    scheduler = AsyncLOCOScheduler([], SharedResource("api", capacity=2))

    @runlog(service="a", scheduler=scheduler)
    async def call() -> int:
        await asyncio.sleep(0)
        return scheduler.resource.holder_count

    async def many() -> list[int]:
        return await asyncio.gather(*(call() for _ in range(6)))

    assert max(asyncio.run(many())) <= 2

    @runlog(service="r", policies=PolicyEnforcer([RatePolicy(limits={"r": 2.0})]))
    def limited() -> str:
        return "ok"

    assert [limited(), limited()] == ["ok", "ok"]
    with pytest.raises(PolicyViolationError, match="rate limit"):
        limited()


def test_a_scheduler_must_fit_the_function() -> None:
    from proctor import AsyncLOCOScheduler, ConfigurationError, LOCOScheduler, SharedResource

    async_scheduler = AsyncLOCOScheduler([], SharedResource("a", 1))
    thread_scheduler = LOCOScheduler([], SharedResource("b", 1))
    with pytest.raises(ConfigurationError, match="a plain function needs a LOCOScheduler"):
        runlog(service="s", scheduler=async_scheduler)(lambda: None)

    async def coroutine() -> None:
        pass

    with pytest.raises(ConfigurationError, match="an async function needs an AsyncLOCOScheduler"):
        runlog(service="s", scheduler=thread_scheduler)(coroutine)

    def generator():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(ConfigurationError, match="not supported on generators"):
        runlog(service="s", scheduler=thread_scheduler)(generator)


def test_a_default_deny_file_refuses_what_no_rule_allows() -> None:
    policy = rules({"id": "reads", "when": {"tool": "read"}, "action": "log"}, defaults={"action": "deny"})

    @runlog(service="s", name="read", policies=policy)
    def read() -> str:
        return "data"

    @runlog(service="s", name="write", policies=policy)
    def write() -> str:
        return "written"

    assert read() == "data"
    with pytest.raises(RuleViolationError, match="default action is deny") as info:
        write()
    assert info.value.rule_id == "default"


def test_resource_makes_the_fitting_scheduler() -> None:
    from proctor import ConfigurationError, LOCOScheduler, SharedResource

    api = SharedResource("api", capacity=1)
    seen: list[int] = []

    @runlog(service="s", resource=api)
    def call() -> None:
        seen.append(api.holder_count)

    call()
    assert seen == [1]
    assert api.holder_count == 0
    with pytest.raises(ConfigurationError, match="not both"):
        runlog(service="s", resource=api, scheduler=LOCOScheduler([], SharedResource("x", 1)))


def test_time_facts_and_cost_today_follow_the_files_time_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    hour_in_tokyo = datetime.now(ZoneInfo("Asia/Tokyo")).hour
    policy = rules(
        {"id": "tokyo_hour", "when": {"time.hour": hour_in_tokyo, "tool": "t"}, "action": "deny"},
        {"id": "budget", "when": {"cost_today": {"gte": 5}}, "action": "deny", "message": "daily budget"},
        defaults={"timezone": "Asia/Tokyo"},
    )

    @runlog(service="tz-test", name="t", policies=policy)
    def t() -> None:
        pass

    @runlog(service="tz-test", name="spend", policies=policy, cost=2.5)
    def spend() -> None:
        pass

    # The hour could roll over between the two reads; then the rule rightly does not match.
    if datetime.now(ZoneInfo("Asia/Tokyo")).hour == hour_in_tokyo:
        with pytest.raises(RuleViolationError):
            t()
    spend()
    spend()
    with pytest.raises(RuleViolationError, match="daily budget"):
        spend()


def test_an_unknown_time_zone_is_a_load_error() -> None:
    with pytest.raises(PolicyConfigError, match="unknown time zone 'Mars/Olympus'"):
        runlog(service="s", policies={"defaults": {"timezone": "Mars/Olympus"}, "policies": []})


def test_a_detector_with_a_backend_adds_person_names(caplog: pytest.LogCaptureFixture) -> None:
    from collections.abc import Iterable

    from proctor.pii import PIIDetector, PIIKind, PIISpan

    class Names:
        """A stand-in for an NER backend: knows two first names."""

        kinds = frozenset({PIIKind.PERSON})

        def scan(self, text: str, kinds: frozenset[PIIKind]) -> Iterable[PIISpan]:
            for name in ("Alice", "Bob"):
                start = text.find(name)
                if start >= 0:
                    yield PIISpan(PIIKind.PERSON, start, start + len(name))

    policy = rules({"id": "names", "when": {"args.text": {"contains_pii": ["person"]}}, "action": "deny"})

    @runlog(service="s", policies=policy, pii=PIIDetector(backends=[Names()]))
    def post(text: str) -> str:
        return text

    assert post("hello") == "hello"
    with pytest.raises(RuleViolationError):
        post("hello Alice")

    @runlog(service="s", policies=policy)  # the built-in detector finds no names: it fails closed
    def post_plain(text: str) -> str:
        return text

    with caplog.at_level(logging.WARNING, logger="proctor.rules"), pytest.raises(RuleViolationError):
        post_plain("hello Alice")
    assert "contains_pii could not be evaluated, so it counts as containing PII" in caplog.text


def test_cost_functions_get_the_calls_own_arguments() -> None:
    @runlog(service="s", cost=lambda *texts: 0.5 * len(texts))
    def embed(*texts: str) -> int:
        return len(texts)

    @runlog(service="s")
    def agent() -> float:
        embed("a", "b")
        return current_run().cost

    assert agent() == 1.0


def test_output_rules_see_the_facts_they_read() -> None:
    policy = rules(
        {
            "id": "late_leak",
            "when": {"output": {"contains": "secret"}, "time.hour": {"gte": 0}},
            "action": "deny",
        }
    )

    @runlog(service="s", policies=policy)
    def read() -> list[str]:
        return ["secret"]

    with pytest.raises(RuleViolationError):
        read()


def test_functions_on_one_resource_share_its_scheduler() -> None:
    from proctor import ConfigurationError, SharedResource

    api = SharedResource("shared-api", capacity=1)

    @runlog(service="s", resource=api)
    def search() -> int:
        return api.holder_count

    @runlog(service="s", resource=api)
    def summarize() -> int:
        return api.holder_count

    assert (search(), summarize()) == (1, 1)
    assert search.__proctor_guard__.scheduler is summarize.__proctor_guard__.scheduler  # type: ignore[attr-defined]

    async def asynchronous() -> None:
        pass

    with pytest.raises(ConfigurationError, match="already serves plain functions"):
        runlog(service="s", resource=api)(asynchronous)


def test_code_policies_are_checked_inside_the_slot_too() -> None:
    from proctor import BudgetExceededError, BudgetPolicy, LOCOScheduler, PolicyEnforcer, SharedResource

    scheduler = LOCOScheduler([], SharedResource("x", 1))

    @runlog(
        service="s", cost=5.0, scheduler=scheduler, policies=PolicyEnforcer([BudgetPolicy(default_limit=1.0)])
    )
    def expensive() -> None:
        pytest.fail("over budget: must not run")

    with pytest.raises(BudgetExceededError):
        expensive()
    assert scheduler.resource.holder_count == 0


def test_decorated_generators_keep_send_throw_return_and_close() -> None:
    events: list[Any] = []

    @runlog(service="s")
    def echo():  # type: ignore[no-untyped-def]
        try:
            received = yield "ready"
            events.append(("sent", received))
            try:
                yield "waiting"
            except ValueError:
                yield "recovered"
            return "RET"
        finally:
            events.append(("cleanup inside the run", current_run() is not None))

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("hello") == "waiting"
    assert gen.throw(ValueError("x")) == "recovered"

    def delegate():  # type: ignore[no-untyped-def]
        return (yield from echo())

    outer = delegate()
    next(outer)
    outer.send(None)
    outer.throw(ValueError("y"))
    with pytest.raises(StopIteration) as stop:
        next(outer)
    assert stop.value.value == "RET"
    gen.close()  # an early close finishes the function inside its run
    assert events == [
        ("sent", "hello"),
        ("sent", None),
        ("cleanup inside the run", True),
        ("cleanup inside the run", True),
    ]


def test_decorated_async_generators_close_inside_the_run() -> None:
    events: list[Any] = []

    @runlog(service="s")
    async def stream():  # type: ignore[no-untyped-def]
        try:
            received = yield 1
            events.append(received)
            yield 2
        finally:
            events.append(current_run() is not None)

    async def main() -> None:
        items = stream()
        assert await items.__anext__() == 1
        assert await items.asend("x") == 2
        await items.aclose()

    asyncio.run(main())
    assert events == ["x", True]


def test_output_rules_can_return_a_refusal_and_may_not_modify_or_ask() -> None:
    policy = rules(
        {
            "id": "leak",
            "when": {"output": {"contains": "secret"}},
            "action": "deny",
            "on_deny": "return",
            "returns": "[withheld]",
        }
    )

    @runlog(service="s", policies=policy)
    def read() -> str:
        return "the secret"

    assert read() == "[withheld]"
    for action, extra in (("modify", {"set": {"args.x": 1}}), ("require_approval", {})):
        bad = rules({"id": "r", "when": {"output": {"exists": True}}, "action": action, **extra})
        with pytest.raises(
            PolicyConfigError, match=f"checked after the call: it can deny, log or terminate, not {action}"
        ):
            runlog(service="s", policies=bad)


def test_a_usage_passed_on_by_the_caller_is_charged_once_and_add_cost_zero_counts() -> None:
    @runlog(service="usage-once", name="llm")
    def llm() -> dict[str, Any]:
        return {"text": "hi", "usage": {"cost": 0.5}}

    @runlog(service="usage-once", name="cached", cost=3.0)
    def cached() -> str:
        current_run().add_cost(0.0)  # a cache hit: it cost nothing, not the estimate
        return "hit"

    @runlog(service="usage-once")
    def agent() -> float:
        llm()
        cached()
        return current_run().cost

    @runlog(service="usage-once")
    def passes_it_on() -> dict[str, Any]:
        return llm()

    assert agent() == 0.5

    @runlog(service="usage-once")
    def outer() -> float:
        passes_it_on()
        return current_run().cost

    assert outer() == 0.5


def test_patches_reach_into_lists_and_frozen_objects_without_touching_the_callers() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Settings:
        max_tokens: int

    policy = rules(
        {
            "id": "scrub",
            "when": {"tool": "chat"},
            "action": "modify",
            "redact": ["args.messages.0.content"],
            "clamp": {"args.settings.max_tokens": {"max": 100}},
        }
    )
    received: list[Any] = []

    @runlog(service="s", name="chat", policies=policy)
    def chat(messages: list[dict[str, str]], settings: Settings) -> None:
        received.append((messages, settings))

    messages = [{"role": "user", "content": "my password is hunter2"}, {"role": "user", "content": "hi"}]
    settings = Settings(max_tokens=5000)
    chat(messages, settings)
    assert received == [
        (
            [{"role": "user", "content": "[REDACTED]"}, {"role": "user", "content": "hi"}],
            Settings(max_tokens=100),
        )
    ]
    assert messages[0]["content"] == "my password is hunter2"
    assert settings.max_tokens == 5000


def test_a_cost_function_must_return_an_amount() -> None:
    @runlog(service="s", cost=lambda: -1.0)
    def f() -> None:
        pytest.fail("must not run")

    with pytest.raises(ValueError, match=r"returned -1\.0; it must be a number >= 0"):
        f()


@pytest.mark.parametrize("policies", [42, [42], b"policies.yaml", {"a", "b"}])
def test_policies_of_a_kind_it_does_not_take_say_what_it_takes(policies: object) -> None:
    with pytest.raises(ConfigurationError, match="policies= takes a policy file path, a list of paths"):
        runlog(service="s", policies=policies)  # type: ignore[arg-type]
