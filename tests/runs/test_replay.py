"""Replaying recorded runs: identical replays, new policies, divergence, live calls, batches, errors."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from proctor import (
    ApprovalDecision,
    AutoChannel,
    ConfigurationError,
    RuleViolationError,
    load_policies,
    runlog,
)
from proctor.runs import (
    ActionDecision,
    Divergence,
    ReplayResult,
    RuleImpact,
    RunLog,
    RunRecord,
    replay,
    replay_batch,
)
from tests.databases import ALL_DATABASES, execute
from tests.runs import agents
from tests.runs.agents import CALLS, Invoice, Quote
from tests.runs.helpers import policy_file, recording_into


@pytest.fixture(params=list(ALL_DATABASES))
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLog]:
    yield from recording_into(RunLog(ALL_DATABASES[request.param](tmp_path), pii=False))


@pytest.fixture
def redacting_log(tmp_path: Path) -> Iterator[RunLog]:
    yield from recording_into(RunLog(tmp_path / "runs.db"))


def last_run(log: RunLog) -> RunRecord:
    """The run recorded last."""
    assert log.flush(timeout=10)
    return log.runs(limit=1)[0]


def decisions(result: ReplayResult) -> list[tuple[int, str, str, str | None, str]]:
    return [(d.seq, d.tool, d.action, d.rule, d.recorded) for d in result.decisions]


def counts() -> dict[str, int]:
    return dict(CALLS)


DENY_LLM = """
version: 1
policies:
  - id: no_llm
    when: {tool: llm}
    action: deny
    message: no LLM calls today
"""

DENY_LOOKUP = """
policies:
  - id: no_lookup
    when: {tool: lookup}
    action: deny
"""


def test_a_recorded_run_replays_identically(log: RunLog) -> None:
    output = agents.answer("shoes")
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, log=log)
    assert counts() == calls  # every tool call was answered from the recording
    assert result.identical
    assert result.divergence is None
    assert result.output == output == "SHOES-0, SHOES-1"
    assert (result.run_id, result.mode, result.status_before, result.status_after) == (
        run.run_id,
        "replay",
        "succeeded",
        "succeeded",
    )
    assert (result.cost_before, result.cost_after, result.cost_saved) == (0.75, 0.75, 0.0)
    assert result.succeeded
    assert result.error is None
    assert decisions(result) == [
        (0, "answer", "allow", None, "allow"),
        (1, "search", "allow", None, "allow"),
        (2, "llm", "allow", None, "allow"),
    ]
    assert not any(decision.changed for decision in result.decisions)
    assert replay(run.run_id) == result  # the default log is the one runs are recorded in


def test_now_uuid_and_rng_give_their_recorded_values(log: RunLog) -> None:
    output = agents.stamped("boots")
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, log=log)
    assert result.identical
    assert result.output == output  # the clock, the uuid and both random numbers, and the tool call's args
    assert counts() == calls


def test_an_async_run_replays_identically(log: RunLog) -> None:
    output = asyncio.run(agents.answer_async("hats"))
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, log=log)
    assert result.identical
    assert result.output == output == "HATS! HATS?!"
    assert (result.cost_before, result.cost_after) == (0.5, 0.5)  # 2 x add_cost(0.125) + llm's 0.25
    assert counts() == calls


def test_a_tool_that_raised_raises_its_recorded_error_again(log: RunLog) -> None:
    output = agents.resilient("http://shop.test")
    assert output == "offline: http://shop.test is down"
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, log=log)
    assert counts() == calls
    assert result.divergence is None
    assert result.identical
    assert result.output == output  # the agent caught the rebuilt Offline error as it did when recorded


def test_a_failed_run_fails_again_with_its_error(log: RunLog) -> None:
    with pytest.raises(ValueError, match="empty question"):
        agents.answer("")
    run = last_run(log)
    result = replay(run.run_id, log=log)
    assert result.identical
    assert (result.status_before, result.status_after) == ("failed", "failed")
    assert isinstance(result.error, ValueError)
    assert str(result.error) == "empty question"
    assert not result.succeeded


def test_dataclass_and_pydantic_results_are_rebuilt(log: RunLog) -> None:
    output = agents.checkout("sku-1")
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, log=log)
    assert counts() == calls
    assert result.identical
    assert result.output == output
    assert isinstance(result.output["quote"], Quote)
    assert result.output["quote"] == Quote("sku-1", 9.5, ["new"])
    assert isinstance(result.output["invoice"], Invoice)
    assert result.output["invoice"] == Invoice(number="INV-sku-1", total=19.0, lines=["sku-1", "sku-1"])


@pytest.mark.parametrize("given_as", ["path", "list of paths", "mapping", "RuleSet"])
def test_a_new_policy_that_denies_a_tool(log: RunLog, tmp_path: Path, given_as: str) -> None:
    agents.answer("shoes")
    run = last_run(log)
    path = policy_file(tmp_path, DENY_LLM, "deny-llm.yaml")
    policies: Any = {
        "path": path,
        "list of paths": [path],
        "mapping": {"policies": [{"id": "no_llm", "when": {"tool": "llm"}, "action": "deny"}]},
        "RuleSet": load_policies(path),
    }[given_as]
    calls = counts()
    result = replay(run.run_id, policies, log=log)
    assert counts() == calls
    assert not result.identical
    assert result.divergence is None  # the agent stops at the refusal: nothing unrecorded ran
    assert decisions(result) == [
        (0, "answer", "allow", None, "allow"),
        (1, "search", "allow", None, "allow"),
        (2, "llm", "deny", "no_llm", "allow"),
    ]
    assert [d.changed for d in result.decisions] == [False, False, True]
    assert (result.status_before, result.status_after) == ("succeeded", "denied")
    assert isinstance(result.error, RuleViolationError)
    assert result.error.rule_id == "no_llm"
    # recorded: search 0.5 + llm 0.25; replayed: search only
    assert (result.cost_before, result.cost_after, result.cost_saved) == (0.75, 0.5, 0.25)


def test_a_new_modify_rule_is_reported_and_the_call_still_answered(log: RunLog, tmp_path: Path) -> None:
    agents.answer("shoes")
    run = last_run(log)
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: fewer_hits
            when: {tool: search}
            action: modify
            set: {args.limit: 1}
        """,
    )
    result = replay(run.run_id, policies, log=log)
    assert result.divergence is None
    assert result.output == "SHOES-0, SHOES-1"  # the recorded result of the call as it was requested
    assert result.decisions[1] == ActionDecision(
        1, "search", "modify", "fewer_hits", "allow", ("fewer_hits",)
    )
    assert result.status_after == "succeeded"
    assert not result.identical


