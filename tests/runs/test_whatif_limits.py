"""What-if replays a policy file's budgets and rate limits over recorded traffic."""

from __future__ import annotations

from pathlib import Path

from proctor.runs import RunLog
from proctor.runs.whatif import what_if

T0 = 1_709_542_800.0  # 2024-03-04 09:00 UTC


def record(log: RunLog, calls: list[tuple[str, float, float]], *, gap: float = 10.0) -> None:
    """One run per call (agent, estimate, actual), ``gap`` seconds apart, each taking one second."""
    for n, (agent, estimate, actual) in enumerate(calls):
        run_id = f"r{n}"
        started = T0 + n * gap
        log.run_started(
            run_id, service="svc", agent=agent, tool="ask", function="app.ask", started=started, input={}
        )
        log.run_finished(
            run_id,
            status="succeeded",
            ended=started + 1.0,
            estimated_cost=estimate,
            actual_cost=actual,
            cost=actual,
        )
    log.flush()


def decided(log: RunLog, policies: dict[str, object]) -> list[tuple[str, str | None]]:
    runs = log.runs(limit=None, oldest_first=True)
    return [(r.decisions[0].action, r.decisions[0].rule) for r in what_if(log, runs, policies)]


def test_a_budget_refuses_what_would_go_over_and_counts_actual_costs(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.5, 0.1)] * 8)
        policies = {"budgets": [{"id": "spend", "limit": 1.0}]}
        # Each reserves 0.5 and settles to 0.1: the 7th would bring 0.6 + 0.5 past 1.0.
        assert decided(log, policies) == [("allow", None)] * 6 + [("deny", "spend")] * 2


def test_budgets_keep_one_ledger_per_key_and_start_over_each_period(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.4, 0.4), ("b", 0.4, 0.4), ("a", 0.4, 0.4), ("a", 0.4, 0.4)], gap=20.0)
        per_agent = {"budgets": [{"id": "spend", "limit": 0.8, "period": 30}]}
        # a at 0 s spends 0.4; b has its own ledger; a at 40 s is in a new 30 s period; a at 60 s too.
        assert decided(log, per_agent) == [("allow", None)] * 4
        per_service = {"budgets": [{"id": "spend", "per": "service", "limit": 0.8}]}
        assert decided(log, per_service) == [("allow", None)] * 2 + [("deny", "spend")] * 2


def test_alert_and_downgrade_budgets_let_the_call_run(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.6, 0.6)] * 2)
        alert = {"budgets": [{"id": "watch", "limit": 1.0, "mode": "alert"}]}
        assert decided(log, alert) == [("allow", None), ("log", "watch")]
        cheaper = {"budgets": [{"id": "cheap", "limit": 1.0, "mode": "downgrade", "set": {"args.m": "s"}}]}
        assert decided(log, cheaper) == [("allow", None), ("modify", "cheap")]


def test_a_rate_limit_refuses_past_its_burst_and_refills(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.0, 0.0)] * 5, gap=10.0)  # at 0, 10, 20, 30 and 40 s
        policies = {"rate_limits": [{"id": "calls", "limit": 2, "period": 40}]}
        # Two tokens, one back every 20 s: 0 and 10 pass, 20 finds 1.0 (passes), 30 finds 0.5, 40 finds 1.0.
        assert decided(log, policies) == [
            ("allow", None),
            ("allow", None),
            ("allow", None),
            ("deny", "calls"),
            ("allow", None),
        ]


def test_a_budget_refusal_gives_the_rate_token_back(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.5, 0.5), ("a", 2.0, 2.0), ("a", 0.1, 0.1), ("a", 0.1, 0.1)], gap=1.0)
        policies = {
            "rate_limits": [{"id": "calls", "limit": 2, "period": "day"}],
            "budgets": [{"id": "spend", "limit": 1.0}],
        }
        assert decided(log, policies) == [
            ("allow", None),
            ("deny", "spend"),
            ("allow", None),
            ("deny", "calls"),
        ]


def test_the_logs_other_runs_take_their_tokens_in_time_order(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        record(log, [("a", 0.0, 0.0)] * 3, gap=10.0)  # at 0, 10 and 20 s
        policies = {"rate_limits": [{"id": "calls", "limit": 1, "period": 10}]}
        runs = log.runs(limit=None, oldest_first=True)
        # One token, back after 10 s: each run finds it whether the others are walked or only read.
        for selected in (runs, runs[:1], runs[1:2], runs[2:]):
            results = what_if(log, selected, policies)
            assert [r.decisions[0].action for r in results] == ["allow"] * len(selected)


def test_runs_the_recording_refused_take_no_token(tmp_path: Path) -> None:
    with RunLog(tmp_path / "runs.db", pii=False) as log:
        log.run_started(
            "refused", service="svc", agent="a", tool="ask", function="app.ask", started=T0, input={}
        )
        refusal = [{"phase": "limit", "rule": "calls", "action": "deny", "decided": True}]
        log.run_finished("refused", status="denied", ended=T0, decisions=refusal)
        log.run_started(
            "ran", service="svc", agent="a", tool="ask", function="app.ask", started=T0 + 1, input={}
        )
        log.run_finished("ran", status="succeeded", ended=T0 + 2)
        log.flush()
        policies = {"rate_limits": [{"id": "calls", "limit": 1, "period": "day"}]}
        [ran] = [run for run in log.runs(limit=None) if run.run_id == "ran"]
        assert what_if(log, [ran], policies)[0].decisions[0].action == "allow"
