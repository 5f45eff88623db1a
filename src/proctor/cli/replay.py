"""``proctor replay``: what other policies would have done to recorded runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from proctor.cli.runs import (
    AGE,
    CommandError,
    db_option,
    echo_json,
    format_option,
    make_console,
    open_log,
    status_text,
)
from proctor.db import Database
from proctor.errors import ConfigurationError, PolicyConfigError
from proctor.rules.ruleset import RuleSet
from proctor.rules.source import PolicySource
from proctor.runs.describe import money
from proctor.runs.log import RunLog, RunRecord
from proctor.runs.replay import replay as replay_run
from proctor.runs.result import DEFAULT_RULE, ActionDecision, ImpactReport, ReplayResult
from proctor.runs.selection import parse_date_range, parse_filters, select_runs
from proctor.runs.whatif import what_if

__all__ = ["replay"]

FAIL_ON = {"deny": "deny", "terminate": "terminate", "approval": "require_approval", "modify": "modify"}
"""``--fail-on`` kinds and the actions they stand for."""

PROGRESS_MIN = 50
"""Runs from which a progress bar is shown (on a terminal)."""

WHAT_IF_CHUNK = 500
"""Runs re-evaluated at a time in what-if mode, between progress updates."""

AFFECTED_SHOWN = 20
"""Affected runs listed in the table output."""

RUNS_NAMED = 5
"""Runs named per rule in a ``--fail-on`` message."""


class FailOnType(click.ParamType[tuple[str, ...]]):
    """A comma-separated list of ``FAIL_ON`` kinds."""

    name = "kinds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        kinds = tuple(dict.fromkeys(kind.strip() for kind in str(value).split(",") if kind.strip()))
        unknown = [kind for kind in kinds if kind not in FAIL_ON]
        if unknown:
            self.fail(
                f"unknown kind {unknown[0]!r}; use a comma-separated list of {', '.join(FAIL_ON)}", param, ctx
            )
        return kinds


@dataclass(frozen=True, slots=True)
class Trigger:
    """A decision that makes ``--fail-on`` fail: ``kind`` now, on action ``seq`` of ``run_id``."""

    kind: str
    rule: str
    run_id: str
    seq: int
    tool: str
    recorded: str


@click.command(name="replay")
@click.option(
    "--policies",
    "policy_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="A policy file to evaluate the runs against; repeat it to use several together.",
)
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run (`proctor runs list` shows them).")
@click.option("--since", type=AGE, metavar="AGE", help="Only runs started in the last AGE: 90m, 12h, 7d, 2w.")
@click.option(
    "--date-range",
    metavar="A:B",
    help="Only runs started from day A to day B, both included (local time): 2024-01-01:2024-01-07; "
    "or A..B with ISO dates or datetimes.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs with this service, agent, status or tool (the run's own); repeat to combine.",
)
@click.option(
    "--mode",
    type=click.Choice(["what-if", "replay"]),
    default="what-if",
    show_default=True,
    help="what-if: re-evaluate the recorded actions, no code runs. "
    "replay: run each run's function again, its tool calls answered from the recording.",
)
@format_option
@click.option(
    "--fail-on",
    type=FailOnType(),
    default="",
    metavar="KINDS",
    help="Exit 1 when the policies newly deny, terminate, require approval for (approval) or modify "
    "an action, for any of these comma-separated kinds: deny,terminate,approval,modify.",
)
@db_option
def replay(
    policy_files: tuple[str, ...],
    run_id: str | None,
    since: float | None,
    date_range: str | None,
    filters: tuple[str, ...],
    mode: str,
    output_format: str,
    fail_on: tuple[str, ...],
    db: Database,
) -> None:
    """Try policy files on recorded runs before deploying them.

    Evaluates the selected runs (all of them by default) against the
    --policies files and reports the difference from what was recorded:
    runs and actions decided differently, cost and success rate before and
    after, and per rule how many actions it denies, sends for approval,
    modifies, terminates or logs.

    \b
    Modes:
      what-if  re-evaluates each recorded action's facts; runs no code, and
               a denied or terminated action stops its run there.
      replay   imports each run's function (from the current directory and
               PYTHONPATH) and runs it again with its recorded input; its
               decorated calls return their recorded results.

    \b
    Exit status:
      0  the report was printed (also when no recorded run matches)
      1  --fail-on names a kind of decision the policies make on an action
         that the recording did not make (the rules and runs are listed)
      2  a usage error: a policy file that does not load, no run log, ...
    """
    if run_id is not None and (since is not None or date_range is not None or filters):
        raise click.UsageError("--run selects one run; leave out --since, --date-range and --filter with it")
    try:
        wanted = parse_filters(filters)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None
    start = until = None
    if date_range is not None:
        try:
            start, until = parse_date_range(date_range)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--date-range") from None
    if since is not None:
        start = max(start or 0.0, time.time() - since)
    rules = load_rules(policy_files)
    json_out = output_format == "json"
    console = make_console()
    with open_log(db) as log:
        try:
            records = select_runs(log, run_id=run_id, since=start, until=until, filters=wanted)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        if not records:
            click.echo(f"no recorded runs match in {db}", err=json_out)  # JSON: still a report, of no runs
            if not json_out:
                return
        results = evaluate(log, records, rules, mode)
    impact = ImpactReport.of(results)
    triggers = fail_triggers(results, fail_on)
    if json_out:
        document: dict[str, Any] = {
            **impact.to_dict(),
            "mode": mode,
            "policies": list(policy_files),
            "results": [result_dict(result) for result in results],
        }
        if fail_on:
            document["fail_on"] = {"kinds": list(fail_on), "triggered": [_trigger_dict(t) for t in triggers]}
        echo_json(document)
    else:
        print_report(console, impact, results, mode, policy_files)
    if triggers:
        explain_failure(triggers)
        raise SystemExit(1)


def load_rules(files: Sequence[str]) -> RuleSet:
    """The rules of ``files`` together; if they fail to load, each problem as ``file:line:column``, exit 2."""
    try:
        return PolicySource(list(files)).current()
    except PolicyConfigError as exc:
        for location, message in exc.problems:
            click.echo(f"{location}: {message}", err=True)
        count = len(exc.problems)
        click.echo(
            f"Error: the policies do not load ({count} problem{'s' if count != 1 else ''}); "
            "fix them and run again (`proctor check FILE` checks a file alone)",
            err=True,
        )
        raise SystemExit(2) from None


def evaluate(log: RunLog, records: list[RunRecord], rules: RuleSet, mode: str) -> list[ReplayResult]:
    """Each run's result under ``rules``, oldest run first; a progress bar on a terminal for many runs."""
    results: list[ReplayResult] = []
    if mode == "what-if":
        # cost_today counts spend across runs, so they must be walked together on one clock.
        size = len(records) if "cost_today" in rules.uses else WHAT_IF_CHUNK
        with progress(len(records), "what-if") as advance:
            for first in range(0, len(records), size):
                chunk = records[first : first + size]
                results += what_if(log, chunk, rules)
                advance(len(chunk))
        return results
    # What the replayed code prints goes to stderr, so that stdout holds the report alone.
    with importable_cwd(), redirect_stdout(sys.stderr), progress(len(records), "replaying") as advance:
        for record in records:
            try:
                results.append(replay_run(record.run_id, rules, log=log))
            except ConfigurationError as exc:
                raise CommandError(
                    f"cannot replay run {record.run_id}: {exc}\n"
                    "Replay mode imports the recorded function and runs it again: run proctor from the "
                    "project's folder (or set PYTHONPATH), or use --mode what-if, which runs no code."
                ) from None
            advance(1)
    return results