def test_a_call_the_recording_does_not_have_ends_the_replay_without_running(
    log: RunLog, tmp_path: Path
) -> None:
    assert agents.research("why") == "why: page 1"
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, policy_file(tmp_path, DENY_LOOKUP), log=log)
    assert counts() == calls  # backup did not run, nor did anything after it
    assert result.divergence == Divergence(
        seq=2,
        expected='summarize({"pages":["why: page 1"]})',
        got='backup({"question":"why"})',
        reason="the replay made a call the recording does not have",
    )
    assert str(result.divergence).startswith("action 2: the replay made a call the recording does not have")
    assert not result.identical
    assert result.status_after == "cancelled"
    assert decisions(result) == [
        (0, "research", "allow", None, "allow"),
        (1, "lookup", "deny", "no_lookup", "allow"),
        (2, "backup", "allow", None, "unrecorded"),
    ]


def test_the_output_of_a_replay_that_ended_early_is_none(log: RunLog, tmp_path: Path) -> None:
    agents.research("why")
    run = last_run(log)
    result = replay(run.run_id, policy_file(tmp_path, DENY_LOOKUP), log=log)
    assert result.divergence is not None
    assert result.output is None


def test_live_runs_the_calls_the_recording_does_not_have(log: RunLog, tmp_path: Path) -> None:
    agents.research("why")
    run = last_run(log)
    calls = counts()
    result = replay(run.run_id, policy_file(tmp_path, DENY_LOOKUP), live=True, log=log)
    assert counts() == {**calls, "backup": calls.get("backup", 0) + 1, "summarize": calls["summarize"] + 1}
    assert result.divergence is None
    assert result.output == "why: cached"
    assert result.status_after == "succeeded"
    assert decisions(result) == [
        (0, "research", "allow", None, "allow"),
        (1, "lookup", "deny", "no_lookup", "allow"),
        (2, "backup", "allow", None, "unrecorded"),
        (3, "summarize", "allow", None, "unrecorded"),  # other pages than recorded: run live too
    ]


def test_a_call_the_replay_no_longer_makes_is_a_divergence(log: RunLog) -> None:
    agents.answer("shoes")
    run = last_run(log)

    @runlog(service=agents.SERVICE)
    def answer(question: str) -> str:  # answers the same without asking the LLM
        agents.search(question)
        return "SHOES-0, SHOES-1"

    result = replay(run.run_id, function=answer, log=log)
    assert result.divergence == Divergence(
        seq=2,
        expected='llm({"prompt":"shoes-0, shoes-1"})',
        got=None,
        reason="the replay did not make this call",
    )
    assert not result.identical
    assert result.output == "SHOES-0, SHOES-1"


