"""What-if on real run logs: recorded runs re-evaluated under new policy files, impact worked out by hand."""

from __future__ import annotations

import heapq
import itertools
import json
import math
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proctor.errors import PolicyConfigError
from proctor.rules import parse_policies
from proctor.rules.facts import Facts
from proctor.rules.ruleset import RuleSet, Verdict
from proctor.runs.accounts import Account, day_of
from proctor.runs.log import NO_RESULT, ActionRecord, RunLog, RunRecord, decode
from proctor.runs.result import ActionDecision, ImpactReport, ReplayResult, effective_action
from proctor.runs.whatif import what_if

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC).timestamp()  # Monday 2024-03-04 09:00 UTC
HOUR = 3600.0
ALLOWED = [{"phase": "before", "rule": None, "action": "allow", "decided": True}]


@dataclass
class Call:
    """One recorded action: its tool, start (seconds after the run's), cost and the rest."""

    tool: str
    at: float
    cost: float = 0.0
    duration: float | None = 1.0
    args: Any = field(default_factory=dict)
    requested: Any = None
    result: Any = None
    status: str = "succeeded"
    labels: Any = None
    decisions: Sequence[Any] = ()


def record(
    log: RunLog,
    run_id: str,
    start: float,
    calls: Sequence[Call] = (),
    *,
    tool: str = "handle",
    service: str = "svc",
    agent: str = "bot",
    input: Any = None,
    own: float = 0.0,
    status: str = "succeeded",
    output: Any = None,
    decisions: Sequence[Any] = (),
) -> None:
    """Record a run the way a live run records itself: its own cost ``own`` plus its calls' costs."""
    log.run_started(
        run_id,
        service=service,
        agent=agent,
        tool=tool,
        function=f"app.{tool}",
        started=start,
        input=input if input is not None else {},
    )
    for seq, call in enumerate(calls, 1):
        log.action(
            run_id,
            seq,
            tool=call.tool,
            service=service,
            agent=agent,
            started=start + call.at,
            duration=call.duration,
            status=call.status,
            args=call.args,
            requested_args=call.requested,
            result=call.result,
            labels=call.labels,
            estimated_cost=call.cost,
            actual_cost=call.cost if call.status != "denied" else None,
            decisions=call.decisions,
        )
    if status != "running":
        end = max((call.at + (call.duration or 0.0) for call in calls), default=0.0) + 1.0
        log.run_finished(
            run_id,
            status=status,
            ended=start + end,
            output=output,
            estimated_cost=own,
            actual_cost=own,
            cost=own + sum(call.cost for call in calls if call.status != "denied"),
            decisions=decisions,
        )


