"""Rule decisions and ``@runlog`` overhead: proctor against agent-os-kernel's PolicyEvaluator, in one run.

Run it by hand (the lead wires ``make bench``)::

    .venv/bin/pip install agent-os-kernel       # optional; its rows are skipped without it
    .venv/bin/python bench/rules.py             # the full run, about 15 seconds
    .venv/bin/python bench/rules.py --quick     # a smoke run, seconds

agent-os-kernel (MIT) is a peer to measure against, never a dependency of
proctor: this script only imports and calls it.

What is measured (from the issue):

- **Decisions.** Rule sets of 1, 10 and 100 rules, compiled once with
  ``proctor.rules.parse_policies(mapping)``; one decision is
  ``RuleSet.evaluate(Facts(...))``. The rules are mostly keyed on a literal
  tool name (``tool: db.query``, spread over 41 tools) with a numeric
  (``gt``), ``starts_with`` or ``in`` condition on an argument; every tenth
  rule is a general one (``cost`` above a limit, the agent in a list, tool
  names by prefix or in a list), and two rules (one in the 10-rule set) are
  ``any:`` combinations. The actions are a fixed pool of 1,000 actions
  (seeded), of which most match no rule and a few match one or more; the
  actions are built before the timing. Each decision is timed on its own with
  ``time.perf_counter_ns()`` around the one call, after an untimed warm-up;
  the p50 and p99 are over ``--decisions`` decisions per run, and the table
  shows the median of ``--repeat`` runs. Nothing is subtracted: the figures
  include the two clock reads, whose own cost the header prints.
- **The same decisions through agent-os-kernel**: its
  ``agent_os.policies.evaluator.PolicyEvaluator`` with one ``PolicyDocument``
  holding the equivalent rules, on the equivalent context dicts, timed the
  same way. Its rules have one condition each (field, operator, value) over a
  flat context dict, and the first matching rule by priority decides. So the
  rule sets are built to be expressible in both and to decide alike:

  * a proctor rule ``{tool: T, args.n: {gt: 5}}`` is the agent-os condition
    ``T.n gt 5``, the context holding each argument under ``"<tool>.<name>"``
    (the flat equivalent of "argument n of tool T"); ``starts_with: p`` is
    ``matches ^p`` (escaped); an ``any:`` of k conditions is k agent-os rules
    with the rule's name and action (so agent-os holds 1, 11 and 102 rules);
  * proctor lets the strictest matching action win, then priority, then file
    order; agent-os takes the first match by priority (a stable sort, so file
    order among equals). The agent-os priority of each rule is therefore its
    action's strictness (terminate > deny > log), and the actions map
    log -> audit, deny -> deny, terminate -> block.

  Both engines' decisions (action and deciding rule) are compared on every
  action of the pool; the table shows how many agree.
- **The decorator.** ``@runlog(service=..., policies=<the 10-rule mapping>,
  name="bench.noop")`` on ``def f(x, y=1): return x``, called as ``f(1)``:
  at top level (each call is a run) and as a tool call inside a decorated
  outer function (one run, many tool calls: the common case in agents). The
  10-rule set holds a rule on ``bench.noop`` (``args.x > 1000`` denies, which
  the script checks) besides the general rules, so each call builds its
  facts, runs its candidate rules, and is allowed. Against the bare function
  and a trivial pass-through decorator. Each call is timed on its own
  (p50, p99), and a batch of the same number of calls is timed as a whole
  (mean per call, no clock reads per call). The overhead is the decorated
  figure minus the bare function's (p50 minus p50, p99 minus p99, mean minus
  mean).

The garbage collector stays on (what an engine allocates is part of its cost)
and is run before each timed block. The last table checks the issue's targets
and says PASS or FAIL with the measured figure. The exit status is 0 whatever
the figures: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import importlib.metadata
import importlib.util
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from _report import (
    Target,
    fmt,
    machine_lines,
    percentile_us,
    positive,
    ratio,
    status,
    targets_table,
    time_empty,
)
from proctor import runlog
from proctor.errors import RuleViolationError
from proctor.rules import Facts, RuleSet, Verdict, parse_policies
from proctor.runs.default import set_run_log

DEFAULT_DECISIONS = 20_000
DEFAULT_REPEAT = 5
QUICK_DECISIONS = 2_000
QUICK_REPEAT = 2
WARMUP = 2_000  # untimed decisions or calls before the first timed run of each configuration
RULE_COUNTS = (1, 10, 100)
ACTIONS = 1_000  # distinct actions, cycled through in a fixed shuffled order
SEED = 20_240_607

SERVICE = "bench"
DECORATED_TOOL = "bench.noop"
OUTER_TOOL = "bench.agent"
DECORATOR_RULES = 10

PEER_DIST = "agent-os-kernel"

# The issues' targets.
TARGET_PASSTHROUGH_RATIO = 40.0  # issue 11: the default path (a policy file, cost=) against a bare wrapper
TARGET_OVERHEAD_P50_US = 5.0
TARGET_P99_US = 20.0
TARGET_P99_RULES = 100
TARGET_SPEEDUP = 2.0
TARGET_TELEMETRY_RATIO = 1.2  # issue 14: telemetry on (a no-op tracer provider, a registry) against off
SPEEDUP_RULES = (10, 100)
BARE_DECORATOR_REFERENCE_US = 0.15
BIND_REFERENCE_US = "2-3"

# proctor's action -> agent-os's action and priority (its strictness: agent-os takes the first match).
PEER_ACTION = {"allow": "allow", "log": "audit", "deny": "deny", "terminate": "block"}
STRICTNESS = {"log": 1, "deny": 4, "terminate": 5}


# --------------------------------------------------------------------------- tools and rules


@dataclass(frozen=True)
class Tool:
    """A tool the actions call, with the three arguments its rules look at."""

    name: str
    number: str  # a numeric argument; above ``limit`` is risky
    limit: int
    text: str  # a text argument; starting with ``risky_prefix`` is risky
    risky_prefix: str
    texts: tuple[str, ...]
    choice: str  # an argument taking one of a few values; ``risky_choices`` are risky
    risky_choices: tuple[Any, ...]
    choices: tuple[Any, ...]


_NAMESPACES: tuple[tuple[Any, ...], ...] = (
    # namespace, verbs; number argument, its limit; text argument, its risky prefix, ordinary values;
    # choice argument, its risky values, ordinary values.
    ("db", ("query", "insert", "update", "export"), "limit", 1000, "table", "pg_",
     ("orders", "users", "events"), "mode", ("bulk", "unsafe"), ("read", "write")),
    ("fs", ("read", "write", "delete", "list"), "size", 10_000_000, "path", "/etc/",
     ("/srv/data/a.csv", "/srv/tmp/b.json", "/home/app/c.txt"), "encoding", ("binary",), ("utf-8", "ascii")),
    ("http", ("get", "post", "put", "delete"), "timeout", 30, "url", "http://",
     ("https://api.example.com/v1", "https://docs.example.org/x"), "proxy", ("none",), ("corp", "direct")),
    ("email", ("send", "draft", "forward", "reply"), "recipients", 50, "to", "all-",
     ("alice@example.com", "bob@example.com", "ops@example.com"), "priority", ("urgent",), ("low", "normal")),
    ("payments", ("refund", "charge", "payout", "transfer"), "amount", 500, "account", "ext-",
     ("acct-1001", "acct-2002", "acct-3003"), "currency", ("BTC", "XMR"), ("USD", "EUR", "GBP")),
    ("crm", ("search", "update", "export", "merge"), "limit", 5000, "query", "SELECT",
     ("name:ada", "city:paris", "tag:vip"), "scope", ("all",), ("team", "mine")),
    ("calendar", ("create", "invite", "cancel", "list"), "attendees", 100, "title", "[external]",
     ("standup", "1:1", "planning"), "visibility", ("public",), ("private", "team")),
    ("slack", ("post", "dm", "upload", "invite"), "length", 4000, "channel", "#general",
     ("#team-a", "#team-b", "#alerts"), "kind", ("broadcast",), ("message", "thread")),
    ("github", ("merge", "push", "release", "comment"), "files", 200, "branch", "main",
     ("feature/x", "fix/y", "docs/z"), "visibility", ("public",), ("private", "internal")),
    ("shell", ("exec", "run", "spawn", "kill"), "timeout", 600, "command", "rm ",
     ("ls -l", "cat a.txt", "echo hi"), "user", ("root",), ("app", "nobody")),
)  # fmt: skip

TOOLS: tuple[Tool, ...] = (
    # The decorated function's tool: f(x, y=1). Its rules read x and y.
    Tool(DECORATED_TOOL, "x", 1000, "label", "tmp-", ("a", "b"), "y", (7, 8), (1, 2)),
    *(
        Tool(f"{ns}.{verb}", number, limit, text, prefix, texts, choice, risky, ordinary)
        for ns, verbs, number, limit, text, prefix, texts, choice, risky, ordinary in _NAMESPACES
        for verb in verbs
    ),
)
UNRULED_TOOLS = ("search.web", "kb.lookup", "weather.get", "math.eval", "legacy.ftp", "notes.add")
ADMIN_TOOLS = ("admin.reset", "admin.grant", "sudo.shell")
AGENTS = tuple(f"agent-{i:02d}" for i in range(30))
BOTS = ("intern-bot", "sandbox-bot", "eval-bot")


@dataclass(frozen=True)
class RuleSpec:
    """One rule, as a proctor rule and as the agent-os conditions that decide the same."""

    id: str
    action: str  # proctor's action: log, deny or terminate
    when: dict[str, Any]
    peer: tuple[tuple[str, str, Any], ...]  # agent-os (field, operator, value): any one matching decides


def _keyed(rule_id: str, tool: Tool, template: int) -> RuleSpec:
    """A rule on one tool (by literal name) and one of its arguments."""
    if template == 0:
        return RuleSpec(
            rule_id,
            "deny",
            {"tool": tool.name, f"args.{tool.number}": {"gt": tool.limit}},
            ((f"{tool.name}.{tool.number}", "gt", tool.limit),),
        )
    if template == 1:
        return RuleSpec(
            rule_id,
            "deny",
            {"tool": tool.name, f"args.{tool.text}": {"starts_with": tool.risky_prefix}},
            ((f"{tool.name}.{tool.text}", "matches", "^" + re.escape(tool.risky_prefix)),),
        )
    return RuleSpec(
        rule_id,
        "log",
        {"tool": tool.name, f"args.{tool.choice}": list(tool.risky_choices)},
        ((f"{tool.name}.{tool.choice}", "in", list(tool.risky_choices)),),
    )


def _any(rule_id: str, tool: Tool) -> RuleSpec:
    """A rule on one tool: a big number or a risky text."""
    return RuleSpec(
        rule_id,
        "deny",
        {
            "tool": tool.name,
            "any": [
                {f"args.{tool.number}": {"gt": tool.limit}},
                {f"args.{tool.text}": {"starts_with": tool.risky_prefix}},
            ],
        },
        (
            (f"{tool.name}.{tool.number}", "gt", tool.limit),
            (f"{tool.name}.{tool.text}", "matches", "^" + re.escape(tool.risky_prefix)),
        ),
    )


def _general(rule_id: str, j: int) -> RuleSpec:
    """A rule on every action, or on tools named by a list or a prefix."""
    kind = j % 4
    if kind == 0:
        limit = 2.0 + j
        return RuleSpec(rule_id, "log", {"cost": {"gt": limit}}, (("cost", "gt", limit),))
    if kind == 1:
        bots = [BOTS[j % 3], BOTS[(j + 1) % 3]]
        return RuleSpec(rule_id, "log", {"agent": {"in": bots}}, (("agent", "in", bots),))
    if kind == 2:
        prefix = ("admin.", "sudo.")[j // 4 % 2]
        return RuleSpec(
            rule_id,
            "terminate",
            {"tool": {"starts_with": prefix}},
            (("tool", "matches", "^" + re.escape(prefix)),),
        )
    tools = [["shell.kill"], ["github.release", "legacy.ftp"]][j // 4 % 2]
    return RuleSpec(rule_id, "deny", {"tool": tools}, (("tool", "in", tools),))


def build_rules(count: int) -> list[RuleSpec]:
    """``count`` rules: every tenth general, two ``any:`` combinations, the rest keyed on a tool."""
    rules: list[RuleSpec] = []
    keyed = 0
    for i in range(count):
        rule_id = f"r{i:03d}"
        if i % 10 == 9:
            rules.append(_general(rule_id, i // 10))
        elif i % 50 == 4:
            rules.append(_any(rule_id, TOOLS[(3 + 17 * (i // 50)) % len(TOOLS)]))
        else:
            # Tool k, template k % 3: with 41 tools, a tool's later rules take the other templates.
            rules.append(_keyed(rule_id, TOOLS[keyed % len(TOOLS)], keyed % 3))
            keyed += 1
    return rules


def proctor_mapping(rules: Sequence[RuleSpec]) -> dict[str, Any]:
    """The policy file, as the mapping ``parse_policies`` takes."""
    return {
        "policies": [
            {"id": rule.id, "when": rule.when, "action": rule.action, "message": f"bench rule {rule.id}"}
            for rule in rules
        ]
    }


def peer_evaluator(peer: Peer, rules: Sequence[RuleSpec]) -> Any:
    """An agent-os PolicyEvaluator deciding as the proctor rules do (see the module docstring)."""
    schema = peer.schema
    policy_rules = [
        schema.PolicyRule(
            name=rule.id,
            condition=schema.PolicyCondition(field=field_, operator=operator, value=value),
            action=PEER_ACTION[rule.action],
            priority=STRICTNESS[rule.action],
            message=f"bench rule {rule.id}",
        )
        for rule in rules
        for field_, operator, value in rule.peer
    ]
    document = schema.PolicyDocument(name=f"bench-{len(rules)}", rules=policy_rules)
    return peer.evaluator.PolicyEvaluator([document])


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class ActionSpec:
    agent: str
    tool: str
    args: dict[str, Any]
    cost: float


def build_actions(count: int, rng: random.Random) -> list[ActionSpec]:
    """``count`` actions; each risky value is rare, so most actions match no rule."""
    actions = []
    for _ in range(count):
        agent = rng.choice(BOTS) if rng.random() < 0.02 else rng.choice(AGENTS)
        cost = round(rng.uniform(2.5, 12.0), 3) if rng.random() < 0.02 else round(rng.uniform(0.0, 1.0), 4)
        draw = rng.random()
        if draw < 0.90:
            tool = rng.choice(TOOLS)
            args = {
                tool.number: rng.randint(tool.limit + 1, 2 * tool.limit)
                if rng.random() < 0.03
                else rng.randint(0, tool.limit),
                tool.text: tool.risky_prefix + "x" if rng.random() < 0.03 else rng.choice(tool.texts),
                tool.choice: rng.choice(tool.risky_choices)
                if rng.random() < 0.03
                else rng.choice(tool.choices),
            }
            actions.append(ActionSpec(agent, tool.name, args, cost))
        else:
            name = rng.choice(UNRULED_TOOLS) if draw < 0.98 else rng.choice(ADMIN_TOOLS)
            actions.append(ActionSpec(agent, name, {"q": f"question {rng.randint(0, 99)}"}, cost))
    return actions


def proctor_facts(action: ActionSpec) -> Facts:
    """The facts ``@runlog`` would build for a tool call inside a run."""
    return Facts(
        agent=action.agent,
        service=SERVICE,
        tool=action.tool,
        args=action.args,
        input={"task": "bench"},
        cost=action.cost,
        cost_run=0.0,
        tool_calls_in_run=1,
        same_call_in_run=0,
    )


def peer_context(action: ActionSpec) -> dict[str, Any]:
    """The same action as an agent-os context: flat, each argument under ``<tool>.<name>``."""
    context: dict[str, Any] = {
        "agent": action.agent,
        "service": SERVICE,
        "tool": action.tool,
        "cost": action.cost,
    }
    context.update((f"{action.tool}.{name}", value) for name, value in action.args.items())
    return context


def proctor_decision(verdict: Verdict) -> tuple[str, str | None]:
    """A proctor verdict in agent-os terms: (action, deciding rule)."""
    return PEER_ACTION[verdict.action.value], verdict.rule.id if verdict.rule is not None else None


def peer_decision(decision: Any) -> tuple[str, str | None]:
    return str(decision.action), decision.matched_rule


# --------------------------------------------------------------------------- timing


def time_each(decide: Callable[[Any], object], inputs: Sequence[Any], count: int) -> list[int]:
    """Nanoseconds of each of ``count`` calls ``decide(input)``, inputs cycled."""
    clock = time.perf_counter_ns
    size = len(inputs)
    samples = [0] * count
    for i in range(count):
        item = inputs[i % size]
        start = clock()
        decide(item)
        samples[i] = clock() - start
    return samples


def time_calls(function: Callable[[int], object], count: int) -> list[int]:
    """Nanoseconds of each of ``count`` calls ``function(1)``."""
    clock = time.perf_counter_ns
    samples = [0] * count
    for i in range(count):
        start = clock()
        function(1)
        samples[i] = clock() - start
    return samples


def time_batch(
    function: Callable[[int], object], count: int, clock: Callable[[], int] = time.perf_counter_ns
) -> float:
    """Mean nanoseconds per call of ``count`` calls ``function(1)`` timed as a whole (loop included)."""
    start = clock()
    for _ in range(count):
        function(1)
    return (clock() - start) / count


@dataclass
class Timing:
    """The runs of one configuration: per run, the p50 and p99 (and batch mean) in microseconds."""

    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    error: str | None = None

    def add(self, samples: Sequence[int]) -> None:
        self.p50s.append(percentile_us(samples, 0.50))
        self.p99s.append(percentile_us(samples, 0.99))

    @property
    def p50(self) -> float | None:
        return statistics.median(self.p50s) if self.p50s and self.error is None else None

    @property
    def p99(self) -> float | None:
        return statistics.median(self.p99s) if self.p99s and self.error is None else None

    @property
    def mean(self) -> float | None:
        return statistics.median(self.means) if self.means and self.error is None else None

    @property
    def spread(self) -> str:
        if not self.p50s or self.error is not None:
            return ""
        return f"{min(self.p50s):.2f}-{max(self.p50s):.2f}"


# --------------------------------------------------------------------------- decisions


@dataclass
class Peer:
    """agent-os-kernel's modules (typed Any: imported by name, optional) and its version."""

    evaluator: Any
    schema: Any
    version: str