def test_a_replay_records_nothing_and_charges_no_budget(log: RunLog) -> None:
    assert agents.pay(3.0) == "charged 3.0"
    run = last_run(log)
    spent = agents.BUDGET.spent(agents.SERVICE)
    calls = counts()
    runs = len(log.runs(limit=None))
    for _ in range(3):
        result = replay(run.run_id, log=log)
        assert result.identical
        assert (result.cost_before, result.cost_after) == (2.0, 2.0)
    assert log.flush(timeout=10)
    assert len(log.runs(limit=None)) == runs
    assert [a.seq for a in log.actions(run.run_id)] == [1]
    assert agents.BUDGET.spent(agents.SERVICE) == spent
    assert counts() == calls


def test_a_replay_does_not_count_in_cost_today(log: RunLog, tmp_path: Path) -> None:
    service = f"ledger-{uuid.uuid4().hex}"  # a spend ledger of this test's own
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: daily_cap
            when: {cost_today: {gt: 15}}
            action: deny
        """,
    )

    @runlog(service=service, cost=10.0, policies=policies)
    def spend() -> str:
        return "spent"

    @runlog(service=service, policies=policies)
    def agent() -> str:
        return spend()

    assert agent() == "spent"  # cost_today: 0 before, 10 after
    run = last_run(log)
    for _ in range(3):  # 40 today, if replays were charged
        assert replay(run.run_id, function=agent, log=log).identical
    assert agent() == "spent"  # cost_today is 10: not over 15


def test_recorded_approvals_are_reused_and_missing_ones_granted(log: RunLog, tmp_path: Path) -> None:
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: big
            when: {args.amount: {gt: 100}}
            action: require_approval
        """,
    )
    channel = AutoChannel([ApprovalDecision(False, "bob", "no")])

    @runlog(service="pay", name="transfer", policies=policies, approvals=channel, on_deny="return")
    def transfer(amount: float) -> str:
        return f"sent {amount:g}"

    @runlog(service="pay")
    def agent(amount: float) -> str:
        return transfer(amount)

    assert agent(500) == "Denied by policy big: approval refused by bob: no"
    refused = last_run(log)
    assert agent(50) == "sent 50"
    small = last_run(log)
    result = replay(refused.run_id, function=agent, log=log)
    assert len(channel.requests) == 1  # nobody was asked again
    assert result.identical
    assert result.output == "Denied by policy big: approval refused by bob: no"
    # under a stricter file, the small transfer needs an approval it never had: taken as granted
    stricter = policy_file(tmp_path, "policies:\n  - id: all\n    action: require_approval\n", "all.yaml")
    result = replay(small.run_id, stricter, function=agent, log=log)
    assert len(channel.requests) == 1
    assert result.output == "sent 50"
    assert result.status_after == "succeeded"
    assert result.divergence is None
    assert result.decisions[1] == ActionDecision(1, "transfer", "require_approval", "all", "allow")


def test_a_redacted_run_replays_with_its_redacted_values(redacting_log: RunLog) -> None:
    assert agents.notify("jane@example.com") == "sent 'your order shipped' to jane@example.com"
    run = last_run(redacting_log)
    assert run.redacted
    calls = counts()
    result = replay(run.run_id, log=redacting_log)
    assert counts() == calls
    # the replay knows only the redacted input, and the call with it matches its redacted record
    assert result.identical
    assert result.output == "sent 'your order shipped' to [REDACTED:email]"


def _move(log: RunLog, run_id: str, to: datetime) -> None:
    """Make ``run_id`` look recorded at ``to`` (local time), its actions shifted with it."""
    run = log.run(run_id)
    assert run is not None
    shift = to.timestamp() - run.started
    execute(
        log.database,
        "UPDATE runs SET started = started + ?, ended = ended + ? WHERE run_id = ?",
        (shift, shift, run_id),
    )
    execute(log.database, "UPDATE actions SET started = started + ? WHERE run_id = ?", (shift, run_id))