def policy(tmp_path: Path, text: str, name: str = "policies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def log(tmp_path: Path) -> Iterator[RunLog]:
    run_log = RunLog(tmp_path / "runs.db", pii=False)
    yield run_log
    run_log.close()


def everything(log: RunLog) -> list[RunRecord]:
    assert log.flush(timeout=10)
    return log.runs(limit=None, oldest_first=True)


def by_id(results: list[ReplayResult]) -> dict[str, ReplayResult]:
    return {result.run_id: result for result in results}


def outcome(result: ReplayResult) -> tuple[str, float, float]:
    """How a run ends now: its status, its recorded cost and its cost now (to 1e-9)."""
    return result.status_after, round(result.cost_before, 9), round(result.cost_after, 9)


def actions(result: ReplayResult) -> list[tuple[int, str, str, str | None]]:
    return [(d.seq, d.tool, d.action, d.rule) for d in result.decisions]


def email(to: str, cost: float, at: float) -> Call:
    return Call("send_email", at, cost, args={"to": to, "body": "hi"})


def test_a_deny_rule_on_external_email_stops_runs_and_saves_their_later_spend(
    log: RunLog, tmp_path: Path
) -> None:
    record(
        log,
        "r1",
        T0,
        [
            Call("search", 10, 0.10),
            Call("llm", 20, 0.50),
            email("a@external.com", 0.05, 30),
            Call("llm", 40, 0.30),
        ],
        own=0.02,
    )
    record(log, "r2", T0 + HOUR, [Call("search", 10, 0.10), email("b@example.com", 0.05, 20)], own=0.02)
    record(log, "r3", T0 + 2 * HOUR, [email("c@external.com", 0.05, 10), Call("llm", 20, 0.40)], own=0.02)
    record(log, "r4", T0 + 3 * HOUR, [Call("search", 10, 0.10), Call("llm", 20, 0.20)], status="failed")
    record(log, "r5", T0 + 4 * HOUR, [Call("llm", 10, 0.50), email("d@partner.org", 0.05, 20)], own=0.02)
    record(
        log,
        "r6",
        T0 + 5 * HOUR,
        [Call("search", 10, 0.10), email("e@external.com", 0.05, 20), email("f@external.com", 0.05, 30)],
        own=0.02,
    )
    rules = policy(
        tmp_path,
        """
        policies:
          - id: no_external_email
            when: {tool: send_email, args.to: {ends_with: "@external.com"}}
            action: deny
        """,
    )
    results = what_if(log, everything(log), rules)
    assert [result.run_id for result in results] == ["r1", "r2", "r3", "r4", "r5", "r6"]
    runs = by_id(results)
    # r1 stops at its email (seq 3): it spent search 0.10 + llm 0.50; not the email, the last llm,
    # nor its own 0.02. Recorded: 0.02 + 0.10 + 0.50 + 0.05 + 0.30 = 0.97.
    r1 = runs["r1"]
    assert r1.status_before == "succeeded"
    assert outcome(r1) == ("denied", 0.97, 0.60)
    assert actions(r1) == [
        (0, "handle", "allow", None),
        (1, "search", "allow", None),
        (2, "llm", "allow", None),
        (3, "send_email", "deny", "no_external_email"),
    ]
    assert [d.changed for d in r1.decisions] == [False, False, False, True]
    # r3 stops at its first action: nothing spent.
    assert outcome(runs["r3"]) == ("denied", 0.47, 0.0)
    # r6 stops at its first external email (seq 2): search 0.10 spent; the second email is not evaluated.
    assert outcome(runs["r6"]) == ("denied", 0.22, 0.10)
    assert len(runs["r6"].decisions) == 3
    for run_id in ("r2", "r4", "r5"):
        assert runs[run_id].identical
        assert runs[run_id].cost_after == runs[run_id].cost_before
    assert runs["r4"].status_after == "failed"

    report = ImpactReport.of(results)
    # before: 0.97 + 0.17 + 0.47 + 0.30 + 0.57 + 0.22 = 2.70
    # after:  0.60 + 0.17 + 0.00 + 0.30 + 0.57 + 0.10 = 1.74; saved 0.37 + 0.47 + 0.12 = 0.96
    assert report.cost_before == pytest.approx(2.70)
    assert report.cost_after == pytest.approx(1.74)
    assert report.cost_saved == pytest.approx(0.96)
    # decisions: r1 4 (0-3), r2 3, r3 2 (0-1), r4 3, r5 3, r6 3 (0-2) = 18
    assert (report.runs, report.actions, report.runs_affected, report.actions_changed) == (6, 18, 3, 3)
    [impact] = report.rules
    assert (impact.rule, impact.denied, impact.runs) == ("no_external_email", 3, 3)
    # succeeded before: all but r4 (5 of 6); after: r2 and r5 (2 of 6)
    assert report.success_rate_before == pytest.approx(5 / 6)
    assert report.success_rate_after == pytest.approx(2 / 6)


def test_terminate_after_three_tool_calls_charges_only_the_calls_that_ended(
    log: RunLog, tmp_path: Path
) -> None:
    sequential = [Call("llm", 10 * k, 0.1 * k) for k in range(1, 7)]  # seq k costs 0.1 * k
    record(log, "long", T0, sequential)
    # seq 3 runs from 30 to 130, still running when seq 5 begins at 50.
    overlapping = [
        Call("llm", 10, 0.1),
        Call("llm", 20, 0.2),
        Call("llm", 30, 0.3, duration=100),
        Call("llm", 40, 0.4),
        Call("llm", 50, 0.5),
    ]
    record(log, "parallel", T0 + HOUR, overlapping)
    record(log, "short", T0 + 2 * HOUR, [Call("llm", 10 * k, 0.1) for k in range(1, 5)])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: runaway
            when: {tool_calls_in_run: {gt: 3}}
            action: terminate
        """,
    )
    runs = by_id(what_if(log, everything(log), rules))
    # seq 5 is the first with tool_calls_in_run = 4 > 3: seq 1-4 spent 0.1 + 0.2 + 0.3 + 0.4 = 1.0
    # of the recorded 0.1 + ... + 0.6 = 2.1.
    long = runs["long"]
    assert outcome(long) == ("terminated", 2.1, 1.0)
    assert actions(long)[-1] == (5, "llm", "terminate", "runaway")
    assert len(long.decisions) == 6
    # The stop comes at 50, before seq 3 (30 to 130) ended: 0.1 + 0.2 + 0.4 = 0.7 of 1.5 recorded.
    assert outcome(runs["parallel"]) == ("terminated", 1.5, 0.7)
    assert runs["short"].identical
    [impact] = ImpactReport.of(runs.values()).rules
    assert (impact.rule, impact.terminated, impact.runs) == ("runaway", 2, 2)


def test_cost_today_counts_spend_on_the_recorded_clock_across_runs(log: RunLog, tmp_path: Path) -> None:
    day2 = T0 + 24 * HOUR
    record(log, "a", T0, [Call("llm", 10, 0.6)])  # 09:00
    record(log, "a2", T0 + 0.5 * HOUR, [Call("export", 10, 5.0)])  # 09:30, denied now: its 5.0 never spent
    # 09:20: a long llm (09:30 to 10:30) still runs when export is denied at 09:40: its 2.0 never counts.
    record(log, "a3", T0 + HOUR / 3, [Call("llm", 600, 2.0, duration=HOUR), Call("export", 1200, 5.0)])
    record(log, "x", T0 + HOUR, [Call("llm", 10, 0.3)])  # 10:00, not selected: its recorded 0.3 counts
    # f and b overlap: f begins first (10:58) but calls llm at 11:20, after b's llm (11:10) ended.
    record(log, "f", T0 + 2 * HOUR - 120, [Call("search", 10, 0.0), Call("llm", 22 * 60, 0.5)])
    record(log, "b", T0 + 2 * HOUR - 60, [Call("search", 10, 0.0), Call("llm", 11 * 60, 0.2)])
    record(log, "d", T0 + 3 * HOUR, [Call("llm", 10, 0.2)], agent="other")
    record(log, "c", day2 - 1.5 * HOUR, [Call("llm", 10, 0.4)])  # 2024-03-05 07:30
    rules = policy(
        tmp_path,
        """
        defaults: {timezone: UTC}
        policies:
          - id: daily_budget
            when: {tool: llm, cost_today: {gt: 1.0}}
            action: deny
          - id: no_export
            when: {tool: export}
            action: deny
        """,
    )
    selected = [run for run in everything(log) if run.run_id != "x"]
    selected.reverse()  # the clock, not the order given, decides what was spent first
    runs = by_id(what_if(log, selected, rules))
    assert outcome(runs["a2"]) == ("denied", 5.0, 0.0)
    assert outcome(runs["a3"]) == ("denied", 7.0, 0.0)
    # b's llm: a 0.6 + x 0.3 = 0.9, not over 1.0 (a2's 5.0 or a3's 2.0 would have been).
    assert runs["b"].identical
    # f's llm: a 0.6 + x 0.3 + b 0.2 = 1.1 > 1.0.
    f = runs["f"]
    assert outcome(f) == ("denied", 0.5, 0.0)
    assert actions(f)[-1] == (2, "llm", "deny", "daily_budget")
    # d: another agent, nothing spent today; c: the next day, the count starts again.
    assert runs["d"].identical
    assert runs["c"].identical
    assert [result.run_id for result in what_if(log, selected, rules)] == [run.run_id for run in selected]


def test_modify_is_counted_and_the_run_goes_on(log: RunLog, tmp_path: Path) -> None:
    record(log, "r", T0, [Call("search", 10, 0.1, args={"q": "x", "limit": 50}), Call("llm", 20, 0.4)])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: cap
            when: {tool: search, args.limit: {gt: 10}}
            action: modify
            clamp: {args.limit: {max: 10}}
        """,
    )
    [result] = what_if(log, everything(log), rules)
    assert actions(result)[1] == (1, "search", "modify", "cap")
    assert result.decisions[1].modified_by == ("cap",)
    assert outcome(result) == ("succeeded", 0.5, 0.5)
    assert len(result.decisions) == 3
    [impact] = ImpactReport.of([result]).rules
    assert (impact.rule, impact.modified, impact.denied) == ("cap", 1, 0)