def load_peer() -> tuple[Peer | None, str]:
    """agent-os-kernel, or None and why not."""
    try:
        evaluator = importlib.import_module("agent_os.policies.evaluator")
        schema = importlib.import_module("agent_os.policies.schema")
    except ImportError as exc:
        return None, f"not importable ({exc})"
    try:
        version = importlib.metadata.version(PEER_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return Peer(evaluator, schema, version), ""


@dataclass
class RuleSetup:
    """One rule count: both engines' rule sets and inputs, and how their decisions compare."""

    count: int
    ruleset: RuleSet
    facts: list[Facts]
    peer: Any = None
    peer_rules: int = 0
    contexts: list[dict[str, Any]] = field(default_factory=list)
    matching: int = 0  # actions on which some proctor rule matches
    agree: int = 0
    disagreement: str = ""


def setup_rules(
    count: int, actions: Sequence[ActionSpec], order: Sequence[int], peer: Peer | None
) -> RuleSetup:
    specs = build_rules(count)
    ruleset = parse_policies(proctor_mapping(specs), f"<{count} rules>")
    setup = RuleSetup(count, ruleset, [proctor_facts(actions[i]) for i in order])
    setup.matching = sum(1 for facts in setup.facts if ruleset.evaluate(facts).matched)
    if peer is not None:
        setup.peer = peer_evaluator(peer, specs)
        setup.peer_rules = sum(len(spec.peer) for spec in specs)
        setup.contexts = [peer_context(actions[i]) for i in order]
        for facts, context in zip(setup.facts, setup.contexts, strict=True):
            ours = proctor_decision(ruleset.evaluate(facts))
            theirs = peer_decision(setup.peer.evaluate(context))
            if ours == theirs:
                setup.agree += 1
            elif not setup.disagreement:
                setup.disagreement = f"{context}: proctor {ours}, agent-os {theirs}"
    return setup


PROCTOR = "proctor"
AGENT_OS = "agent-os"


def measure_decisions(
    setups: Sequence[RuleSetup], decisions: int, repeat: int, progress: Callable[[str], None]
) -> dict[tuple[str, int], Timing]:
    """Both engines at every rule count; rounds interleaved so that drift hits all alike."""
    configs: list[tuple[str, RuleSetup, Callable[[Any], object], Sequence[Any]]] = []
    for setup in setups:
        configs.append((PROCTOR, setup, setup.ruleset.evaluate, setup.facts))
        if setup.peer is not None:
            configs.append((AGENT_OS, setup, setup.peer.evaluate, setup.contexts))
    results = {(engine, setup.count): Timing() for engine, setup, _, _ in configs}
    for engine, setup, decide, inputs in configs:
        progress(f"{setup.count} rules, {engine}: warm-up")
        time_each(decide, inputs, min(decisions, WARMUP))
    for round_ in range(repeat):
        for engine, setup, decide, inputs in configs:
            progress(f"{setup.count} rules, {engine}: run {round_ + 1} of {repeat}")
            gc.collect()
            results[engine, setup.count].add(time_each(decide, inputs, decisions))
    return results


# --------------------------------------------------------------------------- decorator


def noop(x: Any, y: Any = 1) -> Any:
    return x


def passthrough(function: Callable[..., Any]) -> Callable[..., Any]:
    """A trivial decorator: what any wrapper costs."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


BARE = "bare function"
PASSTHROUGH = "pass-through decorator"
TOP = "@runlog, mapping: top-level call (a run each)"
NESTED = "@runlog, mapping: tool call inside a run"
TOP_FILE = "@runlog, file + cost=: top-level call"
NESTED_FILE = "@runlog, file + cost=: tool call inside a run"
TOP_TELEMETRY = "@runlog, file + cost=, telemetry on: top-level call"
NESTED_TELEMETRY = "@runlog, file + cost=, telemetry on: tool call inside a run"
TELEMETRY_OF = {TOP_TELEMETRY: TOP_FILE, NESTED_TELEMETRY: NESTED_FILE}  # -> the same without telemetry
DECORATOR_CONFIGS = (BARE, PASSTHROUGH, TOP, NESTED, TOP_FILE, NESTED_FILE, TOP_TELEMETRY, NESTED_TELEMETRY)
# a tool call's configuration -> its top-level one
OUTER_OF = {NESTED: TOP, NESTED_FILE: TOP_FILE, NESTED_TELEMETRY: TOP_FILE}
ESTIMATE = 0.5  # the cost= of the default path


@dataclass
class DecoratorSetup:
    functions: dict[str, Callable[[int], object]]
    outers: dict[str, Callable[[str, int], Any]]  # by the configuration of the top-level call
    denied: str  # what the check that the rules are in force found


def setup_decorator(mapping: dict[str, Any], folder: Path) -> DecoratorSetup:
    """The decorated functions: the rules given as a mapping, and as a policy file with ``cost=``."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    tools = {
        TOP: runlog(service=SERVICE, policies=mapping, name=DECORATED_TOOL)(noop),
        TOP_FILE: runlog(service=SERVICE, policies=str(path), name=DECORATED_TOOL, cost=ESTIMATE)(noop),
    }
    outers: dict[str, Callable[[str, int], Any]] = {}
    for config, tool in tools.items():

        def agent(how: str, count: int, tool: Callable[[int], object] = tool) -> Any:
            # Inside a run: each call of ``tool`` is a tool call of this run.
            if how == "each":
                return time_calls(tool, count)
            return time_batch(tool, count, time.thread_time_ns if how == "cpu" else time.perf_counter_ns)

        policies: Any = mapping if config == TOP else str(path)
        outers[config] = runlog(service=SERVICE, policies=policies, name=OUTER_TOOL)(agent)
    denied = []
    for config, tool in tools.items():
        try:
            tool(10 * TOOLS[0].limit)
        except RuleViolationError as exc:
            denied.append(
                f"{config.removeprefix('@runlog, ').split(':')[0]}: f({10 * TOOLS[0].limit}) "
                f"is denied by rule {exc.args[0]!r}"
            )
        else:
            denied.append(
                f"[red]{config}: f({10 * TOOLS[0].limit}) was NOT denied: the rules are not in force[/red]"
            )
    functions = {BARE: noop, PASSTHROUGH: passthrough(noop), **tools, TOP_TELEMETRY: tools[TOP_FILE]}
    return DecoratorSetup(functions, outers, "; ".join(denied))