def test_replay_batch_over_a_date_range_and_filters(log: RunLog, tmp_path: Path) -> None:
    recorded: dict[str, str] = {}
    runs: list[tuple[str, datetime, Callable[[], object]]] = [
        ("a", datetime(2024, 1, 1, 10), lambda: agents.answer("shoes")),
        ("b", datetime(2024, 1, 2, 10), lambda: agents.answer("hats")),
        ("c", datetime(2024, 1, 2, 10, 30), lambda: agents.research("why")),  # another tool: filtered out
        ("e", datetime(2024, 1, 2, 11), lambda: agents.answer("")),  # fails before any tool call
        ("d", datetime(2024, 1, 5, 10), lambda: agents.answer("socks")),  # after the range
    ]
    for name, at, call in runs:
        with contextlib.suppress(ValueError):  # e fails: it is recorded as failed
            call()
        run = last_run(log)
        _move(log, run.run_id, at)
        recorded[name] = run.run_id
    policies = policy_file(
        tmp_path,
        """
        policies:
          - id: no_hats_llm
            when: {tool: llm, input.question: hats}
            action: deny
        """,
    )
    calls = counts()
    batch = replay_batch("2024-01-01:2024-01-02", {"tool": "answer"}, policies, log=log)
    assert counts() == calls
    assert [result.run_id for result in batch] == [
        recorded["a"],
        recorded["b"],
        recorded["e"],
    ]  # oldest first
    a, b, e = batch
    assert a.identical
    assert e.identical
    assert (b.status_after, b.cost_after, b.divergence) == ("denied", 0.5, None)
    impact = batch.impact
    assert impact.runs == 3
    # decisions: a has answer, search, llm (3); b the same (3, llm now denied); e only answer (1)
    assert impact.actions == 3 + 3 + 1
    assert (impact.runs_affected, impact.actions_changed) == (1, 1)  # b, and its llm call
    # before: a 0.75 (search 0.5 + llm 0.25) + b 0.75 + e 0.0 = 1.5
    # after:  a 0.75 + b 0.5 (search only) + e 0.0 = 1.25
    assert impact.cost_before == pytest.approx(1.5)
    assert impact.cost_after == pytest.approx(1.25)
    assert impact.cost_saved == pytest.approx(0.25)
    assert impact.rules == (RuleImpact("no_hats_llm", denied=1, runs=1),)
    # a and b succeeded when recorded, e failed: 2 of 3; now a alone succeeds: 1 of 3
    assert batch.success_rate_before == pytest.approx(2 / 3)
    assert batch.success_rate == pytest.approx(1 / 3)
    assert impact.to_dict()["rules"] == [
        {
            "rule": "no_hats_llm",
            "denied": 1,
            "approval": 0,
            "modified": 0,
            "terminated": 0,
            "logged": 0,
            "runs": 1,
        }
    ]
    # since narrows the range further; filters combine
    later = replay_batch(
        "2024-01-01:2024-01-05", {"status": "succeeded"}, since=datetime(2024, 1, 2).timestamp(), log=log
    )
    assert [result.run_id for result in later] == [recorded["b"], recorded["c"], recorded["d"]]
    assert all(result.identical for result in later)
    assert later.success_rate == 1.0
    assert later.impact.cost_saved == 0.0
    # nothing in range: an empty batch
    empty = replay_batch("2023-01-01:2023-01-02", log=log)
    assert (len(empty), empty.success_rate, empty.impact.runs) == (0, 1.0, 0)


def test_batch_options_are_checked(log: RunLog) -> None:
    with pytest.raises(ConfigurationError, match="what-if mode needs policies="):
        replay_batch(mode="what-if", log=log)
    with pytest.raises(ConfigurationError, match="mode must be 'replay' or 'what-if'"):
        replay_batch(mode="guess", log=log)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown filter 'colour'"):
        replay_batch(filters={"colour": "red"}, log=log)


def test_an_unknown_run_is_an_error(log: RunLog) -> None:
    with pytest.raises(ConfigurationError) as info:
        replay("nope", log=log)
    assert str(info.value).startswith(f"no run 'nope' in {log.database}; ")


def test_a_function_of_a_local_scope_needs_function(log: RunLog) -> None:
    @runlog(service="s")
    def local(n: int) -> int:
        return n + 1

    assert local(1) == 2
    run = last_run(log)
    assert "<locals>" in run.function
    with pytest.raises(
        ConfigurationError, match="defined inside another one; it cannot be imported: pass function="
    ):
        replay(run.run_id, log=log)
    result = replay(run.run_id, function=local, log=log)
    assert (result.identical, result.output) == (True, 2)


def test_function_must_be_the_decorated_one(log: RunLog) -> None:
    agents.answer("shoes")
    run = last_run(log)

    def plain(question: str) -> str:
        return question

    with pytest.raises(ConfigurationError, match="is not decorated with @runlog"):
        replay(run.run_id, function=plain, log=log)


def test_a_function_that_moved_away_needs_function(log: RunLog) -> None:
    agents.answer("shoes")
    run = last_run(log)
    execute(
        log.database, "UPDATE runs SET function = 'tests.runs.agents:gone' WHERE run_id = ?", (run.run_id,)
    )
    with pytest.raises(ConfigurationError, match=r"cannot import tests\.runs\.agents:gone.*pass function="):
        replay(run.run_id, log=log)
    assert replay(run.run_id, function=agents.answer, log=log).identical