def test_rules_see_the_arguments_as_requested_before_a_modify(log: RunLog, tmp_path: Path) -> None:
    modified = [{"phase": "before", "rule": "old_cap", "action": "modify", "decided": True}]
    call = Call("search", 10, 0.1, args={"limit": 10}, requested={"limit": 50}, decisions=modified)
    record(log, "r", T0, [call, Call("llm", 20, 0.4)])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: no_big_search
            when: {tool: search, args.limit: {gt: 20}}
            action: deny
        """,
    )
    [result] = what_if(log, everything(log), rules)
    assert result.decisions[1].recorded == "modify"
    assert result.decisions[1].action == "deny"
    assert outcome(result) == ("denied", 0.5, 0.0)


def test_an_output_rule_stops_the_run_after_the_call_which_is_still_charged(
    log: RunLog, tmp_path: Path
) -> None:
    calls = [Call("search", 10, 0.1), Call("fetch", 20, 0.3, result={"flagged": True}), Call("llm", 30, 0.5)]
    record(log, "flagged", T0, calls, own=0.05)
    record(log, "clean", T0 + HOUR, [Call("fetch", 10, 0.3, result={"flagged": False})])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: flagged_page
            when: {tool: fetch, output.flagged: true}
            action: deny
        """,
    )
    runs = by_id(what_if(log, everything(log), rules))
    flagged = runs["flagged"]
    # fetch ran: search 0.1 + fetch 0.3 = 0.4 spent; llm and the run's own 0.05 not (recorded 0.95).
    assert outcome(flagged) == ("denied", 0.95, 0.4)
    assert actions(flagged)[1:] == [(1, "search", "allow", None), (2, "fetch", "deny", "flagged_page")]
    assert runs["clean"].identical


def test_a_call_an_output_rule_stopped_in_the_recording_is_judged_on_its_output_again(
    log: RunLog, tmp_path: Path
) -> None:
    # Recorded: fetch returned {"flagged": true} and an output rule denied it, ending the run there.
    stopped = [{"phase": "after", "rule": "old_rule", "action": "deny", "decided": True}]
    calls = [
        Call("search", 10, 0.1),
        Call("fetch", 20, 0.3, result={"flagged": True}, status="denied", decisions=stopped),
    ]
    record(log, "old", T0, calls, own=0.05, status="denied")
    rules = policy(
        tmp_path,
        """
        policies:
          - id: new_rule
            when: {tool: fetch, output.flagged: true}
            action: log
        """,
    )
    [result] = what_if(log, everything(log), rules)
    # Its output is known, so the new output rule sees it: logged instead of denied. A recorded
    # "denied" fetch counts no actual cost; the run keeps its recorded status and cost (0.1 + 0.05).
    assert actions(result)[1:] == [(1, "search", "allow", None), (2, "fetch", "log", "new_rule")]
    assert result.decisions[2].recorded == "deny"
    assert outcome(result) == ("denied", 0.15, 0.15)


def test_an_output_rule_on_the_top_level_call_sees_the_run_output(log: RunLog, tmp_path: Path) -> None:
    record(log, "leaky", T0, [Call("llm", 10, 0.4)], own=0.1, output={"text": "secret"})
    record(log, "fine", T0 + HOUR, [Call("llm", 10, 0.4)], own=0.1, output={"text": "hello"})
    rules = policy(
        tmp_path,
        """
        policies:
          - id: leak
            when: {tool: handle, output.text: secret}
            action: terminate
          - id: note
            when: {tool: handle, output.text: hello}
            action: log
        """,
    )
    runs = by_id(what_if(log, everything(log), rules))
    leaky = runs["leaky"]
    # The top-level call ran to its end: everything was spent, 0.1 + 0.4.
    assert outcome(leaky) == ("terminated", 0.5, 0.5)
    assert actions(leaky) == [(0, "handle", "terminate", "leak"), (1, "llm", "allow", None)]
    assert actions(runs["fine"])[0] == (0, "handle", "log", "note")
    assert runs["fine"].status_after == "succeeded"


