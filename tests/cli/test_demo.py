"""`proctor demo`: every policy really rejects work, the numbers add up, and the command runs."""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from proctor._numbers import to_units
from proctor.cli.demo import (
    BATCH_QUOTA,
    LIMITS,
    POLICIES,
    Demo,
    DemoError,
    DemoResult,
    SessionLog,
    SharedDemo,
    SharedResult,
    plan_workloads,
    share,
    what_if_stricter,
)
from proctor.cli.main import cli
from proctor.runs import RunLog

AGENTS = ("batch", "chat", "analyst", "auditor", "research", "summariser")


@pytest.fixture(scope="module")
def result() -> DemoResult:
    return asyncio.run(Demo(seed=7, speed=10.0).run())


def test_six_agents_with_distinct_workloads(result: DemoResult) -> None:
    assert tuple(result.agents) == AGENTS
    assert len({agent.workload for agent in result.agents.values()}) == len(AGENTS)


def test_each_policy_rejects_some_work(result: DemoResult) -> None:
    for policy in POLICIES:
        assert sum(agent.rejected[policy] for agent in result.agents.values()) >= 1, policy
    agents = result.agents
    assert agents["batch"].rejected["rate"] >= 1
    assert agents["analyst"].rejected["access"] == result.analyst_confidential >= 1
    assert agents["auditor"].rejected["access"] == 0
    assert agents["research"].rejected["budget"] >= 1
    assert agents["chat"].stats.rejected == 0


def test_every_request_is_counted_once(result: DemoResult) -> None:
    for agent in result.agents.values():
        stats = agent.stats
        assert stats.granted + stats.rejected == agent.tasks == len(agent.waits), agent.agent_id
        assert sum(agent.rejected.values()) == stats.rejected, agent.agent_id
        assert stats.timed_out == stats.cancelled == 0
        assert 0.0 <= agent.mean_wait <= agent.p95_wait <= max(agent.waits)
    assert sum(result.burst_granted) == result.agents["batch"].stats.granted


def test_spend_stays_within_limits_and_matches_the_summary(result: DemoResult) -> None:
    for agent in result.agents.values():
        assert agent.limit is not None
        assert agent.spent <= agent.limit, agent.agent_id
        assert result.budget[agent.agent_id]["limit"] == agent.limit
        if agent.agent_id != "summariser":  # the others settle on their estimates
            assert agent.spent == pytest.approx(agent.reserved), agent.agent_id
    # The summariser's budget fits every call at its actual cost, and it reports those.
    summariser = result.agents["summariser"]
    assert summariser.stats.granted == summariser.tasks
    plan = next(plan for plan in plan_workloads(random.Random(7)) if plan.agent_id == "summariser")
    assert summariser.spent == pytest.approx(sum(call.actual_cost or 0.0 for call in plan.calls))
    assert summariser.spent < summariser.reserved


def test_the_same_seed_plans_the_same_workload() -> None:
    def facts(seed: int) -> list[tuple[object, ...]]:
        return [
            (plan.agent_id, call.think, call.duration, call.actual_cost, call.task.cost, call.task.labels)
            for plan in plan_workloads(random.Random(seed))
            for call in plan.calls
        ]

    assert facts(7) == facts(7)
    assert facts(7) != facts(8)


def test_the_demo_command_prints_a_row_per_agent_and_what_to_notice(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    outcome = CliRunner().invoke(cli, ["demo", "--speed", "10", "--db", str(db)], env={"COLUMNS": "120"})
    assert outcome.exit_code == 0, outcome.output
    results, _, recorded = outcome.output.partition("What to notice")
    rows = [line.split("│") for line in results.splitlines() if line.startswith("│")]
    assert [row[1].strip() for row in rows] == list(AGENTS)
    for policy in POLICIES:
        assert f"policy {policy!r} rejected agent" in outcome.output
    assert "bug in proctor" not in outcome.output
    # Every session is a run and every planned call an action: batch's 90 one-call sessions, one
    # session for each of the other five agents; 3 x 30 + 30 + 24 + 12 + 20 + 20 = 196 calls.
    assert f"Recorded 95 runs (one per agent session) with 196 LLM calls in {db}" in " ".join(
        recorded.split()
    )
    log = RunLog(db)
    try:
        runs = log.runs(limit=None)
        assert len(runs) == 95
        assert {run.agent for run in runs} == set(AGENTS)
        assert sum(len(log.actions(run.run_id)) for run in runs) == 196
    finally:
        log.close()
    assert "What if stricter rules had been in force?" in recorded
    assert "research-cost-cap" in recorded  # research's calls at 2-4 each: some cost over 3.5
    assert (tmp_path / "demo-stricter.yaml").exists()


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help(args: list[str]) -> None:
    outcome = CliRunner().invoke(cli, args)
    assert outcome.exit_code == 0, outcome.output
    assert "demo" in outcome.output


def what_if_figures(output: str) -> str:
    """The tables of the demo's what-if report (the figures, without the paths), spaces normalised."""
    report = output.partition("What if stricter rules had been in force?")[2]
    section = report.partition("Look at the runs")[0]
    assert "┏" in section, output
    return " ".join(section[section.index("┏") :].split())


def test_the_what_if_counts_only_this_demos_runs(tmp_path: Path) -> None:
    # Two demos record into one log; the second's what-if must be what its own runs alone give
    # (before, cost_today also counted the first demo's spend: 65.3% of runs succeeded, then 2.1%).
    db = tmp_path / "runs.db"
    args = ["demo", "--speed", "10", "--db", str(db)]
    assert CliRunner().invoke(cli, args, env={"COLUMNS": "120"}).exit_code == 0
    second_started = time.time()
    second = CliRunner().invoke(cli, args, env={"COLUMNS": "120"})
    assert second.exit_code == 0, second.output
    # The same runs in a log of their own: a copy of the database without the first demo's runs.
    alone = tmp_path / "alone" / "runs.db"
    alone.parent.mkdir()
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(alone)) as copy:
        source.backup(copy)
    output = io.StringIO()
    with SessionLog(alone) as log:
        assert log.prune(second_started) == 95
        what_if_stricter(Console(file=output, width=120, highlight=False), log, since=second_started)
    assert "batch-burst-guard" in what_if_figures(second.output)
    assert what_if_figures(second.output) == what_if_figures(output.getvalue())