NOOP = "a no-op tracer provider"
SAMPLED_OUT = "an SDK TracerProvider sampling nothing (ALWAYS_OFF)"


def telemetry_on(tracer: str = NOOP) -> Callable[[], None] | None:
    """Turn proctor's telemetry on as issue 14's row has it: spans on a no-op tracer provider (or an
    SDK provider whose sampler drops every span), metrics in a registry of their own (never
    scraped); returns what turns it off, or None without the extras."""
    try:
        from opentelemetry.trace import NoOpTracerProvider, TracerProvider
        from prometheus_client import CollectorRegistry
    except ImportError:
        return None
    from proctor import telemetry

    provider: TracerProvider = NoOpTracerProvider()
    if tracer == SAMPLED_OUT:
        from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        provider = SDKTracerProvider(sampler=ALWAYS_OFF)
    telemetry.enable(tracing=True, metrics=True, tracer_provider=provider, registry=CollectorRegistry())
    return telemetry.disable


PAIRED_BLOCKS = 100  # telemetry on/off blocks, alternated, for the paired ratio
PAIRED_CALLS = 2_000  # calls per block


def paired_telemetry_ratios(
    setup: DecoratorSetup, blocks: int, calls: int
) -> dict[tuple[str, str], list[float]]:
    """Per telemetry configuration and tracer, the ratios on/off of the thread's CPU time for blocks
    of ``calls`` calls, the two blocks of a pair back to back (which goes first alternates): a
    machine whose load drifts slows both alike, so their ratio holds where a ratio of two medians
    taken apart does not, and CPU time leaves out the time other processes took the core."""
    ratios: dict[tuple[str, str], list[float]] = {}
    for config, without in TELEMETRY_OF.items():

        def block(config: str = without) -> float:
            if config in OUTER_OF:
                mean: float = setup.outers[OUTER_OF[config]]("cpu", calls)
                return mean
            return time_batch(setup.functions[config], calls, time.thread_time_ns)

        for tracer in (NOOP, SAMPLED_OUT):
            found = ratios[config, tracer] = []
            for index in range(blocks):
                gc.collect()
                off_first = index % 2 == 0
                off = block() if off_first else 0.0
                stop = telemetry_on(tracer)
                assert stop is not None
                try:
                    on = block()
                finally:
                    stop()
                if not off_first:
                    off = block()
                found.append(on / off)
    return ratios


