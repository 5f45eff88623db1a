"""``proctor approvals``: list, show and decide approval requests; ``proctor approvers add/list/remove``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from rich.table import Table
from rich.text import Text

from proctor.approvals import (
    APPROVAL_STATUSES,
    ApprovalError,
    ApprovalRecord,
    ApprovalStore,
    Approvers,
    DecisionRecord,
    approvers_path,
)
from proctor.approvals.approvers import DEFAULT_FILE
from proctor.cli.runs import (
    CommandError,
    db_option,
    echo_json,
    format_option,
    iso_time,
    make_console,
    shorten,
)
from proctor.db import Database
from proctor.errors import ConfigurationError, StoreError
from proctor.runs.describe import local_time, seconds

__all__ = ["approvals", "approvers"]

F = TypeVar("F", bound=Callable[..., Any])

MESSAGE_WIDTH = 50
"""Characters of a request's message shown in the ``approvals list`` table."""

STATUS_STYLES = {
    "pending": "cyan",
    "approved": "green",
    "denied": "red",
    "expired": "yellow",
    "cancelled": "dim",
}

SET_UP_APPROVERS = "`proctor approvers add NAME --group GROUP` creates approvers.yaml and a token"


@contextmanager
def open_store(db: Database) -> Iterator[ApprovalStore]:
    """The approval store in the database ``db``, closed on exit; a ``CommandError`` when there is none."""
    if db.missing() is not None:
        raise CommandError(
            f"no proctor database at {db}: approval requests are written there when a require_approval "
            "rule asks (PROCTOR_DB chooses the file). Pass --db PATH or set PROCTOR_DB."
        )
    try:
        store = ApprovalStore(db.url)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield store
    except (ApprovalError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()


def approvers_option(function: F) -> F:
    """The ``--approvers FILE`` option: who may decide (``$PROCTOR_APPROVERS``, else ./approvers.yaml)."""
    return click.option(
        "--approvers",
        "approvers_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="PROCTOR_APPROVERS",
        show_envvar=True,
        help=f"The approvers file  [default: ./{DEFAULT_FILE} when it exists; without one, --as NAME]",
    )(function)


def status_text(status: str) -> Text:
    """A request's status in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def due_text(record: ApprovalRecord, now: float) -> str:
    """When a pending request's waiter gives up: ``in 4 min 10 s``, ``passed 12 s ago``; else ``-``."""
    if not record.pending:
        return "-"
    left = record.deadline - now
    return f"in {seconds(left)}" if left >= 0 else f"passed {seconds(-left)} ago"


def approval_summary(record: ApprovalRecord, decisions: list[DecisionRecord]) -> dict[str, Any]:
    """A request as ``--format json`` gives it."""
    return {
        "id": record.id,
        "status": record.status,
        "run_id": record.run_id,
        "seq": record.seq,
        "service": record.service,
        "agent": record.agent,
        "tool": record.tool,
        "args": record.args,
        "rule_id": record.rule_id,
        "rule_name": record.rule_name,
        "message": record.message,
        "approvers": list(record.approvers),
        "quorum": record.quorum,
        "approvals": sum(decision.approved for decision in decisions),
        "created": iso_time(record.created),
        "deadline": iso_time(record.deadline),
        "decided": iso_time(record.decided),
        "decisions": [
            {
                "approver": decision.approver,
                "approved": decision.approved,
                "comment": decision.comment,
                "at": iso_time(decision.at),
            }
            for decision in decisions
        ],
    }


def groups_text(record: ApprovalRecord) -> str:
    """``dba, oncall`` and the quorum when it is more than one; ``anyone listed`` without groups."""
    groups = ", ".join(record.approvers) or "anyone listed"
    return groups if record.quorum == 1 else f"{groups} (quorum {record.quorum})"


# -- proctor approvals


@click.group(name="approvals")
def approvals() -> None:
    """List, inspect and decide approval requests.

    A require_approval rule writes a request to the database (PROCTOR_DB,
    else ./.proctor/runs.db) and the call waits until people decide it, from
    here or the web console, or its timeout passes. Deciders are identified by
    PROCTOR_TOKEN (their token from approvers.yaml), or by --as NAME when
    there is no approvers file.
    """


@approvals.command(name="list")
@click.option("--status", type=click.Choice(APPROVAL_STATUSES), help="Only requests with this status.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most this many."
)
@format_option
@db_option
def list_approvals(status: str | None, limit: int, output_format: str, db: Database) -> None:
    """List approval requests, newest first.

    One row per request: its id, when it was made, its status, who asks to
    call which tool, the rule, the groups that decide it, the approvals so
    far, when the waiting call gives up, and the rule's message.
    """
    with open_store(db) as store:
        records = store.list(status=status, limit=limit)
        decisions = {record.id: store.decisions(record.id) for record in records}
    if output_format == "json":
        echo_json([approval_summary(record, decisions[record.id]) for record in records])
        return
    if not records:
        which = f"{status} " if status else ""
        click.echo(f"no {which}approval requests in {db}")
        return
    now = time.time()
    table = Table(title=f"{len(records)} approval request{'s' if len(records) != 1 else ''}, newest first")
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("created", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("service / agent")
    table.add_column("tool")
    table.add_column("rule")
    table.add_column("approvers")
    table.add_column("approvals", justify="right", no_wrap=True)
    table.add_column("deadline", no_wrap=True)
    table.add_column("message")
    for record in records:
        approved = sum(decision.approved for decision in decisions[record.id])
        table.add_row(
            record.id,
            local_time(record.created),
            status_text(record.status),
            f"{record.service} / {record.agent}",
            record.tool,
            record.rule_id,
            ", ".join(record.approvers) or "anyone listed",
            f"{approved}/{record.quorum}",
            due_text(record, now),
            shorten(record.message, MESSAGE_WIDTH),
        )
    if len(records) == limit:
        table.caption = f"the newest {limit}; --limit shows more, --status fewer"
    make_console().print(table)


@approvals.command(name="show")
@click.argument("approval_id", metavar="ID")
@format_option
@db_option
def show_approval(approval_id: str, output_format: str, db: Database) -> None:
    """Show approval request ID in full: the action, the rule, its arguments and every decision.

    ID may be shortened to any prefix that no other request's id starts with.
    """
    with open_store(db) as store:
        approval_id = store.resolve(approval_id)
        record = store.get(approval_id)
        decisions = store.decisions(approval_id)
    if output_format == "json":
        echo_json(approval_summary(record, decisions))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("approval", Text(record.id, style="bold"))
    grid.add_row("status", status_text(record.status))
    grid.add_row("service / agent", f"{record.service} / {record.agent}")
    grid.add_row("action", f"{record.tool} (action {record.seq} of run {record.run_id})")
    rule = f"{record.rule_id} ({record.rule_name})" if record.rule_name else record.rule_id
    grid.add_row("rule", rule)
    grid.add_row("message", record.message)
    grid.add_row("approvers", groups_text(record))
    grid.add_row("created", local_time(record.created))
    due = f" ({due_text(record, time.time())})" if record.pending else ""
    grid.add_row("deadline", local_time(record.deadline) + due)
    if record.decided is not None:
        grid.add_row("decided", local_time(record.decided))
    grid.add_row("args", json.dumps(record.args, ensure_ascii=False, indent=2))
    console = make_console()
    console.print(grid)
    if not decisions:
        console.print("No decisions yet.")
        return
    table = Table(title="Decisions", title_justify="left")
    table.add_column("at", no_wrap=True)
    table.add_column("approver")
    table.add_column("decision", no_wrap=True)
    table.add_column("comment")
    for decision in decisions:
        said = Text("approved", style="green") if decision.approved else Text("denied", style="red")
        table.add_row(local_time(decision.at), decision.approver, said, decision.comment or "-")
    console.print(table)


def decide_options(function: F) -> F:
    """The options of ``approve`` and ``deny``."""
    for option in (
        click.option("--comment", help="Why; kept with the decision in the audit trail."),
        click.option(
            "--as",
            "as_name",
            metavar="NAME",
            help="Decide as NAME; only without an approvers file (a local, single-user setup).",
        ),
        approvers_option,
        db_option,
    ):
        function = option(function)
    return function


@approvals.command(name="approve")
@click.argument("approval_id", metavar="ID")
@decide_options
def approve(
    approval_id: str, comment: str | None, as_name: str | None, approvers_file: Path | None, db: Database
) -> None:
    """Approve request ID, as the person PROCTOR_TOKEN belongs to (or --as NAME).

    The request is approved once its quorum of distinct people have approved.
    ID may be shortened to any prefix that no other request's id starts with.
    """
    decide(approval_id, True, comment, as_name, approvers_file, db)


@approvals.command(name="deny")
@click.argument("approval_id", metavar="ID")
@decide_options
def deny(
    approval_id: str, comment: str | None, as_name: str | None, approvers_file: Path | None, db: Database
) -> None:
    """Deny request ID, as the person PROCTOR_TOKEN belongs to (or --as NAME): the waiting call is refused.

    ID may be shortened to any prefix that no other request's id starts with.
    """
    decide(approval_id, False, comment, as_name, approvers_file, db)


def decide(
    approval_id: str,
    approved: bool,
    comment: str | None,
    as_name: str | None,
    approvers_file: Path | None,
    db: Database,
) -> None:
    """Record the decision and say what became of the request."""
    name, approvers = identify(as_name, approvers_file)
    with open_store(db) as store:
        approval_id = store.resolve(approval_id)
        record = store.decide(approval_id, name, approved, comment, approvers)
        decisions = store.decisions(approval_id)
    if record.status == "pending":
        count = sum(decision.approved for decision in decisions)
        more = record.quorum - count
        click.echo(
            f"{name} approved {record.id}: {count} of {record.quorum} approvals, "
            f"waiting for {more} more from {', '.join(record.approvers) or 'anyone listed'}"
        )
    elif record.status == "approved":
        names = ", ".join(decision.approver for decision in decisions if decision.approved)
        click.echo(f"{record.id} approved by {names}: {record.tool} of {record.agent} goes ahead")
    else:
        click.echo(f"{record.id} denied by {name}: {record.tool} of {record.agent} is refused")


def identify(as_name: str | None, approvers_file: Path | None) -> tuple[str, Approvers | None]:
    """Who decides, and the approvers to check them against (None in open mode)."""
    path = approvers_file or approvers_path()
    token = os.environ.get("PROCTOR_TOKEN")
    if path is None:
        if as_name:
            return as_name, None
        checked = (
            "PROCTOR_TOKEN is set, but there is no approvers file to check it against; " if token else ""
        )
        raise CommandError(
            f"{checked}say who decides: without an approvers file (./{DEFAULT_FILE} or PROCTOR_APPROVERS) "
            f"pass --as NAME; or set up approvers: {SET_UP_APPROVERS}"
        )
    try:
        approvers = Approvers.load(path)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    if as_name:
        raise CommandError(
            f"--as works only without an approvers file; {path} lists who may decide, so set PROCTOR_TOKEN "
            "to your token instead"
        )
    if not token:
        raise CommandError(
            f"set PROCTOR_TOKEN to your approver token: {path} lists who may decide ({SET_UP_APPROVERS})"
        )
    name = approvers.who(token)
    if name is None:
        raise CommandError(
            f"PROCTOR_TOKEN is nobody's token in {path}; `proctor approvers add NAME --group GROUP` "
            "issues a new one"
        )
    return name, approvers


# -- proctor approvers


@click.group(name="approvers")
def approvers() -> None:
    """Manage who may decide approval requests (approvers.yaml): add, list, remove.

    The file is $PROCTOR_APPROVERS, else ./approvers.yaml. It keeps each
    person's groups and only the hash of their token.
    """


def file_option(help: str) -> Callable[[F], F]:
    """The ``--file`` option of ``proctor approvers``: ``$PROCTOR_APPROVERS``, else ./approvers.yaml."""
    return click.option(
        "--file",
        "file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="PROCTOR_APPROVERS",
        default=DEFAULT_FILE,
        show_default=True,
        show_envvar=True,
        help=help,
    )


def load_approvers(file: Path) -> Approvers:
    """The approvers in ``file``; a ``CommandError`` saying what to do when it is missing or invalid."""
    if not file.exists():
        raise CommandError(f"no approvers file at {file}; {SET_UP_APPROVERS}")
    try:
        return Approvers.load(file)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None


@approvers.command(name="add")
@click.argument("name")
@click.option(
    "--group",
    "groups",
    multiple=True,
    required=True,
    metavar="GROUP",
    help="A group NAME decides for; repeat for several. Replaces NAME's groups.",
)
@file_option("The approvers file, created when missing (readable by its owner only).")
def add_approver(name: str, groups: tuple[str, ...], file: Path) -> None:
    """Add NAME to the approvers, in the groups given, and print their new token once.

    The file keeps only the token's hash, so copy the token now: NAME
    decides with PROCTOR_TOKEN=<token> or signs in to the console with it.
    Adding a NAME again replaces their groups and token.
    """
    existed = file.exists()
    try:
        current = Approvers.load(file) if existed else Approvers(path=file)
        before = current.people.get(name)
        token = current.add(name, groups)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    listed = ", ".join(dict.fromkeys(groups))
    if before is None:
        click.echo(f"added {name} to {file}{'' if existed else ' (new file)'}, in groups {listed}")
    else:
        click.echo(f"updated {name} in {file}: groups {listed}; their previous token no longer works")
    click.echo(f"token of {name}, shown only now ({file} keeps its hash):")
    click.echo(token)


@approvers.command(name="list")
@format_option
@file_option("The approvers file.")
def list_approvers(output_format: str, file: Path) -> None:
    """List the approvers: each person's groups and whether they have a token; then each group.

    Tokens stay secret: the file keeps only their hashes, and neither is shown.
    A group's webhook is shown by its host only (its path may hold a secret).
    """
    listed = load_approvers(file)
    people = sorted(listed.people.values(), key=lambda person: person.name)
    groups = [(group, listed.members(group), webhook_host(listed.webhook(group))) for group in listed.groups]
    if output_format == "json":
        echo_json(
            {
                "people": [
                    {"name": person.name, "groups": sorted(person.groups), "token": person.token is not None}
                    for person in people
                ],
                "groups": [
                    {"name": group, "members": members, "webhook": webhook}
                    for group, members, webhook in groups
                ],
            }
        )
        return
    console = make_console()
    if not people:
        console.print(f"nobody is listed in {file}; {SET_UP_APPROVERS}")
        return
    console.print(f"{len(people)} approver{'s' if len(people) != 1 else ''} in {file}")
    table = Table()
    table.add_column("name", style="bold")
    table.add_column("groups")
    table.add_column("token", no_wrap=True)
    for person in people:
        has_token = "yes" if person.token is not None else Text("none: cannot sign in", style="yellow")
        table.add_row(person.name, ", ".join(sorted(person.groups)) or "-", has_token)
    console.print(table)
    by_group = Table(title="Groups")
    by_group.add_column("group", style="bold")
    by_group.add_column("members")
    by_group.add_column("webhook")
    for group, members, webhook in groups:
        who = ", ".join(members) or Text("nobody: no request for it can be approved", "yellow")
        by_group.add_row(group, who, webhook or "-")
    console.print(by_group)


@approvers.command(name="remove")
@click.argument("name")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Take NAME out of this group only, keeping their token; repeat for several.",
)
@file_option("The approvers file.")
def remove_approver(name: str, groups: tuple[str, ...], file: Path) -> None:
    """Remove NAME from the approvers (their token stops working), or with --group from those groups.

    Decisions NAME already took stay in the audit trail. The groups stay
    defined in the file, with their webhooks, even when nobody is left in them.
    """
    listed = load_approvers(file)
    try:
        person = listed.remove(name, groups)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    if person is None:
        click.echo(f"removed {name} from {file}; their token no longer works")
        return
    left = ", ".join(sorted(person.groups)) or "none (they may decide only requests that name no group)"
    named = ", ".join(dict.fromkeys(groups))
    plural = "s" if len(set(groups)) > 1 else ""
    click.echo(f"removed {name} from group{plural} {named} in {file}; {name}'s groups: {left}")


def webhook_host(url: str | None) -> str | None:
    """``https://hooks.example.com/...`` for a webhook URL: its path may hold a secret; None for None."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
