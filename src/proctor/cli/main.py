"""The ``proctor`` command group."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from proctor.__version__ import __version__
from proctor.cli.approvals import approvals, approvers
from proctor.cli.demo import MAX_PROCESSES, run_demo
from proctor.cli.mcp import mcp
from proctor.cli.replay import replay
from proctor.cli.runs import runs
from proctor.cli.serve import serve

if TYPE_CHECKING:
    from proctor.rules import RuleSet


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="proctor")
def cli() -> None:
    """proctor: fair dispatch and runtime policies for AI agents.

    Run `proctor demo` to watch six agents share one rate-limited LLM API
    under budget, access and rate policies.
    """


@cli.command()
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated workload.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=10.0),
    default=1.0,
    show_default=True,
    help="Run the simulation SPEED times faster (call latencies, pauses and the rate period alike).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="The run log to record the demo's runs in  [default: $PROCTOR_DB, else .proctor/runs.db]",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=MAX_PROCESSES),
    default=1,
    show_default=True,
    metavar="N",
    help="Deal the agents' calls out to N worker processes that keep the budget and the rate limit "
    "in one shared SQLite store; the tables then show each process's calls and that the shared limits "
    "held exactly.",
)
def demo(seed: int, speed: float, db: str | None, processes: int) -> None:
    """Six agents contend for an LLM API that allows 3 concurrent calls.

    Shows who waits, who is served, and which policy rejects what, then a
    table per agent: granted, rejected by policy, mean and p95 wait, spend
    against the limit. Every agent session is recorded in the run log; the
    demo ends by re-evaluating the recording against stricter rules (what-if)
    and shows their impact. Takes about eight seconds.

    With --processes N, the calls run in N processes, each with its own
    scheduler; the budget and batch's rate limit (then a daily quota) live in
    one SQLite store they share. The tables show per process and in total the
    calls made, admitted, refused by each policy, and spend; then that the
    ledger's spend equals the actual costs the processes reported, within
    every limit, and that batch got exactly its quota. Exits 1 when a process
    fails or a limit is not exact.
    """
    raise SystemExit(run_demo(seed=seed, speed=speed, db=db, processes=processes))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
def check(files: tuple[str, ...]) -> None:
    """Validate policy files; print every problem as FILE:LINE:COLUMN: message.

    Exits 1 when any file has a problem, 0 when all are valid, so it can gate CI.
    """
    from proctor.errors import PolicyConfigError
    from proctor.rules import load_policies

    failed = 0
    for file in files:
        try:
            rules = load_policies(file)
        except PolicyConfigError as exc:
            failed += 1
            for location, message in exc.problems:
                click.echo(f"{location}: {message}")
        else:
            counts = [_count(len(rules), "rule")]
            if rules.budgets:
                counts.append(_count(len(rules.budgets), "budget"))
            if rules.rate_limits:
                counts.append(_count(len(rules.rate_limits), "rate limit"))
            click.echo(f"{file}: ok, {', '.join(counts)}")
            for line in limit_lines(rules):
                click.echo(f"  {line}")
            for note in spend_notes(rules):
                click.echo(f"  note: {note}")
    if failed:
        click.echo(f"{failed} of {len(files)} file{'s' if len(files) != 1 else ''} invalid", err=True)
        raise SystemExit(1)


@cli.command(name="test")
@click.argument("policy_file", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--cases",
    "cases_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="YAML file of cases (format above): facts, and the action (and rule) expected.",
)
def test_policies(policy_file: str, cases_file: str) -> None:
    """Run policy unit tests: each case's facts against POLICY_FILE.

    A case passes when the rules decide the expected action (and, if the case
    names one, by the expected rule). Exits 1 when a case fails or a file is
    invalid, so rule changes can be tested in CI. A cases file:

    \b
    cases:
      - name: expensive calls are denied
        facts: {tool: llm.complete, cost: 2.5, args: {model: big}}
        expect: {action: deny, rule: cost_control}
      - name: small talk is fine
        facts: {tool: llm.complete, cost: 0.01}
        expect: allow

    expect is one of allow, log, modify, require_approval, deny, terminate, or
    {action: ..., rule: RULE_ID}. facts use the names rules use.
    """
    from proctor.errors import PolicyConfigError
    from proctor.rules import load_policies
    from proctor.rules.cases import load_cases, run_cases

    try:
        results = run_cases(load_policies(policy_file), load_cases(cases_file))
    except PolicyConfigError as exc:
        for location, message in exc.problems:
            click.echo(f"{location}: {message}")
        raise SystemExit(1) from None
    failed = 0
    for result in results:
        case, verdict = result.case, result.verdict
        if result.passed:
            click.echo(f"PASS  {case.name}")
            continue
        failed += 1
        expected = case.action.value + (f" by {case.rule}" if case.rule else "")
        got = verdict.action.value + (
            f" by {verdict.rule.id}" if verdict.rule is not None else " (no rule matched)"
        )
        click.echo(f"FAIL  {case.name} ({case.location}): expected {expected}, got {got}")
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)


cli.add_command(runs)
cli.add_command(replay)
cli.add_command(serve)
cli.add_command(approvals)
cli.add_command(approvers)
cli.add_command(mcp)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def limit_lines(rules: RuleSet) -> list[str]:
    """What each budget and rate limit of ``rules`` allows, in words, and where they keep count."""
    lines = []
    for budget in rules.budgets:
        period = (
            "in all"
            if budget.period is None
            else f"per {budget.period}"
            if isinstance(budget.period, str)
            else f"per {budget.period:g}s"
        )
        limits = [f"{budget.limit:g} per {budget.per}"] if budget.limit is not None else []
        limits += [f"{limit:g} for {key}" for key, limit in budget.limits.items()]
        changed = ", ".join([*budget.set, *budget.redact, *budget.clamp])
        over = {
            "reject": "is refused (BudgetExceededError)",
            "alert": "runs, and a warning is logged",
            "downgrade": f"runs with {changed} changed",
        }[budget.mode]
        lines.append(
            f"budget {budget.id!r}: {', '.join(limits)} {period}. A call whose estimate (cost=) would take "
            f"spend over it {over}; estimates are reserved at the check and settled to the actual cost after."
        )
    for rate in rules.rate_limits:
        limits = (
            [f"{rate.limit:g} calls per {rate.seconds:g}s per {rate.per}"] if rate.limit is not None else []
        )
        limits += [f"{limit:g} for {key}" for key, limit in rate.limits.items()]
        lines.append(
            f"rate limit {rate.id!r}: {', '.join(limits)} (the limit is also the burst); a call over it "
            "is refused (PolicyViolationError)."
        )
    if lines:
        lines.append(
            "budgets and rate limits count in the store of PROCTOR_STORE (or set_store()), else in the "
            "run log's database ($PROCTOR_DB): shared by every process that uses it, kept across restarts."
        )
    return lines


def spend_notes(rules: RuleSet) -> list[str]:
    """What a refusing rule on ``cost_today`` or ``cost_run`` does and does not cap, one note per rule."""
    from proctor.rules.compiler import facts_used

    notes = []
    compiled = [*rules.rules, *(rules.after.rules if rules.after is not None else ())]
    for each in compiled:
        rule = each.rule
        if rule.action not in ("deny", "terminate", "require_approval"):
            continue
        for fact in sorted(facts_used(rule.when, named=True) & {"cost_today", "cost_run"}):
            notes.append(
                f"rule {rule.id!r} reads {fact}: the spend before the call, running calls' estimates "
                f"included. A call it lets through can still take spend past the limit; "
                f"{fact}_with_call (the spend with this call's estimate) makes the limit a hard cap"
            )
    return notes