def telemetry_installed() -> bool:
    """Whether the otel and prometheus extras are installed (the telemetry rows need both)."""
    return all(importlib.util.find_spec(name) is not None for name in ("opentelemetry", "prometheus_client"))


def telemetry_off_check_ns() -> float:
    """What the drivers pay per call while telemetry is off: reading ``_hook.active`` and testing it
    (twice: when the call opens and when it closes), in ns, less an empty loop's iteration."""
    import timeit

    from proctor.telemetry import _hook

    number = 1_000_000
    check = min(timeit.repeat("a = h.active\nif a is not None: pass", globals={"h": _hook}, number=number))
    empty = min(timeit.repeat("pass", number=number))
    return 2 * (check - empty) / number * 1e9


def measure_decorator(
    setup: DecoratorSetup, calls: int, repeat: int, progress: Callable[[str], None]
) -> dict[str, Timing]:
    results = {config: Timing() for config in DECORATOR_CONFIGS}

    def each(config: str, count: int) -> list[int]:
        off = telemetry_on() if config in TELEMETRY_OF else None
        try:
            if config in OUTER_OF:
                samples: list[int] = setup.outers[OUTER_OF[config]]("each", count)
                return samples
            return time_calls(setup.functions[config], count)
        finally:
            if off is not None:
                off()

    def batch(config: str, count: int) -> float:
        off = telemetry_on() if config in TELEMETRY_OF else None
        try:
            if config in OUTER_OF:
                mean: float = setup.outers[OUTER_OF[config]]("batch", count)
                return mean
            return time_batch(setup.functions[config], count)
        finally:
            if off is not None:
                off()

    configs = [config for config in DECORATOR_CONFIGS if config not in TELEMETRY_OF or telemetry_installed()]
    for config in configs:
        progress(f"{config}: warm-up")
        each(config, min(calls, WARMUP))
    for round_ in range(repeat):
        for config in configs:
            progress(f"{config}: run {round_ + 1} of {repeat}")
            gc.collect()
            results[config].add(each(config, calls))
            gc.collect()
            results[config].means.append(batch(config, calls) / 1000.0)
    return results


