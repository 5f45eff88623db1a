"""``proctor runs``: list, show and prune the runs in a run log."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from proctor.approvals.store import ApprovalRecord, ApprovalStore
from proctor.db import Database, database_from_url
from proctor.errors import ConfigurationError, StoreError
from proctor.runs.describe import (
    Wait,
    approval_text,
    approval_waits,
    error_text,
    local_time,
    marked_decisions,
    money,
    seconds,
    wait_text,
)
from proctor.runs.log import DEFAULT_PATH, RUN_STATUSES, ActionRecord, RunLog, RunRecord, decode
from proctor.runs.result import effective_action
from proctor.runs.selection import parse_age

__all__ = ["runs"]

F = TypeVar("F", bound=Callable[..., Any])

PLAIN_WIDTH = 160
"""Width of tables written to a file or a pipe, unless ``COLUMNS`` says otherwise."""

ARGS_WIDTH = 60
"""Characters of an action's arguments shown in the timeline table."""

VALUE_WIDTH = 1000
"""Characters of a run's input, output or error shown in the ``runs show`` header."""

STATUS_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "denied": "yellow",
    "terminated": "magenta",
    "cancelled": "dim",
    "running": "cyan",
}


class CommandError(click.ClickException):
    """A problem the user can fix (no run log there, no such run): ``Error: ...`` and exit status 2."""

    exit_code = 2


# -- options and helpers shared with ``proctor replay``