def test_require_approval_is_counted_and_taken_as_granted(log: RunLog, tmp_path: Path) -> None:
    record(log, "r", T0, [email("a@example.com", 0.05, 10), Call("llm", 20, 0.4)])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: ask_ops
            when: {tool: send_email}
            action: require_approval
            approvers: [ops]
        """,
    )
    [result] = what_if(log, everything(log), rules)
    assert actions(result) == [
        (0, "handle", "allow", None),
        (1, "send_email", "require_approval", "ask_ops"),
        (2, "llm", "allow", None),
    ]
    assert outcome(result) == ("succeeded", 0.45, 0.45)
    [impact] = ImpactReport.of([result]).rules
    assert (impact.rule, impact.approval, impact.runs) == ("ask_ops", 1, 1)


def test_a_call_denied_in_the_recording_and_allowed_now_counts_as_free(log: RunLog, tmp_path: Path) -> None:
    denied = [{"phase": "before", "rule": "old_rule", "action": "deny", "decided": True}]
    refused = Call("send_email", 20, 0.05, duration=None, status="denied", decisions=denied)
    record(log, "r", T0, [Call("search", 10, 0.1, decisions=ALLOWED), refused], status="denied")
    rules = policy(
        tmp_path,
        """
        policies:
          - id: unrelated
            when: {tool: shell}
            action: deny
        """,
    )
    [result] = what_if(log, everything(log), rules)
    assert [(d.action, d.recorded, d.changed) for d in result.decisions] == [
        ("allow", "allow", False),
        ("allow", "allow", False),
        ("allow", "deny", True),
    ]
    # Not stopped: it ends as recorded, having spent search's 0.1.
    assert outcome(result) == ("denied", 0.1, 0.1)
    assert not result.identical


def test_time_rules_read_the_recorded_time_in_the_policy_time_zone(log: RunLog, tmp_path: Path) -> None:
    # 03:30 UTC is 22:30 on Sunday in New York (UTC-5 until 10 March); 09:00 UTC is 04:00 on Monday.
    record(log, "early_utc", T0 - 5.5 * HOUR, [Call("llm", 10, 0.2)])
    record(log, "early_ny", T0, [Call("llm", 10, 0.2)])
    text = """
        defaults: {{timezone: {zone}}}
        policies:
          - id: night
            when: {{tool: llm, time.hour: {{lt: 6}}}}
            action: deny
          - id: sunday
            when: {{tool: handle, time.weekday: 6}}
            action: log
        """
    runs = everything(log)
    new_york = by_id(what_if(log, runs, policy(tmp_path, text.format(zone="America/New_York"), "ny.yaml")))
    assert actions(new_york["early_utc"]) == [(0, "handle", "log", "sunday"), (1, "llm", "allow", None)]
    assert actions(new_york["early_ny"]) == [(0, "handle", "allow", None), (1, "llm", "deny", "night")]
    utc = by_id(what_if(log, runs, policy(tmp_path, text.format(zone="UTC"), "utc.yaml")))
    assert actions(utc["early_utc"]) == [(0, "handle", "allow", None), (1, "llm", "deny", "night")]
    assert utc["early_ny"].identical


def test_same_call_and_cost_run_come_from_the_run_so_far(log: RunLog, tmp_path: Path) -> None:
    searches = [Call("search", 10 * k, 0.1, args={"q": q}) for k, q in enumerate("aaba", 1)]
    record(log, "repeats", T0, searches)
    record(log, "spender", T0 + HOUR, [Call("llm", 10 * k, 0.3) for k in range(1, 4)])
    rules = policy(
        tmp_path,
        """
        policies:
          - id: third_time
            when: {tool: search, same_call_in_run: {gte: 2}}
            action: deny
          - id: budget
            when: {tool: llm, cost_run: {gt: 0.5}}
            action: terminate
        """,
    )
    runs = by_id(what_if(log, everything(log), rules))
    # q = a, a, b, a: the fourth is the third "a" (two before it); 0.1 * 3 spent.
    assert actions(runs["repeats"])[-1] == (4, "search", "deny", "third_time")
    assert outcome(runs["repeats"]) == ("denied", 0.4, 0.3)
    # The third llm sees 0.3 + 0.3 = 0.6 > 0.5 spent.
    assert actions(runs["spender"])[-1] == (3, "llm", "terminate", "budget")
    assert outcome(runs["spender"]) == ("terminated", 0.9, 0.6)


def test_a_denied_top_level_call_stops_the_run_before_anything(log: RunLog, tmp_path: Path) -> None:
    record(log, "r", T0, [Call("llm", 10, 0.4)], agent="intruder", own=0.1, input={"user": "mallory"})
    record(log, "ok", T0 + HOUR, [Call("llm", 10, 0.4)], input={"user": "alice"})
    rules = {"policies": [{"id": "ban", "when": {"input.user": "mallory"}, "action": "deny"}]}
    runs = by_id(what_if(log, everything(log), rules))
    assert actions(runs["r"]) == [(0, "handle", "deny", "ban")]
    assert outcome(runs["r"]) == ("denied", 0.5, 0.0)
    assert runs["ok"].identical


def test_a_run_still_running_is_evaluated_too(log: RunLog, tmp_path: Path) -> None:
    record(log, "crashed", T0, [Call("llm", 10, 0.4), Call("shell", 20, 0.2)], status="running")
    rules = parse_policies({"policies": [{"id": "no_shell", "when": {"tool": "shell"}, "action": "deny"}]})
    [result] = what_if(log, everything(log), rules)
    # Its recorded actions spent 0.4 + 0.2; the shell call is denied now, so 0.4.
    assert result.status_before == "running"
    assert outcome(result) == ("denied", 0.6, 0.4)
    assert actions(result)[-1] == (2, "shell", "deny", "no_shell")


def test_policies_from_several_files_and_bad_files(log: RunLog, tmp_path: Path) -> None:
    record(log, "r", T0, [Call("shell", 10, 0.0)])
    first = policy(tmp_path, "policies: [{id: a, when: {tool: llm}, action: deny}]\n", "a.yaml")
    second = policy(tmp_path, "policies: [{id: b, when: {tool: shell}, action: deny}]\n", "b.yaml")
    [result] = what_if(log, everything(log), [first, second])
    assert actions(result)[-1] == (1, "shell", "deny", "b")
    broken = policy(tmp_path, "policies: [{id: c, action: explode}]\n", "broken.yaml")
    with pytest.raises(PolicyConfigError):
        what_if(log, everything(log), broken)
    assert what_if(log, [], second) == []


EMPTY = parse_policies({"policies": []})
NEVER = {  # rules that read every fact, on the virtual clock too, and never match
    "policies": [
        {"id": f"never_{index}", "when": when, "action": "deny"}
        for index, when in enumerate(
            [
                {"cost_today": {"lt": 0}},
                {"cost_run": {"lt": 0}},
                {"same_call_in_run": {"gt": 99}},
                {"tool_calls_in_run": {"gt": 99}},
                {"time.hour": {"gt": 23}},
                {"args.a": {"gt": 99}},
                {"input.never": True},
                {"labels.never": True},
                {"output.never": True},
            ]
        )
    ]
}

calls = st.lists(
    st.tuples(
        st.sampled_from(["search", "llm", "send_email"]),
        st.floats(0, 100),  # gap before the call
        st.floats(0, 5),  # cost
        st.none() | st.floats(0, 50),  # duration
        st.sampled_from(["succeeded", "failed", "cancelled"]),
        st.dictionaries(st.sampled_from("abc"), st.integers(0, 2), max_size=2),
    ),
    max_size=6,
)
recordings = st.lists(
    st.tuples(
        calls,
        st.sampled_from(["succeeded", "failed", "running", "terminated"]),
        st.floats(0, 2),
        st.floats(0, 3 * 86_400),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recordings)
def test_an_empty_policy_or_one_that_never_matches_changes_nothing(recorded: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder, RunLog(Path(folder) / "runs.db", pii=False) as run_log:
        for index, (spec, status, own, offset) in enumerate(recorded):
            at, sequence = 0.0, []
            for tool, gap, cost, duration, call_status, args in spec:
                at += gap
                sequence.append(Call(tool, at, cost, duration, args, status=call_status))
            record(run_log, f"r{index}", T0 + offset, sequence, status=status, own=own)
        for policies in (EMPTY, NEVER):
            for result in what_if(run_log, everything(run_log), policies):
                assert result.identical
                assert result.status_after == result.status_before
                assert result.cost_after == result.cost_before
                assert not any(decision.changed for decision in result.decisions)


# -- the clock, what each action shows the rules, and the fast path against a straightforward one


def test_on_the_clock_a_run_waits_for_earlier_steps_and_at_the_same_time_for_runs_given_before(
    log: RunLog, tmp_path: Path
) -> None:
    # x: "a1" begins first, but "b1" (begun at +5) spends 1.0 at +6, before a1's llm at +10.
    record(log, "b1", T0 + 5, [Call("llm", 1, 1.0, duration=0.0)], agent="x")
    record(log, "a1", T0, [Call("llm", 10, 0.1)], agent="x")
    # y: "b2" spends 1.0 at +110, the very time a2's llm begins; b2 is given first, so it goes first.
    record(log, "b2", T0 + 100, [Call("llm", 10, 1.0, duration=0.0)], agent="y")
    record(log, "a2", T0 + 101, [Call("search", 1, 0.0), Call("llm", 9, 0.1)], agent="y")
    rules = policy(
        tmp_path,
        """
        defaults: {timezone: UTC}
        policies:
          - id: daily_budget
            when: {tool: llm, cost_today: {gt: 0.5}}
            action: deny
        """,
    )
    selected = {run.run_id: run for run in everything(log)}
    runs = by_id(what_if(log, [selected[run_id] for run_id in ("b1", "b2", "a1", "a2")], rules))
    assert runs["b1"].identical
    assert runs["b2"].identical
    assert actions(runs["a1"])[-1] == (1, "llm", "deny", "daily_budget")
    assert actions(runs["a2"])[-1] == (2, "llm", "deny", "daily_budget")


def test_rules_see_the_service_and_agent_each_action_was_recorded_with(log: RunLog, tmp_path: Path) -> None:
    record(log, "r", T0, input={"user": "bob"})
    calls = [
        ("llm", "svc", "bot"),
        ("llm", "ops", "bot"),
        ("search", "svc", "admin"),
        ("fetch", "svc", "bot"),
    ]
    for seq, (tool, service, agent) in enumerate(calls, 1):
        log.action("r", seq, tool, service, agent, T0 + seq, 1.0, "succeeded", {})
    rules = policy(
        tmp_path,
        """
        policies:
          - {id: ops, when: {tool: llm, service: ops}, action: log}
          - {id: admin, when: {tool: search, agent: admin}, action: log}
          - {id: bob, when: {tool: fetch, input.user: bob}, action: log}
        """,
    )
    [result] = what_if(log, everything(log), rules)
    assert [decision.rule for decision in result.decisions] == [None, None, "ops", "admin", "bob"]


def test_the_lean_reads_give_what_the_records_hold(log: RunLog) -> None:
    record(log, "b", T0 + HOUR, [Call("llm", 10, 0.2), Call("search", 20, 0.1, args={"q": "x"})])
    record(log, "a", T0, [Call("llm", 10, 0.4)], status="running")
    record(log, "c", T0 + 2 * HOUR)
    runs = everything(log)
    columns = ("seq", "tool", "args", "actual_cost")
    wanted = ["c", "missing", "b", "a"]
    got = list(log.action_rows(wanted, columns))
    assert got == [[(a.run_id, a.seq, a.tool, a.args, a.actual_cost) for a in log.actions(i)] for i in wanted]
    assert [len(rows) for rows in got] == [0, 0, 2, 1]
    assert list(log.action_rows([], columns)) == []
    rows = log.run_rows(("run_id", "ended", "cost"), since=T0, until=T0 + 2 * HOUR)
    assert rows == [(run.run_id, run.ended, run.cost) for run in runs if run.run_id != "c"]
    assert rows[0] == ("a", None, 0.4)  # a run that never ended cost what its actions did
    with pytest.raises(ValueError, match="effects; DROP"):
        list(log.action_rows(["a"], ("seq", "effects; DROP")))
    with pytest.raises(ValueError, match="nothing"):
        log.run_rows(("nothing",), since=T0, until=T0 + HOUR)


@dataclass
class _State:
    """One run in the reference walk."""

    run: RunRecord
    actions: list[ActionRecord]
    input: Any
    next: int = 0  # 0: the top-level call; n: action n - 1
    stop: float | None = None
    status: str = ""
    cost: float = 0.0
    recorded: float = 0.0
    spent: float = 0.0
    ended: list[tuple[float, float]] = field(default_factory=list)
    held: int = 0  # the estimates of the run's calls still running, in billionths
    holds: list[tuple[float, int]] = field(default_factory=list)  # (end, billionths)
    seen: dict[tuple[str, Any], int] = field(default_factory=dict)
    decisions: list[ActionDecision] = field(default_factory=list)
    top: Verdict | None = None
    top_facts: Facts | None = None


def reference(log: RunLog, runs: Sequence[RunRecord], rules: RuleSet) -> list[ReplayResult]:
    """What-if the plain way: a fresh Facts with every fact for each action, runs one step at a time
    on one clock, and the spend of each day from a heap of charges. A call allowed to run holds its
    estimate in cost_today and cost_run from its start to its end, as live calls do; sums are kept
    in billionths, as live ledgers keep them."""
    zone = ZoneInfo(rules.defaults.timezone) if rules.defaults.timezone else None
    after = rules.after
    charges: dict[tuple[str, str], list[tuple[float, int, float, _State | None, bool]]] = {}
    days: dict[tuple[str, str], list[float]] = {}  # [midnight, next midnight, spent]
    held: dict[tuple[str, str], int] = {}  # estimates held now, whatever the day
    order = itertools.count()

    def midnights(at: float) -> tuple[float, float]:
        date = datetime.fromtimestamp(at, zone).date()
        start = datetime.combine(date, time(), zone).timestamp()
        return start, datetime.combine(date + timedelta(days=1), time(), zone).timestamp()

    def charge(key: tuple[str, str], at: float, amount: float, state: _State | None = None) -> None:
        heapq.heappush(charges.setdefault(key, []), (at, next(order), amount, state, False))

    def hold(key: tuple[str, str], start: float, end: float, estimate: float) -> None:
        units = round(estimate * 1e9)
        heapq.heappush(charges.setdefault(key, []), (start, next(order), units, None, True))
        heapq.heappush(charges.setdefault(key, []), (end, next(order), -units, None, True))

    def today(key: tuple[str, str], at: float) -> float:
        day = days.get(key)
        if day is None or not day[0] <= at < day[1]:
            day = days[key] = [*midnights(at), 0]
        heap = charges.get(key, [])
        while heap and heap[0][0] <= at:
            when, _, amount, state, is_held = heapq.heappop(heap)
            if is_held:
                held[key] = held.get(key, 0) + int(amount)
            elif when >= day[0] and (state is None or state.stop is None or when <= state.stop):
                day[2] += round(amount * 1e9)
        return (day[2] + held.get(key, 0)) / 1_000_000_000

    def reads(tool: str) -> frozenset[str]:
        later = after.candidates(tool) if after is not None else ()
        return frozenset().union(*(rule.uses for rule in (*rules.candidates(tool), *later)))

    def recorded_of(text: str | None) -> tuple[str, bool]:
        items = json.loads(text) if text else []
        # A call an output rule stopped in the recording had returned: its output is known.
        stopped = any(
            item.get("decided")
            and item.get("phase") == "after"
            and item.get("action") in ("deny", "terminate")
            for item in items
        )
        return effective_action(items)[0], stopped

    def made(seq: int, tool: str, decided: Verdict, verdict: Verdict, recorded: str) -> ActionDecision:
        rule = None if decided.rule is None else decided.rule.id
        patches = tuple(patch.id for patch in verdict.patches)
        return ActionDecision(seq, tool, str(decided.action), rule, recorded, patches)

    def stopped(state: _State, verdict: Verdict, at: float, charged: int) -> bool:
        state.stop, state.status = at, "denied" if verdict.action == "deny" else "terminated"
        state.cost = 0.0
        for action in state.actions[:charged]:
            if action.actual_cost and action.started + (action.duration or 0.0) <= at:
                state.cost += action.actual_cost
        return True

    def begin(state: _State) -> bool:
        run = state.run
        facts = Facts(
            agent=run.agent,
            service=run.service,
            tool=run.tool,
            args=state.input,
            input=state.input,
            cost=run.estimated_cost or 0.0,
            cost_run=0.0,
            tool_calls_in_run=0,
            same_call_in_run=0,
            labels=decode(run.labels),
            now=datetime.fromtimestamp(run.started, zone),
        )
        if "cost_today" in reads(run.tool):
            facts.cost_today = today((run.service, run.agent), run.started)
        state.top, state.top_facts = rules.evaluate(facts), facts
        if state.top.action in ("deny", "terminate"):
            return stopped(state, state.top, run.started, 0)
        if run.estimated_cost:
            hold((run.service, run.agent), run.started, run.ended or run.started, run.estimated_cost)
        return False

    def step(state: _State, index: int) -> bool:
        action = state.actions[index]
        text = action.requested_args or action.args
        key = (action.tool, text)
        facts = Facts(
            agent=action.agent,
            service=action.service,
            tool=action.tool,
            args=decode(text),
            input=state.input,
            cost=action.estimated_cost or 0.0,
            tool_calls_in_run=index,
            same_call_in_run=state.seen.get(key, 0),
            labels=decode(action.labels),
            now=datetime.fromtimestamp(action.started, zone),
        )
        state.seen[key] = state.seen.get(key, 0) + 1
        if "cost_run" in reads(action.tool):
            open_ = []
            for end, cost in state.ended:
                if end <= action.started:
                    state.spent += cost
                else:
                    open_.append((end, cost))
            state.ended = open_
            still = [(end, units) for end, units in state.holds if end > action.started]
            state.held -= sum(units for end, units in state.holds if end <= action.started)
            state.holds = still
            facts.cost_run = (
                (round(state.spent * 1e9) + state.held) / 1_000_000_000 if state.holds else state.spent
            )
        if "cost_today" in reads(action.tool):
            facts.cost_today = today((action.service, action.agent), action.started)
        verdict = rules.evaluate(facts)
        recorded, stopped_after = recorded_of(action.decisions)
        if verdict.action in ("deny", "terminate"):
            state.decisions.append(made(action.seq, action.tool, verdict, verdict, recorded))
            if recorded == verdict.action:  # refused then too: the run went on as recorded
                return False
            return stopped(state, verdict, action.started, index)
        end = action.started + (action.duration or 0.0)
        if action.estimated_cost:
            units = round(action.estimated_cost * 1e9)
            state.held += units
            state.holds.append((end, units))
            hold((action.service, action.agent), action.started, end, action.estimated_cost)
        if action.actual_cost:
            state.ended.append((end, action.actual_cost))
            charge((action.service, action.agent), end, action.actual_cost, state)
        decided = verdict
        if after is not None and (action.status == "succeeded" or stopped_after):
            facts.output = decode(action.result)
            late = after.evaluate(facts)
            if late.action in ("deny", "terminate"):
                state.decisions.append(made(action.seq, action.tool, late, verdict, recorded))
                return stopped(state, late, end, index + 1)
            if late.action == "log" and verdict.action == "allow":
                decided = late
        state.decisions.append(made(action.seq, action.tool, decided, verdict, recorded))
        return False

    def finish(state: _State) -> ReplayResult:
        run = state.run
        assert state.top is not None
        assert state.top_facts is not None
        decided = state.top
        recorded, stopped_after = recorded_of(run.decisions)
        if state.stop is None:
            if after is not None and run.ended is not None and (run.status == "succeeded" or stopped_after):
                state.top_facts.output = decode(run.output)
                late = after.evaluate(state.top_facts)
                if late.action in ("deny", "terminate"):
                    decided, state.status = late, "denied" if late.action == "deny" else "terminated"
                elif late.action == "log" and state.top.action == "allow":
                    decided = late
            if run.actual_cost and run.ended is not None:
                charge((run.service, run.agent), run.ended, run.actual_cost)
        top = made(0, run.tool, decided, state.top, recorded)
        return ReplayResult(
            run.run_id,
            "what-if",
            run.status,
            state.status,
            state.recorded,
            state.cost,
            (top, *state.decisions),
        )

    states = []
    for run in runs:
        actions = log.actions(run.run_id)
        state = _State(run, actions, decode(run.input), status=run.status, cost=run.cost, recorded=run.cost)
        if run.status == "running":
            state.cost = state.recorded = sum(action.actual_cost or 0.0 for action in actions)
        states.append(state)
    if states:  # the recorded spend of the runs not walked, in the days the walks cover
        first = min(state.run.started for state in states)
        last = max(max(s.run.started, s.actions[-1].started if s.actions else 0.0) for s in states)
        walked = {run.run_id for run in runs}
        others = log.runs(since=midnights(first)[0] - 86_400, until=last, limit=None, oldest_first=True)
        others = [run for run in others if run.run_id not in walked]
        for run in others:
            if run.estimated_cost:
                hold((run.service, run.agent), run.started, run.ended or run.started, run.estimated_cost)
            if run.actual_cost and run.ended is not None:
                charge((run.service, run.agent), run.ended, run.actual_cost)
        for run in others:
            for action in log.actions(run.run_id):
                if action.estimated_cost and action.status != "denied":
                    end = action.started + (action.duration or 0.0)
                    hold((action.service, action.agent), action.started, end, action.estimated_cost)
                if action.actual_cost:
                    charge(
                        (action.service, action.agent),
                        action.started + (action.duration or 0.0),
                        action.actual_cost,
                    )
    results: dict[int, ReplayResult] = {}
    clock = [(state.run.started, index) for index, state in enumerate(states)]
    heapq.heapify(clock)
    while clock:  # one step at a time: the earliest next step of any run, then the run given first
        _, index = heapq.heappop(clock)
        state = states[index]
        over = begin(state) if state.next == 0 else step(state, state.next - 1)
        state.next += 1
        if over or state.next > len(state.actions):
            results[index] = finish(state)
        else:
            heapq.heappush(clock, (state.actions[state.next - 1].started, index))
    return [results[index] for index in range(len(states))]


WHO = st.sampled_from([("svc", "bot"), ("svc", "bot"), ("svc", "other"), ("ops", "bot")])
RECORDED: list[Sequence[Any]] = [
    (),
    ALLOWED,
    [{"phase": "before", "rule": "old", "action": "deny", "decided": True}],
    [{"phase": "before", "rule": "old", "action": "log", "decided": True}],
    [{"phase": "after", "rule": "old", "action": "terminate", "decided": True}],
]
RULE_POOL: list[tuple[Callable[[float], dict[str, Any]], str]] = [  # a rule's when, from a threshold
    (lambda x: {"cost_today": {"gt": x}}, "deny"),
    (lambda x: {"tool": "llm", "cost_today": {"gt": x}}, "terminate"),
    (lambda x: {"cost_run": {"gt": x}}, "terminate"),
    (lambda x: {"tool": "search", "same_call_in_run": {"gte": x}}, "deny"),
    (lambda x: {"tool_calls_in_run": {"gt": x + 2}}, "terminate"),
    (lambda x: {"time.hour": {"lt": 6 * x}}, "log"),
    (lambda x: {"tool": "send_email", "args.a": {"gt": x}}, "modify"),
    (lambda x: {"tool": "handle", "input.k": {"gt": x}}, "deny"),
    (lambda x: {"tool": "handle", "args.k": {"gt": x}}, "log"),
    (lambda x: {"input.k": {"gt": x}, "tool": "llm"}, "log"),
    (lambda x: {"labels.pii": True}, "deny"),
    (lambda x: {"tool": "search", "output.n": {"gt": x}}, "terminate"),
    (lambda x: {"tool": "handle", "output.n": {"gt": x}}, "deny"),
    (lambda x: {"tool": "llm", "output.n": {"gt": x}}, "log"),
    (lambda x: {"cost": {"gt": x}}, "require_approval"),
    (lambda x: {"agent": "other", "cost": {"gt": x}}, "log"),
    (lambda x: {"service": "ops", "tool": "send_email"}, "deny"),
]
steps = st.lists(
    st.fixed_dictionaries(
        {
            "tool": st.sampled_from(["search", "llm", "send_email"]),
            # after the action before it (seconds): many at the same times as others, some back in time
            "gap": st.integers(0, 30) | st.integers(-20, 90) | st.floats(0, 200),
            # Spend is counted in billionths of a unit (proctor._numbers.to_units): finer costs round.
            "cost": st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.7]) | st.floats(0, 3).map(lambda c: round(c, 9)),
            "duration": st.none() | st.sampled_from([0.0, 30.0, 60.0]) | st.floats(0, 400),
            "status": st.sampled_from(["succeeded", "succeeded", "failed", "denied"]),
            "args": st.fixed_dictionaries({"a": st.integers(0, 3)}),
            "requested": st.none() | st.just({"a": 3}),
            "labels": st.none() | st.just({"pii": True}),
            "result": st.integers(0, 3),
            "decisions": st.sampled_from(RECORDED),
            "who": st.none() | st.none() | WHO,
        }
    ),
    max_size=6,
)
runs_recorded = st.lists(
    st.fixed_dictionaries(
        {
            "steps": steps,
            "at": st.integers(0, 60) | st.floats(0, 2 * 86_400),  # seconds after T0
            "who": WHO,
            "status": st.sampled_from(["succeeded", "failed", "running", "denied"]),
            "own": st.sampled_from([0.0, 0.1, 0.5]),
            "output": st.integers(0, 3),
            "input": st.integers(0, 2),
            "decisions": st.sampled_from(RECORDED),
        }
    ),
    min_size=1,
    max_size=6,
)
RULES = st.lists(  # rules of the pool, with their thresholds
    st.tuples(st.integers(0, len(RULE_POOL) - 1), st.sampled_from([0, 0.15, 0.3, 0.6, 1, 2, 4])), max_size=5
)


def record_spec(log: RunLog, run_id: str, spec: dict[str, Any]) -> None:
    """Record a run drawn by ``runs_recorded``; its actions may have another service or agent."""
    start = T0 + spec["at"]
    service, agent = spec["who"]
    log.run_started(
        run_id,
        service=service,
        agent=agent,
        tool="handle",
        function="app.handle",
        started=start,
        input={"k": spec["input"]},
    )
    at, total = start, 0.0
    for seq, step in enumerate(spec["steps"], 1):
        at += step["gap"]
        cost = None if step["status"] == "denied" else step["cost"]
        step_service, step_agent = step["who"] or (service, agent)
        log.action(
            run_id,
            seq,
            tool=step["tool"],
            service=step_service,
            agent=step_agent,
            started=at,
            duration=step["duration"],
            status=step["status"],
            args=step["args"],
            requested_args=step["requested"],
            result={"n": step["result"]} if step["status"] == "succeeded" else NO_RESULT,
            labels=step["labels"],
            estimated_cost=step["cost"],
            actual_cost=cost,
            decisions=step["decisions"],
        )
        total += cost or 0.0
    if spec["status"] != "running":
        log.run_finished(
            run_id,
            status=spec["status"],
            ended=at + 60.0,
            output={"n": spec["output"]},
            estimated_cost=spec["own"],
            actual_cost=spec["own"],
            cost=spec["own"] + total,
            decisions=spec["decisions"],
        )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs_recorded, RULES, st.sampled_from(["UTC", "America/New_York", None]), st.data())
def test_what_if_gives_what_a_straightforward_walk_gives(
    recorded: list[dict[str, Any]], chosen: list[tuple[int, float]], zone: str | None, data: st.DataObject
) -> None:
    policies = []
    for index, (rule, threshold) in enumerate(chosen):
        when, action = RULE_POOL[rule]
        policy_rule: dict[str, Any] = {"id": f"r{index}", "when": when(threshold), "action": action}
        if action == "modify":
            policy_rule["clamp"] = {"args.a": {"max": 0}}
        policies.append(policy_rule)
    rules = parse_policies({"defaults": {"timezone": zone} if zone else {}, "policies": policies})
    with tempfile.TemporaryDirectory() as folder, RunLog(Path(folder) / "runs.db", pii=False) as run_log:
        for index, spec in enumerate(recorded):
            record_spec(run_log, f"r{index}", spec)
        runs = everything(run_log)
        selected = data.draw(st.permutations(runs))[: data.draw(st.integers(1, len(runs)))]
        assert what_if(run_log, selected, rules) == reference(run_log, selected, rules)


@settings(max_examples=200, deadline=None)
@example([(True, 3, 0.1), (True, 1, 1.0), (True, 1, 1.0), (True, 1, 1e16), (False, 3, 0.1)])  # ties
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 3) | st.integers(0, 150),  # half hours: often the same ones, over three days
            st.sampled_from([1.0, 1e16, 0.1, 0.3]),  # a float sum would depend on the order of adding
        )
    )
)
def test_an_account_counts_exactly_the_charges_due_that_day(
    operations: list[tuple[bool, int, float]],
) -> None:
    account = Account(lambda at: day_of(at, UTC))
    heap: list[tuple[float, int, float]] = []
    order = itertools.count()
    day = [math.inf, -math.inf, 0]  # [midnight, next midnight, spent in billionths]
    for is_charge, step, amount in operations:
        at = T0 + 1800.0 * step
        if is_charge:
            account.charge(at, amount)
            heapq.heappush(heap, (at, next(order), amount))
            continue
        if not day[0] <= at < day[1]:
            midnight = datetime.fromtimestamp(at, UTC).replace(hour=0, minute=0, second=0).timestamp()
            day = [midnight, midnight + 86_400, 0]
        while heap and heap[0][0] <= at:
            when, _, charged = heapq.heappop(heap)
            if when >= day[0]:
                day[2] += round(charged * 1e9)
        assert account.spent_at(at) == day[2] / 1_000_000_000