# --------------------------------------------------------------------------- report


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def decisions_table(
    setups: Sequence[RuleSetup],
    results: dict[tuple[str, int], Timing],
    decisions: int,
    repeat: int,
    peer: Peer | None,
) -> Table:
    table = Table(
        title=f"Decisions: proctor RuleSet.evaluate(Facts) vs agent-os PolicyEvaluator.evaluate(dict); "
        f"{decisions:,} decisions per run, {ACTIONS:,} distinct actions",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("rules", justify="right")
    table.add_column("engine")
    table.add_column("rules loaded", justify="right")
    table.add_column(f"p50 us (median of {repeat})", justify="right")
    table.add_column(f"p99 us (median of {repeat})", justify="right")
    table.add_column("p50 min-max", justify="right", style="dim")
    table.add_column("speed-up (p50)", justify="right")
    table.add_column("actions matching a rule", justify="right")
    table.add_column("same decision", justify="right")
    notes: list[str] = []
    for setup in setups:
        ours = results[PROCTOR, setup.count]
        theirs = results.get((AGENT_OS, setup.count))
        match_rate = f"{setup.matching}/{len(setup.facts)} ({setup.matching / len(setup.facts):.0%})"
        agree = ""
        if setup.peer is not None:
            same = setup.agree == len(setup.contexts)
            agree = f"{'[green]' if same else '[red]'}{setup.agree}/{len(setup.contexts)}[/]"
            if setup.disagreement:
                notes.append(f"{setup.count} rules, first disagreement: {setup.disagreement}")
        speedup = ratio(theirs.p50 if theirs is not None else None, ours.p50)
        table.add_row(
            str(setup.count),
            PROCTOR,
            str(len(setup.ruleset)),
            fmt(ours.p50),
            fmt(ours.p99),
            ours.spread,
            fmt(speedup, ".1f", "x"),
            match_rate,
            agree,
        )
        if theirs is not None:
            table.add_row(
                "",
                "agent-os-kernel",
                str(setup.peer_rules),
                fmt(theirs.p50),
                fmt(theirs.p99),
                theirs.spread,
                "1.0x",
                "",
                "",
            )
        elif peer is None:
            table.add_row("", "agent-os-kernel", "-", "n/a", "n/a", "", "", "", "")
        if setup is not setups[-1]:
            table.add_section()
    if notes:
        table.caption = "\n".join(notes)
    return table


def decorator_table(results: dict[str, Timing], calls: int, repeat: int, denied: str) -> Table:
    table = Table(
        title=f"Decorator: @runlog(service=..., policies=<{DECORATOR_RULES} rules>, name={DECORATED_TOOL!r}) "
        f"on def f(x, y=1): return x, called f(1); {calls:,} calls per run",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("configuration")
    table.add_column("p50 us/call", justify="right")
    table.add_column("p99 us/call", justify="right")
    table.add_column("p50 min-max", justify="right", style="dim")
    table.add_column("batch mean us/call", justify="right")
    table.add_column("overhead p50", justify="right")
    table.add_column("overhead p99", justify="right")
    table.add_column("overhead (batch mean)", justify="right")
    bare = results[BARE]
    for config in DECORATOR_CONFIGS:
        timing = results[config]
        same = config == BARE
        table.add_row(
            config,
            fmt(timing.p50),
            fmt(timing.p99),
            timing.spread,
            fmt(timing.mean),
            "" if same else fmt(_minus(timing.p50, bare.p50)),
            "" if same else fmt(_minus(timing.p99, bare.p99)),
            "" if same else fmt(_minus(timing.mean, bare.mean)),
        )
    table.caption = (
        f"p50/p99: each call timed on its own; batch mean: {calls:,} calls timed as a whole. "
        f"Figures are medians of {repeat} runs; overhead = decorated - bare (p50 - p50, p99 - p99). "
        f"Rules in force: {denied}. Telemetry on: proctor.telemetry.enable() with a no-op tracer provider "
        f"(whose tracer makes no span, so proctor starts none) and a CollectorRegistry of its own; the "
        f"targets add an SDK provider that samples nothing. Off, a call tests "
        f"proctor.telemetry._hook.active twice, {telemetry_off_check_ns():.0f} ns."
    )
    return table


def targets(
    setups: Sequence[RuleSetup],
    decisions: dict[tuple[str, int], Timing],
    decorator: dict[str, Timing],
    peer: Peer | None,
    paired: dict[tuple[str, str], list[float]],
) -> list[Target]:
    out: list[Target] = []
    bare = decorator[BARE]
    passthrough_overhead = _minus(decorator[PASSTHROUGH].p50, bare.p50)
    through = decorator[PASSTHROUGH]
    for config in (TOP_FILE, NESTED_FILE):
        times = ratio(decorator[config].p50, through.p50)
        out.append(
            Target(
                f"@runlog without recording, {DECORATOR_RULES} rules from a file, cost={ESTIMATE:g}: "
                f"{config.split(': ')[1]}, p50 per call",
                f"<= {TARGET_PASSTHROUGH_RATIO:g}x a pass-through decorator",
                fmt(times, ".1f", "x"),
                f"{fmt(decorator[config].p50, '.2f', ' us')} against {fmt(through.p50, '.2f', ' us')}; "
                f"batch means: {fmt(ratio(decorator[config].mean, through.mean), '.1f', 'x')}",
                None if times is None else times <= TARGET_PASSTHROUGH_RATIO,
                "not measured",
            )
        )
    for config in (TOP, NESTED):
        overhead = _minus(decorator[config].p50, bare.p50)
        out.append(
            Target(
                f"decorator overhead p50, {DECORATOR_RULES} rules: {config.removeprefix('@runlog, ')}",
                f"<= {TARGET_OVERHEAD_P50_US:g} us",
                fmt(overhead, ".2f", " us"),
                f"pass-through decorator: {fmt(passthrough_overhead, '.2f', ' us')} "
                f"(issue: about {BARE_DECORATOR_REFERENCE_US:g})",
                None if overhead is None else overhead <= TARGET_OVERHEAD_P50_US,
                "not measured",
            )
        )
    for config, without in TELEMETRY_OF.items():
        times = ratio(decorator[config].p50, decorator[without].p50)
        means = ratio(decorator[config].mean, decorator[without].mean)
        out.append(
            Target(
                f"telemetry on (no-op tracer provider, a metric registry): {config.split(': ')[1]}, p50",
                f"<= {TARGET_TELEMETRY_RATIO:g}x the same call with telemetry off",
                fmt(times, ".2f", "x"),
                f"{fmt(decorator[config].p50, '.2f', ' us')} against "
                f"{fmt(decorator[without].p50, '.2f', ' us')}; batch means: {fmt(means, '.2f', 'x')}",
                None if times is None else times <= TARGET_TELEMETRY_RATIO,
                "not measured" if telemetry_installed() else "SKIP: the otel and prometheus extras",
            )
        )
        for tracer in (NOOP, SAMPLED_OUT):
            blocks = sorted(paired.get((config, tracer), ()))
            median = statistics.median(blocks) if blocks else None
            quartiles = statistics.quantiles(blocks, n=4) if len(blocks) >= 2 else None
            official = tracer == NOOP
            out.append(
                Target(
                    f"the same, paired (CPU time of {PAIRED_CALLS:,}-call blocks on and off back to back, "
                    f"median of {len(blocks)}), tracer: {tracer}",
                    f"<= {TARGET_TELEMETRY_RATIO:g}x" if official else "(not a target)",
                    fmt(median, ".3f", "x"),
                    f"quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}x" if quartiles else "",
                    None if median is None or not official else median <= TARGET_TELEMETRY_RATIO,
                    ("not measured" if official else "info")
                    if telemetry_installed()
                    else "SKIP: the otel and prometheus extras",
                )
            )
    by_count = {setup.count: setup for setup in setups}
    if TARGET_P99_RULES in by_count:
        p99 = decisions[PROCTOR, TARGET_P99_RULES].p99
        peer_p99 = decisions.get((AGENT_OS, TARGET_P99_RULES))
        out.append(
            Target(
                f"proctor decision p99, {TARGET_P99_RULES} rules",
                f"<= {TARGET_P99_US:g} us",
                fmt(p99, ".2f", " us"),
                f"agent-os-kernel: {fmt(peer_p99.p99 if peer_p99 else None, '.2f', ' us')}",
                None if p99 is None else p99 <= TARGET_P99_US,
                "not measured",
            )
        )
    for setup in setups:
        official = setup.count in SPEEDUP_RULES
        ours = decisions[PROCTOR, setup.count]
        theirs = decisions.get((AGENT_OS, setup.count))
        speedup = ratio(theirs.p50 if theirs is not None else None, ours.p50)
        agree = (
            f"same decision on {setup.agree}/{len(setup.contexts)} actions" if setup.peer is not None else ""
        )
        passed = speedup >= TARGET_SPEEDUP if official and speedup is not None else None
        if passed and setup.agree != len(setup.contexts):
            passed = False  # faster at deciding differently proves nothing
        out.append(
            Target(
                f"proctor vs agent-os-kernel (p50), {setup.count} rule{'s' if setup.count != 1 else ''}",
                f">= {TARGET_SPEEDUP:g}x faster" if official else "(not a target)",
                fmt(speedup, ".1f", "x"),
                f"p50 {fmt(ours.p50, '.2f')} vs {fmt(theirs.p50, '.2f')} us; {agree}"
                if theirs is not None
                else f"proctor p50 {fmt(ours.p50, '.2f')} us",
                passed,
                "not measured" if official else "info",
            )
        )
        if peer is None:
            out[-1].note = f"SKIP: {PEER_DIST} not installed"
    return out


def header_lines(peer: Peer | None) -> list[str]:
    clock = time.get_clock_info("perf_counter")
    return [
        *machine_lines({PEER_DIST: peer.version if peer is not None else None}),
        f"clock:   time.perf_counter_ns ({clock.implementation}, resolution {clock.resolution * 1e9:g} ns)",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-decision latency of proctor's compiled rules (1, 10, 100 rules) against "
        "agent-os-kernel's PolicyEvaluator, and the overhead of @runlog with 10 rules.",
        epilog="The exit status is 0 even when a target is missed: this prints a report.",
    )
    parser.add_argument(
        "--decisions",
        type=positive,
        default=None,
        help=f"timed decisions per run, and decorated calls per run (default {DEFAULT_DECISIONS:,}; "
        f"{QUICK_DECISIONS:,} with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=positive,
        default=None,
        help=f"runs per configuration; the median of their p50s and p99s is reported "
        f"(default {DEFAULT_REPEAT}; {QUICK_REPEAT} with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer decisions and runs: a smoke run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_run_log(None)  # the decorator without recording; bench/runlog.py measures what recording adds
    decisions: int = args.decisions or (QUICK_DECISIONS if args.quick else DEFAULT_DECISIONS)
    repeat: int = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)

    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    progress_console = Console(stderr=True)
    peer, peer_problem = load_peer()

    console.rule("proctor rules benchmark")
    for line in header_lines(peer):
        console.print(line)
    floor = time_empty(max(decisions, 10_000))
    console.print(
        f"timing:  each decision or call timed on its own with perf_counter_ns; an empty timed region "
        f"measures p50 {percentile_us(floor, 0.5):.3f} us, p99 {percentile_us(floor, 0.99):.3f} us "
        "(included in every per-call figure; nothing is subtracted)"
    )
    console.print(
        f"statistic: p50 and p99 over {decisions:,} decisions (calls) per run, median of {repeat} runs, "
        f"after {min(decisions, WARMUP):,} untimed ones; rounds interleaved; gc on, collected before each run"
    )
    if peer is None:
        console.print(
            f"[yellow]{PEER_DIST}: {peer_problem}.[/yellow] Install it with "
            f"`.venv/bin/pip install {PEER_DIST}`; its rows are skipped."
        )
    console.print()

    rng = random.Random(SEED)
    actions = build_actions(ACTIONS, rng)
    order = list(range(len(actions)))
    rng.shuffle(order)
    with status(progress_console, "decisions") as progress:
        progress("building the rule sets and comparing decisions")
        setups = [setup_rules(count, actions, order, peer) for count in RULE_COUNTS]
        decision_results = measure_decisions(setups, decisions, repeat, progress)
    console.print(decisions_table(setups, decision_results, decisions, repeat, peer))
    console.print()

    with status(progress_console, "decorator") as progress, tempfile.TemporaryDirectory() as folder:
        decorator = setup_decorator(proctor_mapping(build_rules(DECORATOR_RULES)), Path(folder))
        decorator_results = measure_decorator(decorator, decisions, repeat, progress)
        paired: dict[tuple[str, str], list[float]] = {}
        if telemetry_installed():
            progress("telemetry on/off, paired blocks")
            paired = paired_telemetry_ratios(decorator, PAIRED_BLOCKS, PAIRED_CALLS)
    console.print(decorator_table(decorator_results, decisions, repeat, decorator.denied))
    console.print()

    console.print(targets_table(targets(setups, decision_results, decorator_results, peer, paired)))
    if decisions < DEFAULT_DECISIONS or repeat < DEFAULT_REPEAT:
        console.print(
            f"[yellow]note: {decisions:,} decisions x {repeat} runs is not the issue's configuration "
            f"({DEFAULT_DECISIONS:,} x {DEFAULT_REPEAT}); treat the verdicts as a smoke test[/yellow]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
