"""Decorated calls recorded in a real run log: runs, actions, outcomes, costs, decisions, approvals."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    ApprovalDecision,
    ApprovalRequest,
    BudgetExceededError,
    BudgetPolicy,
    CallbackChannel,
    PolicyEnforcer,
    RuleViolationError,
    RunTerminated,
    current_run,
    now,
    rng,
    runlog,
    set_approval_channel,
    uuid4,
)
from proctor.runs import default
from proctor.runs.log import ActionRecord, RunLog, RunRecord, decode
from tests.runs.helpers import policy_file, recording_into

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[RunLog]:
    """New runs are recorded here, values as they are (no PII redaction)."""
    yield from recording_into(RunLog(tmp_path / "runs.db", pii=False))


@pytest.fixture
def redacting_log(tmp_path: Path) -> Iterator[RunLog]:
    """New runs are recorded here with the default PII redaction."""
    yield from recording_into(RunLog(tmp_path / "runs.db"))


def only_run(log: RunLog) -> RunRecord:
    assert log.flush(timeout=10)
    [run] = log.runs()
    return run


def actions_of(log: RunLog, run: RunRecord) -> list[ActionRecord]:
    return log.actions(run.run_id)


def test_a_run_and_its_actions_are_recorded(log: RunLog) -> None:
    @runlog(service="shop", agent="bot", name="search")
    def search(query: str, limit: int = 2) -> dict[str, Any]:
        return {"hits": [f"{query}-{index}" for index in range(limit)]}

    @runlog(service="shop", agent="bot", name="handle")
    def handle(question: str, *, depth: int = 1) -> str:
        first = search(question)
        second = search(question.upper(), limit=1)
        return f"{len(first['hits'])}+{len(second['hits'])}"

    before = time.time()
    assert handle("shoes") == "2+1"
    after = time.time()
    run = only_run(log)
    assert (run.service, run.agent, run.tool, run.status) == ("shop", "bot", "handle", "succeeded")
    assert run.function == f"{__name__}:test_a_run_and_its_actions_are_recorded.<locals>.handle"
    assert run.ended is not None
    assert before <= run.started <= run.ended <= after
    assert decode(run.input) == {"question": "shoes", "depth": 1}  # bound, defaults included
    assert decode(run.output) == "2+1"
    assert (run.error, run.labels, run.approval, run.effects, run.redacted) == (None, None, None, None, False)
    assert decode(run.decisions) == []
    assert (run.estimated_cost, run.actual_cost, run.cost) == (0.0, 0.0, 0.0)
    first, second = actions_of(log, run)
    assert [(a.run_id, a.seq, a.tool, a.service, a.agent, a.status) for a in (first, second)] == [
        (run.run_id, 1, "search", "shop", "bot", "succeeded"),
        (run.run_id, 2, "search", "shop", "bot", "succeeded"),
    ]
    assert decode(first.args) == {"query": "shoes", "limit": 2}
    assert decode(second.args) == {"query": "SHOES", "limit": 1}
    assert decode(first.result) == {"hits": ["shoes-0", "shoes-1"]}
    assert decode(second.result) == {"hits": ["SHOES-0"]}
    assert run.started <= first.started <= second.started <= run.ended
    assert first.duration is not None
    assert second.duration is not None
    assert 0 <= first.duration <= run.ended - run.started
    for action in (first, second):
        assert (action.requested_args, action.error, action.approval, action.labels) == (
            None,
            None,
            None,
            None,
        )
        assert decode(action.decisions) == []
        assert not action.redacted


def test_each_top_level_call_is_its_own_run(log: RunLog) -> None:
    @runlog(service="s")
    def tool() -> str:
        return current_run().run_id

    @runlog(service="s")
    def agent() -> str:
        tool()
        return tool()

    ids = {agent(), agent(), tool()}  # a tool called with no run around it is a run of its own
    assert log.flush(timeout=10)
    runs = log.runs(oldest_first=True)
    assert {run.run_id for run in runs} == ids
    assert len(ids) == 3
    assert [run.tool for run in runs] == ["test_each_top_level_call_is_its_own_run.<locals>.agent"] * 2 + [
        "test_each_top_level_call_is_its_own_run.<locals>.tool"
    ]
    assert [[a.seq for a in log.actions(run.run_id)] for run in runs] == [[1, 2], [1, 2], []]


def test_seq_follows_the_order_calls_began_not_ended(log: RunLog) -> None:
    ends: list[str] = []

    @runlog(service="s", name="tool")
    async def tool(name: str, wait_for: asyncio.Event | None, done: asyncio.Event) -> str:
        if wait_for is not None:
            await wait_for.wait()
        ends.append(name)
        done.set()
        return name

    @runlog(service="s", name="agent")
    async def agent() -> list[str]:
        a_done, b_done, c_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        # a waits for b, b waits for c: they begin a, b, c and end c, b, a
        return list(
            await asyncio.gather(
                tool("a", b_done, a_done), tool("b", c_done, b_done), tool("c", None, c_done)
            )
        )

    assert asyncio.run(agent()) == ["a", "b", "c"]
    assert ends == ["c", "b", "a"]
    run = only_run(log)
    actions = actions_of(log, run)
    assert [(a.seq, decode(a.result)) for a in actions] == [(1, "a"), (2, "b"), (3, "c")]
    assert [a.started for a in actions] == sorted(a.started for a in actions)


def test_nested_and_threaded_calls_are_actions_of_the_same_run(log: RunLog) -> None:
    @runlog(service="s", name="inner")
    def inner(n: int) -> int:
        return n * 10

    @runlog(service="s", name="outer")
    def outer(n: int) -> int:
        return inner(n) + 1

    @runlog(service="s", name="agent")
    def agent() -> list[int]:
        results = [outer(1)]
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(lambda: results.append(inner(7)),)
        )
        thread.start()
        thread.join()
        return results

    assert agent() == [11, 70]
    run = only_run(log)
    assert [(a.seq, a.tool, decode(a.result)) for a in actions_of(log, run)] == [
        (1, "outer", 11),
        (2, "inner", 10),
        (3, "inner", 70),
    ]


def test_estimated_and_actual_costs(log: RunLog) -> None:
    @runlog(service="s", name="reported", cost=0.5)
    def reported() -> str:
        current_run().add_cost(0.2)
        return "r"

    @runlog(service="s", name="llm", cost=1.0)
    def llm() -> dict[str, Any]:
        return {"text": "t", "usage": {"cost": 0.3}}

    @runlog(service="s", name="estimated", cost=lambda n: n * 0.25)
    def estimated(n: int) -> int:
        return n

    @runlog(service="s", name="broken", cost=0.7)
    def broken() -> None:
        current_run().add_cost(0.05)
        raise RuntimeError("half done")

    @runlog(service="s", name="agent", cost=2.0)
    def agent() -> dict[str, Any]:
        reported()
        estimated(4)
        with pytest.raises(RuntimeError):
            broken()
        return llm()  # passed on: its usage.cost is charged once, to llm

    assert agent()["usage"] == {"cost": 0.3}
    run = only_run(log)
    costs = [(a.tool, a.estimated_cost, a.actual_cost) for a in actions_of(log, run)]
    assert costs == [
        ("reported", 0.5, 0.2),  # add_cost replaces the estimate
        ("estimated", 1.0, 1.0),  # the estimate: 4 * 0.25
        ("broken", 0.7, 0.05),  # what it reported before it raised
        ("llm", 1.0, 0.3),  # usage.cost on the result
    ]
    assert (run.estimated_cost, run.actual_cost) == (2.0, 2.0)  # the top-level call's own
    assert run.cost == pytest.approx(0.2 + 1.0 + 0.05 + 0.3 + 2.0)  # the run's total


def test_an_exception_fails_the_run_and_its_action(log: RunLog) -> None:
    @runlog(service="s", name="tool")
    def tool(x: int) -> int:
        raise KeyError(x)

    @runlog(service="s", name="agent")
    def agent() -> int:
        return tool(3)

    with pytest.raises(KeyError):
        agent()
    run = only_run(log)
    assert run.status == "failed"
    assert run.output is None
    assert decode(run.error) == {"type": "builtins:KeyError", "message": "3", "args": [3]}
    [action] = actions_of(log, run)
    assert (action.status, action.tool) == ("failed", "tool")
    assert decode(action.error) == {"type": "builtins:KeyError", "message": "3", "args": [3]}


def test_an_async_run_is_recorded_like_a_plain_one(log: RunLog) -> None:
    @runlog(service="s", name="fetch", cost=0.5)
    async def fetch(url: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"body": url, "usage": {"cost": 0.125}}

    @runlog(service="s", name="parse")
    async def parse(body: str) -> int:
        await asyncio.sleep(0)
        raise ValueError(f"cannot parse {body}")

    @runlog(service="s", name="agent")
    async def agent(url: str) -> int:
        page = await fetch(url)
        return await parse(page["body"])

    with pytest.raises(ValueError, match="cannot parse http://x"):
        asyncio.run(agent("http://x"))
    run = only_run(log)
    assert (run.tool, run.status, run.output, run.cost) == ("agent", "failed", None, 0.125)
    assert decode(run.input) == {"url": "http://x"}
    assert decode(run.error)["message"] == "cannot parse http://x"
    fetched, parsed = actions_of(log, run)
    assert (fetched.seq, fetched.status, fetched.estimated_cost, fetched.actual_cost) == (
        1,
        "succeeded",
        0.5,
        0.125,
    )
    assert decode(fetched.result) == {"body": "http://x", "usage": {"cost": 0.125}}
    assert (parsed.seq, parsed.status) == (2, "failed")
    assert decode(parsed.error) == {
        "type": "builtins:ValueError",
        "message": "cannot parse http://x",
        "args": ["cannot parse http://x"],
    }


@pytest.mark.parametrize("how", ["raised", "refused by a code policy"])
def test_a_call_that_raised_has_no_result_and_a_duration_within_the_run(log: RunLog, how: str) -> None:
    enforcer = PolicyEnforcer([BudgetPolicy(default_limit=0.0 if how != "raised" else None)])

    @runlog(service="s", name="tool", cost=1.0, policies=enforcer)
    def tool() -> None:
        raise ConnectionError("down")

    @runlog(service="s", name="agent")
    def agent() -> str:
        try:
            tool()
        except (ConnectionError, BudgetExceededError):
            return "handled"
        return "unreachable"

    assert agent() == "handled"
    run = only_run(log)
    [action] = actions_of(log, run)
    assert action.status == ("failed" if how == "raised" else "denied")
    assert action.result is None
    assert run.ended is not None
    if action.duration is not None:
        assert 0 <= action.duration <= run.ended - run.started + 1.0


@pytest.mark.parametrize("on_deny", ["raise", "return"])
def test_a_deny_rule_refuses_the_action_without_running_it(log: RunLog, tmp_path: Path, on_deny: str) -> None:
    policies = policy_file(
        tmp_path,
        f"""
        version: 1
        policies:
          - id: no_delete
            when: {{tool: delete}}
            action: deny
            message: never delete
            on_deny: {on_deny}
          - id: watch
            when: {{tool: {{in: [delete, read]}}}}
            action: log
        """,
    )
    ran: list[str] = []

    @runlog(service="s", name="delete", policies=policies)
    def delete(path: str) -> None:
        ran.append(path)

    @runlog(service="s", name="agent", policies=policies)
    def agent() -> Any:
        return delete("/etc")

    if on_deny == "raise":
        with pytest.raises(RuleViolationError, match="never delete"):
            agent()
    else:
        assert agent() == "Denied by policy no_delete: never delete"
    assert ran == []
    run = only_run(log)
    [action] = actions_of(log, run)
    assert (action.status, action.duration, action.result) == ("denied", None, None)
    assert decode(action.args) == {"path": "/etc"}
    assert decode(action.decisions) == [
        {"phase": "before", "rule": "no_delete", "action": "deny", "decided": True},
        {"phase": "before", "rule": "watch", "action": "log", "decided": False},
    ]
    if on_deny == "raise":
        error = decode(action.error)
        assert error["type"] == "proctor:RuleViolationError"
        assert error["message"] == "rule 'no_delete' denied agent 's': never delete"
        assert (run.status, run.output, decode(run.error)) == ("denied", None, error)
    else:
        assert action.error is None
        assert (run.status, decode(run.output), run.error) == (
            "succeeded",
            "Denied by policy no_delete: never delete",
            None,
        )


def test_a_denied_top_level_call_with_on_deny_return_is_a_denied_run(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: closed
            when: {args.day: sunday}
            action: deny
            on_deny: return
            returns: {open: false}
        """,
    )

    @runlog(service="s", name="agent", policies=policies)
    def agent(day: str) -> dict[str, bool]:
        return {"open": True}

    assert agent("sunday") == {"open": False}
    run = only_run(log)
    assert (run.status, decode(run.output), run.error) == ("denied", {"open": False}, None)
    assert decode(run.decisions) == [{"phase": "before", "rule": "closed", "action": "deny", "decided": True}]