@contextmanager
def importable_cwd() -> Iterator[None]:
    """Let the recorded functions be imported from the current folder, as ``python -m`` would."""
    cwd = os.getcwd()
    if cwd in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        sys.path.remove(cwd)


@contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A function to call with the runs done; it draws a bar on stderr if that is a terminal."""
    console = Console(stderr=True)
    if total < PROGRESS_MIN or not console.is_terminal:
        yield lambda done: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)


def fail_triggers(results: Sequence[ReplayResult], kinds: Sequence[str]) -> list[Trigger]:
    """The changed decisions of the ``--fail-on`` kinds, in run and action order."""
    actions = {FAIL_ON[kind]: kind for kind in kinds}
    return [
        Trigger(actions[d.action], d.rule or DEFAULT_RULE, result.run_id, d.seq, d.tool, d.recorded)
        for result in results
        for d in result.decisions
        if d.changed and d.action in actions
    ]


def explain_failure(triggers: list[Trigger]) -> None:
    """Say on stderr which rules, in which runs, made ``--fail-on`` fail."""
    grouped: dict[tuple[str, str], list[Trigger]] = {}
    for trigger in triggers:
        grouped.setdefault((trigger.kind, trigger.rule), []).append(trigger)
    verbs = {
        "deny": "denies",
        "terminate": "terminates",
        "approval": "requires approval for",
        "modify": "modifies",
    }
    for (kind, rule), found in grouped.items():
        runs: dict[str, list[int]] = {}
        for trigger in found:
            runs.setdefault(trigger.run_id, []).append(trigger.seq)
        shown = list(runs.items())[:RUNS_NAMED]
        named = [f"{run} (action {', '.join(map(str, seqs))})" for run, seqs in shown]
        more = f" and {len(runs) - RUNS_NAMED} more" if len(runs) > RUNS_NAMED else ""
        count = len(found)
        click.echo(
            f"--fail-on {kind}: rule {rule} {verbs[kind]} {count} action{'s' if count != 1 else ''} "
            f"the recording did not, in {len(runs)} run{'s' if len(runs) != 1 else ''}: "
            f"{', '.join(named)}{more}",
            err=True,
        )


def result_dict(result: ReplayResult) -> dict[str, Any]:
    """One run's result as JSON types: statuses and costs before and after, the decisions that changed."""
    return {
        "run_id": result.run_id,
        "status_before": result.status_before,
        "status_after": result.status_after,
        "cost_before": result.cost_before,
        "cost_after": result.cost_after,
        "identical": result.identical,
        "divergence": None if result.divergence is None else str(result.divergence),
        "changed": [_decision_dict(decision) for decision in result.decisions if decision.changed],
    }


