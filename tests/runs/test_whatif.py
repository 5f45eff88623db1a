"""What-if on real run logs: recorded runs re-evaluated under new policy files, impact worked out by hand."""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.errors import PolicyConfigError
from proctor.rules import parse_policies
from proctor.runs.log import RunLog, RunRecord
from proctor.runs.result import ImpactReport, ReplayResult
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