@pytest.mark.parametrize("parts", [1, 3, 32])
def test_the_processes_share_every_call_exactly_once(parts: int) -> None:
    for plan in plan_workloads(random.Random(7)):
        shares = [share(plan, part, parts) for part in range(parts)]
        dealt = sorted((call for each in shares for call in each.calls), key=id)
        assert dealt == sorted(plan.calls, key=id), plan.agent_id
        if parts <= len(plan.calls):
            assert all(each.calls for each in shares), plan.agent_id  # every process plays the agent


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> SharedResult:
    directory = tmp_path_factory.mktemp("shared")
    demo = SharedDemo(
        seed=7, speed=10.0, processes=3, store_path=directory / "store.db", db=str(directory / "runs.db")
    )
    return demo.run()


def test_three_processes_play_every_agent_and_every_call(shared: SharedResult) -> None:
    assert len(shared.parts) == 3
    for part in shared.parts:
        assert set(part) == set(AGENTS)
        assert all(count.planned >= 1 for count in part.values())  # every agent calls from every process
    # Whatever the timing, the limits were used from several processes: one process has 30 of batch's
    # calls, fewer than the 36 of its quota that pass; and at most 7 of research's, under 4 each, while
    # its budget of 35 refuses a call of under 4 only after spend (settled or reserved) passed 31.
    for agent_id in ("batch", "research"):
        assert sum(part[agent_id].admitted >= 1 for part in shared.parts) >= 2, agent_id
    total = shared.total
    assert total.made == total.planned == 196
    assert total.made == total.admitted + sum(total.refused.values())


def test_the_shared_ledger_holds_exactly_what_the_processes_spent(shared: SharedResult) -> None:
    for agent_id, limit in shared.limits.items():
        assert shared.spent[agent_id] == shared.agent(agent_id).cost, agent_id  # to the billionth
        assert shared.spent[agent_id] <= to_units(limit), agent_id
        assert shared.reserved[agent_id] == 0, agent_id
    research = shared.agent("research")
    assert research.refused["budget"] >= 1  # the budget was reached, from three processes, and held
    assert shared.limits["research"] == LIMITS["research"]
    # The summariser reports actual costs below its estimates: the ledger settled on exactly those.
    plan = next(plan for plan in plan_workloads(random.Random(7)) if plan.agent_id == "summariser")
    assert shared.agent("summariser").admitted == len(plan.calls)
    assert shared.spent["summariser"] == sum(to_units(call.actual_cost or 0.0) for call in plan.calls)
    assert shared.spend_is_exact


def test_the_shared_rate_limit_admits_exactly_its_allowance(shared: SharedResult) -> None:
    batch = shared.agent("batch")
    assert batch.admitted == BATCH_QUOTA
    assert batch.refused["rate"] == batch.planned - BATCH_QUOTA
    assert shared.quota_left == 0
    assert shared.quota_is_exact


def test_the_demo_command_with_processes_shows_each_process_and_the_exact_ledger(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    args = ["demo", "--speed", "10", "--processes", "2", "--db", str(db)]
    outcome = CliRunner().invoke(cli, args, env={"COLUMNS": "120"})
    assert outcome.exit_code == 0, outcome.output
    tables, _, recorded = outcome.output.partition("Exact across processes")
    per_process = tables.partition("Per process")[2].partition("Per agent")[0]
    rows = [line.split("│") for line in per_process.splitlines() if line.startswith("│")]
    assert [row[1].strip() for row in rows] == ["1", "2", "total"]
    assert rows[-1][2].strip() == "196"  # calls made, in all
    text = " ".join(recorded.split())
    assert "equal to the billionth, every agent within its limit" in text
    assert f"exactly its allowance of {BATCH_QUOTA}" in text
    assert "bug in proctor" not in outcome.output
    assert f"with 196 LLM calls in {db}" in text
    assert "What if stricter rules had been in force?" in text


@pytest.mark.parametrize("value", ["0", "33", "two"])
def test_a_bad_number_of_processes_is_refused(value: str) -> None:
    outcome = CliRunner().invoke(cli, ["demo", "--processes", value])
    assert outcome.exit_code == 2
    assert "Invalid value for '--processes'" in outcome.output


def test_a_failing_process_is_reported_not_waited_for(tmp_path: Path) -> None:
    demo = SharedDemo(
        seed=7, speed=10.0, processes=2, store_path=tmp_path / "store.db", db="nosuch://run-log"
    )
    with pytest.raises(DemoError, match=r"process \d of the demo failed:(.|\n)*nosuch"):
        demo.run()