class AgeType(click.ParamType[float]):
    """An age such as ``30d``, as seconds."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_age(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


AGE = AgeType()


class DatabaseType(click.ParamType[Database]):
    """proctor's database: a SQLite file's path, or a URL such as ``sqlite:///runs.db``."""

    name = "database"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Database:
        if isinstance(value, Database):
            return value
        try:
            return database_from_url(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


DATABASE = DatabaseType()


def db_option(function: F) -> F:
    """The ``--db PATH|URL`` option: the run log to read (``$PROCTOR_DB``, else ``.proctor/runs.db``)."""
    return click.option(
        "--db",
        type=DATABASE,
        envvar="PROCTOR_DB",
        default=DEFAULT_PATH,
        show_default=True,
        show_envvar=True,
        metavar="PATH|URL",
        help="The run log to read: a SQLite file, or a URL: sqlite:///runs.db, "
        "postgresql://user:password@host/dbname.",
    )(function)


def format_option(function: F) -> F:
    """The ``--format table|json`` option."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="A table for people, or JSON for scripts.",
    )(function)


@contextmanager
def open_log(db: Database) -> Iterator[RunLog]:
    """The run log in ``db``, closed on exit; a ``CommandError`` when there is none (never a new file)."""
    missing = db.missing()
    if missing is not None:
        raise CommandError(
            f"no run log at {db} ({_db_source()}): {missing}.\n"
            "Runs are recorded there when @runlog-decorated functions run with recording on "
            "(the default; PROCTOR_DB chooses the file, PROCTOR_RECORD=off turns it off).\n"
            "Pass --db PATH or set PROCTOR_DB to read a run log elsewhere."
        )
    try:
        log = RunLog(db.url, pii=False)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield log
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        log.close()


def _db_source() -> str:
    """Where the ``--db`` value came from, in words."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("db") if ctx is not None else None
    if source is click.core.ParameterSource.COMMANDLINE:
        return "given by --db"
    if source is click.core.ParameterSource.ENVIRONMENT:
        return "from $PROCTOR_DB"
    return "the default; neither --db nor $PROCTOR_DB was given"


def make_console() -> Console:
    """A console for tables on stdout: wide enough for them when writing to a file or a pipe."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PLAIN_WIDTH
    return console


def iso_time(timestamp: float | None) -> str | None:
    """ISO 8601 with the local offset, for JSON; None for None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def status_text(status: str) -> Text:
    """A status in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the group


@click.group(name="runs")
def runs() -> None:
    """List, inspect and prune recorded runs.

    A run is one call of a @runlog-decorated function with no run around it;
    the decorated calls inside it are its actions. Runs are recorded in the
    run log at $PROCTOR_DB (else ./.proctor/runs.db); every command reads the
    one --db names.
    """


@runs.command(name="list")
@click.option("--service", help="Only runs of this service.")
@click.option("--agent", help="Only runs of this agent.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option("--since", type=AGE, metavar="AGE", help="Only runs started in the last AGE: 90m, 12h, 7d, 2w.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most this many runs."
)
@format_option
@db_option
def list_runs(
    service: str | None,
    agent: str | None,
    status: str | None,
    since: float | None,
    limit: int,
    output_format: str,
    db: Database,
) -> None:
    """List recorded runs, newest first.

    One row per run: its id, when it started (local time), its service,
    agent and tool, how it ended, how many actions it made, what it cost
    and how long it took. `proctor runs show RUN_ID` shows one in full.
    """
    with open_log(db) as log:
        start = None if since is None else time.time() - since
        records = log.runs(service=service, agent=agent, status=status, since=start, limit=limit)
        counts = Counter(action.run_id for action in log.actions_of([record.run_id for record in records]))
    if output_format == "json":
        echo_json([{**run_summary(record), "actions": counts[record.run_id]} for record in records])
        return
    if not records:
        click.echo(f"no recorded runs match in {db}")
        return
    table = Table(title=f"{len(records)} run{'s' if len(records) != 1 else ''}, newest first", expand=False)
    table.add_column("run id", no_wrap=True, style="bold")
    table.add_column("started", no_wrap=True)
    table.add_column("service")
    table.add_column("agent")
    table.add_column("tool")
    table.add_column("status", no_wrap=True)
    table.add_column("actions", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    for record in records:
        duration = None if record.ended is None else record.ended - record.started
        table.add_row(
            record.run_id,
            local_time(record.started),
            record.service,
            record.agent,
            record.tool,
            status_text(record.status),
            str(counts[record.run_id]),
            money(record.cost),
            seconds(duration) if record.status != "running" else "running",
        )
    if len(records) == limit:
        table.caption = f"the newest {limit}; --limit shows more, the filters fewer"
    make_console().print(table)


def run_summary(record: RunRecord) -> dict[str, Any]:
    """The fields of a run that ``runs list --format json`` gives."""
    return {
        "run_id": record.run_id,
        "started": iso_time(record.started),
        "ended": iso_time(record.ended),
        "duration": None if record.ended is None else record.ended - record.started,
        "service": record.service,
        "agent": record.agent,
        "tool": record.tool,
        "function": record.function,
        "status": record.status,
        "estimated_cost": record.estimated_cost,
        "actual_cost": record.actual_cost,
        "cost": record.cost,
        "redacted": record.redacted,
    }


# -- runs show


@runs.command(name="show")
@click.argument("run_id")
@format_option
@db_option
def show_run(run_id: str, output_format: str, db: Database) -> None:
    """Show one run: its input, how it ended, and the timeline of its actions.

    For each action: when it began (from the run's start), its tool and
    status, what the rules decided (rule:action; * marks the decision that
    took effect), who approved it, its estimated and actual cost, how long
    it took, and its arguments (in full with --format json).
    """
    with open_log(db) as log:
        record = log.run(run_id)
        if record is None:
            raise CommandError(f"no run {run_id!r} in {db}; `proctor runs list` shows the recorded runs")
        actions = log.actions(run_id)
    waits = approval_waits(record, actions, approval_requests(db, record, actions), time.time())
    if output_format == "json":
        echo_json(
            {
                "run": {**run_details(record), "approval_wait": _wait_seconds(waits.get(0))},
                "actions": [
                    {**action_details(record, a), "approval_wait": _wait_seconds(waits.get(a.seq))}
                    for a in actions
                ],
            }
        )
        return
    console = make_console()
    console.print(run_header(record, waits.get(0)))
    if not actions:
        console.print("No actions: the run made no decorated calls.")
        return
    console.print(timeline(record, actions, waits))


def approval_requests(db: Database, run: RunRecord, actions: list[ActionRecord]) -> list[ApprovalRecord]:
    """The durable approval requests the calls of ``run`` that asked people waited on (the newest of
    each); none for the calls that asked another channel."""
    calls = [(0, run.tool, run.approval), *((a.seq, a.tool, a.approval) for a in actions)]
    asked = [(seq, tool, approval) for seq, tool, approval in calls if approval is not None]
    if not asked:
        return []
    found = []
    try:
        with ApprovalStore(db.url, pii=False) as store:
            for seq, tool, approval in asked:
                rule = (decode(approval) or {}).get("rule")
                request = store.find(run.run_id, seq, tool, rule) if isinstance(rule, str) else None
                if request is not None:
                    found.append(request)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    return found


def _wait_seconds(wait: Wait | None) -> float | None:
    return None if wait is None else wait.seconds


def run_details(record: RunRecord) -> dict[str, Any]:
    """Everything stored about a run, JSON columns decoded."""
    return {
        **run_summary(record),
        "input": decode(record.input),
        "output": decode(record.output),
        "error": decode(record.error),
        "labels": decode(record.labels),
        "decisions": decode(record.decisions),
        "decided": _decided(record.decisions),
        "approval": decode(record.approval),
        "effects": decode(record.effects),
    }


def action_details(run: RunRecord, action: ActionRecord) -> dict[str, Any]:
    """Everything stored about an action, JSON columns decoded, with its offset from the run's start."""
    return {
        "seq": action.seq,
        "tool": action.tool,
        "service": action.service,
        "agent": action.agent,
        "started": iso_time(action.started),
        "offset": action.started - run.started,
        "duration": action.duration,
        "status": action.status,
        "args": decode(action.args),
        "requested_args": decode(action.requested_args),
        "result": decode(action.result),
        "error": decode(action.error),
        "labels": decode(action.labels),
        "estimated_cost": action.estimated_cost,
        "actual_cost": action.actual_cost,
        "decisions": decode(action.decisions),
        "decided": _decided(action.decisions),
        "approval": decode(action.approval),
        "redacted": action.redacted,
    }


def _decided(text: str | None) -> dict[str, Any]:
    action, rule = effective_action(decode(text))
    return {"action": action, "rule": rule}


def run_header(record: RunRecord, wait: Wait | None = None) -> Table:
    """The run's facts, one per line: who, when, what went in and out, cost, decisions, the approval
    of its own call (and its ``wait``)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", Text(record.run_id, style="bold"))
    grid.add_row("service / agent", f"{record.service} / {record.agent}")
    grid.add_row("tool", f"{record.tool} ({record.function})")
    ended = (
        "still running (or the process ended before it did)"
        if record.ended is None
        else f"{local_time(record.ended)} ({seconds(record.ended - record.started)})"
    )
    grid.add_row("started", local_time(record.started))
    grid.add_row("ended", ended)
    grid.add_row("status", status_text(record.status))
    grid.add_row("input", _value(record.input))
    if record.error is not None:
        grid.add_row("error", Text(error_text(record.error), style="red"))
    elif record.output is not None:
        grid.add_row("output", _value(record.output))
    grid.add_row(
        "cost",
        f"{money(record.cost)} in all; its own call: estimated {money(record.estimated_cost)}, "
        f"actual {money(record.actual_cost)}",
    )
    decisions = decisions_text(record.decisions)
    if decisions:
        grid.add_row("decisions", decisions)
    approval = approval_text(record.approval)
    if wait is not None:
        approval = f"{approval or 'asked'}; {wait_text(wait)}"
    if approval:
        grid.add_row("approval", approval)
    if record.redacted:
        note = "personal data found in this run was redacted before it was stored"
        grid.add_row("redacted", Text(note, style="yellow"))
    return grid


def timeline(
    record: RunRecord, actions: list[ActionRecord], waits: Mapping[int, Wait] | None = None
) -> Table:
    """The run's actions in the order they began (were asked for), with their approval ``waits``."""
    table = Table(title="Actions", title_justify="left", expand=False)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("tool")
    table.add_column("status", no_wrap=True)
    table.add_column("decisions")
    table.add_column("approval")
    table.add_column("cost est / actual", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("args", overflow="fold")
    redacted = False
    for action in actions:
        redacted = redacted or action.redacted
        args = action.args if action.requested_args is None else action.requested_args
        shown = shorten(args or "", ARGS_WIDTH)
        if action.requested_args is not None:
            shown = f"{shown} (modified)"
        offset, approval = f"+{seconds(action.started - record.started)}", approval_text(action.approval)
        wait = (waits or {}).get(action.seq)
        if wait is not None:
            if wait.ran is not None:
                offset = f"{offset}, ran at +{seconds(wait.ran)}"
            approval = f"{approval or 'asked'}; {wait_text(wait)}"
        table.add_row(
            str(action.seq),
            offset,
            action.tool,
            status_text(action.status),
            decisions_text(action.decisions) or "-",
            approval or "-",
            f"{money(action.estimated_cost)} / {money(action.actual_cost)}",
            seconds(action.duration) if action.duration is not None else "did not run",
            shown,
        )
    notes = ["* the decision that took effect", "args as requested; --format json shows them in full"]
    if waits:
        notes.append("offset: when a call was asked for; duration: how long it ran, after any wait")
    if redacted:
        notes.append("personal data in some actions was redacted before it was stored")
    table.caption = "; ".join(notes)
    return table


def decisions_text(text: str | None) -> Text:
    """``rule:action`` per decision, the one that took effect marked ``*`` and in bold."""
    parts = Text()
    for decision in marked_decisions(text):
        if parts:
            parts.append(", ")
        label = f"{decision.rule}:{decision.action}{decision.where}"
        if decision.deciding:
            parts.append(label + "*", style="bold")
        else:
            parts.append(label, style="" if decision.decided else "dim")
    return parts


def _value(text: str | None) -> str:
    return "-" if text is None else shorten(text, VALUE_WIDTH)


# -- runs prune


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question on stdin."""
    return sys.stdin.isatty()


@runs.command(name="prune")
@click.option(
    "--older-than",
    type=AGE,
    required=True,
    metavar="AGE",
    help="Delete runs started more than AGE ago: 12h, 30d, 2w.",
)
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal)."
)
@db_option
def prune_runs(older_than: float, yes: bool, db: Database) -> None:
    """Delete runs started more than AGE ago, and their actions.

    Says how many runs it would delete and asks first, unless --yes.
    """
    cutoff = time.time() - older_than
    when = local_time(cutoff)
    with open_log(db) as log:
        count = len(log.runs(until=cutoff, limit=None))
        if not count:
            click.echo(f"no runs started before {when} in {db}; nothing deleted")
            return
        runs_ = f"{count} run{'s' if count != 1 else ''}"
        if not yes:
            if not stdin_is_terminal():
                raise CommandError(
                    f"this would delete {runs_} started before {when} from {db}, and stdin is not a "
                    "terminal to confirm it on; pass --yes to delete them"
                )
            if not click.confirm(f"Delete {runs_} started before {when} from {db}, with their actions?"):
                click.echo("nothing deleted")
                return
        deleted = log.prune(cutoff)
    click.echo(f"deleted {deleted} run{'s' if deleted != 1 else ''} started before {when} from {db}")