def test_a_code_policy_refusal_is_a_denied_action_with_a_policy_decision(log: RunLog) -> None:
    budget = BudgetPolicy(default_limit=1.0)

    @runlog(service="s", name="spend", cost=2.0, policies=PolicyEnforcer([budget]))
    def spend() -> str:
        return "spent"

    @runlog(service="s", name="agent")
    def agent() -> str:
        return spend()

    with pytest.raises(BudgetExceededError):
        agent()
    run = only_run(log)
    [action] = actions_of(log, run)
    assert action.status == "denied"
    assert decode(action.error)["type"] == "proctor:BudgetExceededError"
    assert decode(action.decisions) == [
        {"phase": "policy", "rule": "budget", "action": "deny", "decided": True}
    ]
    assert run.status == "denied"


def test_a_terminate_rule_terminates_the_run(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: stop
            when: {tool: nuke}
            action: terminate
            message: stop everything
        """,
    )
    ran: list[str] = []

    @runlog(service="s", name="nuke", policies=policies)
    def nuke() -> None:
        ran.append("nuke")

    @runlog(service="s", name="other", policies=policies)
    def other() -> None:
        ran.append("other")

    @runlog(service="s", name="agent", policies=policies)
    def agent() -> None:
        with contextlib.suppress(RunTerminated):
            nuke()
        other()  # refused too: the run is over

    with pytest.raises(RunTerminated, match="stop everything"):
        agent()
    assert ran == []
    run = only_run(log)
    assert run.status == "terminated"
    error = decode(run.error)
    assert error["type"] == "proctor:RunTerminated"
    assert error["args"] == [run.run_id, "stop", "stop everything"]
    first = actions_of(log, run)[0]
    assert (first.seq, first.tool, first.status, first.duration, first.result) == (
        1,
        "nuke",
        "terminated",
        None,
        None,
    )
    assert decode(first.decisions) == [
        {"phase": "before", "rule": "stop", "action": "terminate", "decided": True}
    ]


def test_a_cancelled_task_is_a_cancelled_run(log: RunLog) -> None:
    @runlog(service="s", name="slow")
    async def slow(started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    @runlog(service="s", name="agent")
    async def agent(started: asyncio.Event) -> None:
        await slow(started)

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(agent(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    run = only_run(log)
    assert (run.status, run.output) == ("cancelled", None)
    assert decode(run.error)["type"] == "asyncio.exceptions:CancelledError"
    [action] = actions_of(log, run)
    assert (action.tool, action.status) == ("slow", "cancelled")
    assert decode(action.error)["type"] == "asyncio.exceptions:CancelledError"


def test_modified_arguments_and_what_was_requested(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: cap
            when: {tool: search, args.limit: {gt: 5}}
            action: modify
            clamp: {args.limit: {max: 5}}
        """,
    )

    @runlog(service="s", name="search", policies=policies)
    def search(query: str, limit: int) -> int:
        return limit

    @runlog(service="s", name="agent")
    def agent() -> list[int]:
        return [search("a", limit=50), search("b", limit=3)]

    assert agent() == [5, 3]
    run = only_run(log)
    clamped, untouched = actions_of(log, run)
    assert decode(clamped.args) == {"query": "a", "limit": 5}
    assert decode(clamped.requested_args) == {"query": "a", "limit": 50}
    assert decode(clamped.decisions) == [
        {"phase": "before", "rule": "cap", "action": "modify", "decided": True}
    ]
    assert decode(untouched.args) == {"query": "b", "limit": 3}
    assert untouched.requested_args is None
    assert decode(untouched.decisions) == []