def _decision_dict(decision: ActionDecision) -> dict[str, Any]:
    return {
        "seq": decision.seq,
        "tool": decision.tool,
        "recorded": decision.recorded,
        "action": decision.action,
        "rule": decision.rule,
        "modified_by": list(decision.modified_by),
    }


def _trigger_dict(trigger: Trigger) -> dict[str, Any]:
    return {
        "kind": trigger.kind,
        "rule": trigger.rule,
        "run_id": trigger.run_id,
        "seq": trigger.seq,
        "tool": trigger.tool,
        "recorded": trigger.recorded,
    }


# -- the table report


def print_report(
    console: Console, impact: ImpactReport, results: Sequence[ReplayResult], mode: str, files: Sequence[str]
) -> None:
    """The summary, the per-rule table and the runs that changed."""
    how = "re-evaluated (what-if: no code ran)" if mode == "what-if" else "replayed (their code ran again)"
    runs_, actions = _count(impact.runs, "run"), _count(impact.actions, "action")
    console.print(f"[bold]{runs_}[/] with {actions} {how} against {', '.join(files)}")
    console.print(
        f"runs affected: [bold]{impact.runs_affected}[/] of {impact.runs}; "
        f"actions decided differently: [bold]{impact.actions_changed}[/] of {impact.actions}"
    )
    console.print(summary_table(impact))
    console.print(rules_table(impact))
    affected = [result for result in results if not result.identical]
    if affected:
        console.print(affected_table(affected))
    diverged = sum(result.divergence is not None for result in results)
    if diverged:
        console.print(
            f"[yellow]{_count(diverged, 'run')} left {'its' if diverged == 1 else 'their'} recording[/]: "
            "the code now makes calls the recording has no answer for; --format json shows where."
        )


def summary_table(impact: ImpactReport) -> Table:
    """Cost and success rate, before and after."""
    table = Table(expand=False)
    table.add_column("")
    table.add_column("recorded", justify="right", no_wrap=True)
    table.add_column("with the policies", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    saved = impact.cost_saved
    table.add_row(
        "cost",
        money(impact.cost_before),
        money(impact.cost_after),
        Text(f"{money(saved)} saved", style="green")
        if saved >= 0
        else Text(f"{money(-saved)} more", style="red"),
    )
    points = (impact.success_rate_after - impact.success_rate_before) * 100
    table.add_row(
        "success rate",
        f"{impact.success_rate_before:.1%}",
        f"{impact.success_rate_after:.1%}",
        Text(f"{points:+.1f} points", style="red" if points < 0 else "green" if points > 0 else ""),
    )
    return table


def rules_table(impact: ImpactReport) -> Table | str:
    """Per rule: the actions it denies, sends for approval, modifies, terminates or logs, and its runs."""
    if not impact.rules:
        return "No rule denies, sends for approval, modifies, terminates or logs any of these actions."
    table = Table(title="Per rule", title_justify="left", expand=False)
    table.add_column("rule", style="bold")
    for column in ("denied", "approval", "modified", "terminated", "logged", "runs"):
        table.add_column(column, justify="right", no_wrap=True)
    for rule in impact.rules:
        counts = (rule.denied, rule.approval, rule.modified, rule.terminated, rule.logged, rule.runs)
        table.add_row(rule.rule, *map(str, counts))
    table.caption = f"actions per rule, over all {impact.actions} actions; {DEFAULT_RULE}: no rule matched"
    return table


def affected_table(affected: Sequence[ReplayResult]) -> Table:
    """The runs that end, cost or are decided differently, with what changed."""
    table = Table(title="Runs affected", title_justify="left", expand=False)
    table.add_column("run id", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("decided differently")
    for result in affected[:AFFECTED_SHOWN]:
        status = Text()
        status.append_text(status_text(result.status_before))
        if result.status_after != result.status_before:
            status.append(" -> ")
            status.append_text(status_text(result.status_after))
        cost = money(result.cost_before)
        if result.cost_after != result.cost_before:
            cost = f"{cost} -> {money(result.cost_after)}"
        changes = [
            f"#{d.seq} {d.tool}: {d.recorded} -> {d.action}" + (f" ({d.rule})" if d.rule else "")
            for d in result.decisions
            if d.changed
        ]
        if result.divergence is not None:
            changes.append(f"left the recording at {result.divergence}")
        table.add_row(result.run_id, status, cost, "\n".join(changes) or "-")
    if len(affected) > AFFECTED_SHOWN:
        table.caption = f"the first {AFFECTED_SHOWN} of {len(affected)}; --format json lists every run"
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