APPROVAL_POLICY = """
policies:
  - id: big_payment
    when: {args.amount: {gt: 100}}
    action: require_approval
    approvers: [finance]
    timeout: 5
"""


def test_approvals_are_recorded_with_their_approver(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(tmp_path, APPROVAL_POLICY)
    asked: list[ApprovalRequest] = []
    answers = iter([ApprovalDecision(True, "ann", "ok"), ApprovalDecision(False, "bob", "not now"), None])

    def decide(request: ApprovalRequest) -> ApprovalDecision | None:
        asked.append(request)
        return next(answers)

    @runlog(service="s", name="pay", policies=policies, approvals=CallbackChannel(decide))
    def pay(amount: float) -> str:
        return f"paid {amount:g}"

    @runlog(service="s", name="agent")
    def agent() -> list[str]:
        results = [pay(50), pay(500)]
        for amount in (600, 700):
            try:
                pay(amount)
            except RuleViolationError as exc:
                results.append(exc.detail)
        return results

    assert agent() == ["paid 50", "paid 500", "approval refused by bob: not now", "approval timed out"]
    run = only_run(log)
    assert [request.run_id for request in asked] == [run.run_id] * 3
    assert [request.args for request in asked] == [{"amount": 500}, {"amount": 600}, {"amount": 700}]
    small, granted, refused, timed_out = actions_of(log, run)
    assert (small.status, small.approval, decode(small.decisions)) == ("succeeded", None, [])
    assert (granted.status, decode(granted.result)) == ("succeeded", "paid 500")
    assert decode(granted.approval) == {
        "rule": "big_payment",
        "approved": True,
        "approver": "ann",
        "comment": "ok",
    }
    assert decode(granted.decisions) == [
        {"phase": "before", "rule": "big_payment", "action": "require_approval", "decided": True}
    ]
    assert (refused.status, refused.duration, refused.result) == ("denied", None, None)
    assert decode(refused.approval) == {
        "rule": "big_payment",
        "approved": False,
        "approver": "bob",
        "comment": "not now",
    }
    assert timed_out.status == "denied"
    assert decode(timed_out.approval) == {
        "rule": "big_payment",
        "approved": None,  # nobody answered in time
        "approver": None,
        "comment": None,
    }


def test_the_global_approval_channel_answers_a_top_level_call(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(tmp_path, APPROVAL_POLICY)

    @runlog(service="s", name="pay", policies=policies)
    def pay(amount: float) -> str:
        return f"paid {amount:g}"

    set_approval_channel(lambda request: ApprovalDecision(True, f"cfo-for-{request.tool}"))
    try:
        assert pay(1000) == "paid 1000"
    finally:
        set_approval_channel(None)
    run = only_run(log)
    assert decode(run.approval) == {
        "rule": "big_payment",
        "approved": True,
        "approver": "cfo-for-pay",
        "comment": None,
    }
    assert run.status == "succeeded"


def test_an_output_rule_denies_after_the_call(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: no_secrets
            when: {tool: read, output: {contains: secret}}
            action: deny
            message: the output holds a secret
        """,
    )
    ran: list[str] = []

    @runlog(service="s", name="read", policies=policies)
    def read(name: str) -> str:
        ran.append(name)
        return f"the {name} file"

    @runlog(service="s", name="agent")
    def agent() -> list[str]:
        results = [read("public")]
        try:
            read("secret")
        except RuleViolationError as exc:
            results.append(exc.detail)
        return results

    assert agent() == ["the public file", "the output holds a secret"]
    assert ran == ["public", "secret"]  # an output rule decides after the call ran
    run = only_run(log)
    allowed, denied = actions_of(log, run)
    assert (allowed.status, decode(allowed.result), decode(allowed.decisions)) == (
        "succeeded",
        "the public file",
        [],
    )
    assert denied.status == "denied"
    assert denied.duration is not None  # it ran
    assert decode(denied.error)["message"] == "rule 'no_secrets' denied agent 's': the output holds a secret"
    assert decode(denied.decisions) == [
        {"phase": "after", "rule": "no_secrets", "action": "deny", "decided": True}
    ]


def test_labels_are_recorded(log: RunLog) -> None:
    @runlog(service="s", name="tool", labels={"data": "customer", "region": "eu"})
    def tool() -> int:
        return 1

    @runlog(service="s", name="agent", labels={"team": "support"})
    def agent() -> int:
        return tool()

    agent()
    run = only_run(log)
    assert decode(run.labels) == {"team": "support"}
    [action] = actions_of(log, run)
    assert decode(action.labels) == {"data": "customer", "region": "eu"}


def test_pii_is_redacted_by_default(redacting_log: RunLog) -> None:
    @runlog(service="s", name="mail")
    def mail(to: str, body: str) -> str:
        return f"sent to {to}"

    @runlog(service="s", name="count")
    def count(n: int) -> int:
        return n + 1

    @runlog(service="s", name="agent")
    def agent(customer: str) -> int:
        mail(customer, "hello")
        return count(1)

    assert agent("jane.doe@example.com") == 2
    run = only_run(redacting_log)
    assert decode(run.input) == {"customer": "[REDACTED:email]"}
    assert run.redacted
    mailed, counted = actions_of(redacting_log, run)
    assert decode(mailed.args) == {"to": "[REDACTED:email]", "body": "hello"}
    assert decode(mailed.result) == "sent to [REDACTED:email]"
    assert mailed.redacted
    assert (decode(counted.args), decode(counted.result), counted.redacted) == ({"n": 1}, 2, False)
    database = b"".join(path.read_bytes() for path in redacting_log.path.parent.glob("runs.db*"))
    assert b"jane.doe" not in database


def test_record_false_and_no_run_log_record_nothing(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(tmp_path, "policies:\n  - id: zero\n    when: {args.x: 0}\n    action: deny\n")

    @runlog(service="s", name="tool", record=False)
    def tool(x: int) -> int:
        return x

    @runlog(service="s", name="quiet", record=False, policies=policies)
    def quiet(x: int) -> int:
        return tool(x)

    @runlog(service="s", name="agent")
    def agent() -> int:
        return tool(5)  # record=False only concerns runs: inside a recorded run it is an action

    assert quiet(1) == 1
    with pytest.raises(RuleViolationError):  # unrecorded calls are still checked
        quiet(0)
    assert agent() == 5
    run = only_run(log)  # agent's run alone
    assert run.tool == "agent"
    assert [(a.tool, decode(a.result)) for a in actions_of(log, run)] == [("tool", 5)]
    with default.recording_into(None):
        assert default.run_log() is None
        assert agent() == 5
    assert default.run_log() is log
    assert log.flush(timeout=10)
    assert len(log.runs()) == 1


def test_recording_into_holds_for_its_own_thread_only(tmp_path: Path) -> None:
    first, second = RunLog(tmp_path / "a.db", pii=False), RunLog(tmp_path / "b.db", pii=False)

    @runlog(service="s", name="agent")
    def agent(who: str) -> str:
        return who

    inside, go_on = threading.Event(), threading.Event()

    def in_a() -> None:
        with default.recording_into(first):
            inside.set()
            go_on.wait(10)
            agent("a")

    thread = threading.Thread(target=in_a)
    thread.start()
    inside.wait(10)
    with default.recording_into(second):  # overlaps the other thread's block
        go_on.set()
        agent("b")
    thread.join(10)
    assert first.flush(timeout=10)
    assert second.flush(timeout=10)
    assert [decode(r.input) for r in first.runs()] == [{"who": "a"}]
    assert [decode(r.input) for r in second.runs()] == [{"who": "b"}]
    first.close()
    second.close()


def test_effects_are_recorded_as_the_run_drew_them(log: RunLog) -> None:
    @runlog(service="s", name="tool")
    def tool() -> str:
        return str(uuid4())  # inside a tool call: the same run's effects

    @runlog(service="s", name="agent")
    def agent() -> dict[str, Any]:
        first = now()
        ident = uuid4()
        numbers = [rng().random(), rng().randint(1, 100)]
        return {"now": [first, now(UTC)], "uuid": [str(ident), tool()], "numbers": numbers}

    out = agent()
    run = only_run(log)
    effects = decode(run.effects)
    assert set(effects) == {"seed", "now", "uuid"}
    first, second = out["now"]
    stamps = effects["now"]
    assert [datetime.fromtimestamp(stamps[0]), datetime.fromtimestamp(stamps[1], UTC)] == [first, second]
    assert second.tzinfo is UTC
    assert effects["uuid"] == out["uuid"]
    replayed = random.Random(effects["seed"])
    assert [replayed.random(), replayed.randint(1, 100)] == out["numbers"]
    assert effects["now"][0] <= effects["now"][1]
    assert all(uuid.UUID(value).version == 4 for value in out["uuid"])


def test_outside_any_run_the_effects_are_the_usual_ones() -> None:
    before = time.time()
    assert before - 1 <= now().timestamp() <= time.time() + 1
    assert uuid4() != uuid4()
    assert rng() is rng()
    assert 0 <= rng().random() < 1


def test_flush_of_the_default_log(tmp_path: Path) -> None:
    previous = default.run_log()
    chosen = default.set_run_log(tmp_path / "by-path.db")  # a path opens a RunLog there
    try:
        assert isinstance(chosen, RunLog)
        assert default.run_log() is chosen

        @runlog(service="s", name="agent")
        def agent(n: int) -> int:
            return n

        for n in range(20):
            agent(n)
        assert default.flush(timeout=10) is True
        with sqlite3.connect(tmp_path / "by-path.db") as reader:  # another connection sees every run
            (count,) = reader.execute("SELECT COUNT(*) FROM runs WHERE status = 'succeeded'").fetchone()
        assert count == 20
    finally:
        default.set_run_log(previous)
        if chosen is not None:
            chosen.close()


def _run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


RECORD_SCRIPT = """
    from proctor import runlog
    from proctor.runs import default

    @runlog(service="s")
    def agent(n):
        return n * 2

    print(agent(21), default.run_log() is None, default.flush())
"""


def test_proctor_record_off_records_nothing(tmp_path: Path) -> None:
    off = tmp_path / "off" / "runs.db"
    done = _run_script(RECORD_SCRIPT, {"PROCTOR_DB": str(off), "PROCTOR_RECORD": "off"})
    assert done.stdout.split() == ["42", "True", "True"]
    assert not off.exists()
    on = tmp_path / "on" / "runs.db"
    done = _run_script(RECORD_SCRIPT, {"PROCTOR_DB": str(on), "PROCTOR_RECORD": ""})
    assert done.stdout.split() == ["42", "False", "True"]
    reopened = RunLog(on)
    try:
        [run] = reopened.runs()
        assert (run.status, decode(run.output)) == ("succeeded", 42)
    finally:
        reopened.close()


def test_sigkill_mid_run_keeps_every_action_flushed_before(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    script = """
        import time
        from proctor import runlog
        from proctor.runs import default

        @runlog(service="s", name="step")
        def step(n):
            return {"n": n, "square": n * n}

        @runlog(service="s", name="agent")
        def agent():
            n = 0
            while True:  # never returns: the run is killed in the middle
                n += 1
                step(n)
                if n == 300:
                    default.flush()
                    print("flushed 300", flush=True)
                if n % 50 == 0:
                    time.sleep(0.001)

        agent()
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PROCTOR_DB": str(path), "PROCTOR_RECORD": "on"}
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "flushed 300"
        time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = RunLog(path)
    try:
        [run] = reopened.runs()
        assert (run.tool, run.status, run.ended) == ("agent", "running", None)
        actions = reopened.actions(run.run_id)
        assert len(actions) >= 300
        assert [a.seq for a in actions] == list(range(1, len(actions) + 1))  # no gaps
        assert [decode(a.result) for a in actions[:300]] == [{"n": n, "square": n * n} for n in range(1, 301)]
        assert {a.status for a in actions} == {"succeeded"}
    finally:
        reopened.close()


def test_recorded_values_are_json(log: RunLog) -> None:
    @runlog(service="s", name="agent")
    def agent(data: bytes, items: set[int]) -> tuple[int, ...]:
        return (1, 2)

    agent(b"\x01\x02", {3, 1})
    run = only_run(log)
    assert json.loads(run.input or "") == {"data": {"__proctor_bytes__": "AQI="}, "items": [1, 3]}
    assert json.loads(run.output or "") == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # 3.12+
def test_a_forked_child_records_its_own_runs_under_ids_of_its_own(log: RunLog) -> None:
    @runlog(service="s", name="agent")
    def agent(who: str) -> str:
        return who

    agent("before")
    assert log.flush(timeout=10)
    child = os.fork()
    if child == 0:  # the child: the parent's writer thread is not here; records must still land
        try:
            agent("child")
            os._exit(0 if log.flush(timeout=10) else 1)
        finally:
            os._exit(2)
    agent("parent")
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert log.flush(timeout=10)
    runs = log.runs()
    assert sorted((decode(run.input)["who"], decode(run.output)) for run in runs) == [
        ("before", "before"),
        ("child", "child"),
        ("parent", "parent"),
    ]
    assert len({run.run_id for run in runs}) == 3
