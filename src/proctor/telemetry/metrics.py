"""Metrics: governed calls as Prometheus samples, and the ASGI app that serves them.

The metrics (labels are names from code and policy files, never a run, a user
or a session: their number stays small):

- ``proctor_decisions_total{action,rule,service}``: calls, by the action that
  decided them and its rule (``""`` when none matched);
- ``proctor_spend_total{service,agent}``: the actual cost of calls;
- ``proctor_budget_remaining{policy,agent}``: what a budget still lets an agent
  (or whatever its ``per`` counts) reserve, read from its store at scrape time,
  for the budgets and agents this process has had calls of;
- ``proctor_slot_wait_seconds{service}``: how long calls waited for a scheduler slot;
- ``proctor_approvals_pending``: calls waiting for a person now (``proctor serve``
  reports the durable queue's pending requests instead);
- ``proctor_store_fallbacks_total{kind,mode}``: decisions made without a store
  that did not answer (``proctor.stores.fallback``).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes, as gunicorn
runs them), prometheus-client keeps the samples in files of that directory and
``asgi_app()`` serves the sum over every process that wrote there.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from proctor.errors import ProctorError
from proctor.policy.budget import BudgetPolicy
from proctor.policy.enforcer import PolicyEnforcer
from proctor.rules.limits import FileLimit
from proctor.stores.fallback import fallbacks

if TYPE_CHECKING:
    from proctor.guard._call import Call
    from proctor.guard._flow import Guard

__all__ = ["APPROVALS_PENDING", "SLOT_WAIT_BUCKETS", "Metrics", "multiprocess", "scrape_registry"]

SLOT_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds: from a slot granted at once to one a queue held for minutes."""
APPROVALS_PENDING = "proctor_approvals_pending"
FALLBACK_SYNC_SECONDS = 1.0
"""In multiprocess mode, how often a process copies its fallback counts into its samples' file."""


def multiprocess() -> bool:
    """Whether prometheus-client writes samples to ``PROMETHEUS_MULTIPROC_DIR`` (set before the first
    metric is made)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))  # noqa: SIM112 (both, as prometheus-client reads them)


class Metrics:
    """proctor's metrics, registered in ``registry``; ``unregister()`` takes them out again."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.multiprocess = multiprocess()
        # In one process, each thread adds to dicts of its own, summed when scraped (a prometheus-client
        # counter takes a lock per sample); in multiprocess mode, counters write to the directory's files.
        self.totals: CallTotals | None = None if self.multiprocess else CallTotals()
        self.decisions = Counter(_DECISIONS, _DECISIONS_HELP, ("action", "rule", "service"), registry=None)
        self.spend = Counter(_SPEND, _SPEND_HELP, ("service", "agent"), registry=None)
        self.slot_wait = Histogram(
            _SLOT_WAIT,
            _SLOT_WAIT_HELP,
            ("service",),
            buckets=SLOT_WAIT_BUCKETS,
            registry=None,
        )
        self.approvals_pending = Gauge(
            APPROVALS_PENDING,
            "Governed calls waiting for a person's decision now.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.budgets = BudgetCollector()
        self.fallbacks = FallbackCounts(self.multiprocess)
        self._collectors: list[Collector] = [
            *((self.decisions, self.spend) if self.totals is None else (self.totals,)),
            *((self.slot_wait,) if self.totals is None else ()),
            self.approvals_pending,
            self.budgets,
            self.fallbacks,
        ]
        for collector in self._collectors:
            self.registry.register(collector)
        self._decided: dict[tuple[str, str, str], Any] = {}  # label values -> the counter's child
        self._spent: dict[tuple[str, str], Any] = {}
        self._waits: dict[str, Any] = {}

    def called(self, guard: Guard, call: Call, decided: tuple[str, str] | None) -> None:
        """Count one governed call that ended, its spend, and the budgets it was checked by.

        ``decided``: its action and rule, or None for the common case, allowed with no rule matched.
        """
        actual = call.actual
        totals = self.totals
        if totals is not None:
            tally = getattr(totals.local, "tally", None) or totals.mine()
            calls = tally.calls
            entry = calls.get(guard.names)
            if entry is None:
                entry = calls[guard.names] = [0, 0.0, {}]
            if decided is None:
                entry[0] += 1
            else:
                others = entry[2]
                others[decided] = others.get(decided, 0) + 1
            entry[1] += actual
        else:
            action, rule = decided or ("allow", "")
            key = (action, rule, guard.service)
            counter = self._decided.get(key)
            if counter is None:
                counter = self._decided.setdefault(key, self.decisions.labels(*key))
            counter.inc()
            if actual > 0:
                by = (guard.service, guard.agent)
                child = self._spent.get(by)
                if child is None:
                    child = self._spent.setdefault(by, self.spend.labels(*by))
                child.inc(actual)
        enforcer = call.enforcer
        if enforcer is not None:
            self.budgets.saw(enforcer, guard.agent)
        if self.multiprocess:
            self.fallbacks.sync()

    def slot_waited(self, service: str, seconds: float) -> None:
        """A call of ``service`` waited ``seconds`` for its scheduler slot."""
        totals = self.totals
        if totals is not None:
            tally = getattr(totals.local, "tally", None) or totals.mine()
            waits = tally.waits.get(service)
            if waits is None:
                waits = tally.waits[service] = [0.0] * (len(SLOT_WAIT_BUCKETS) + 2)
            waits[bisect.bisect_left(SLOT_WAIT_BUCKETS, seconds)] += 1  # the last bucket: +Inf
            waits[-1] += seconds
            return
        child = self._waits.get(service)
        if child is None:
            child = self._waits.setdefault(service, self.slot_wait.labels(service))
        child.observe(seconds)

    def unregister(self) -> None:
        """Take proctor's metrics out of their registry."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):  # the application took it out already
                self.registry.unregister(collector)


_DECISIONS = "proctor_decisions"
_DECISIONS_HELP = "Governed calls, by the action that decided them and its rule ('' when none matched)."
_SPEND = "proctor_spend"
_SPEND_HELP = "The actual cost of governed calls."
_SLOT_WAIT = "proctor_slot_wait_seconds"
_SLOT_WAIT_HELP = "How long governed calls waited for a scheduler slot."


class Tally:
    """One thread's counts: only that thread adds to them, so adding takes no lock."""

    __slots__ = ("calls", "waits")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], list[Any]] = {}
        """By (service, agent): the calls allowed with no rule matched, the spend, and the other
        calls' counts by (action, rule)."""
        self.waits: dict[str, list[float]] = {}
        """By service: the count of waits in each bucket (not cumulative; the last but one is +Inf),
        then their sum."""


class CallTotals(Collector):
    """``proctor_decisions_total`` and ``proctor_spend_total`` of one process, summed when scraped.

    Each thread adds to a ``Tally`` of its own (``mine()``), without a lock; a scrape sums the
    tallies (copying a dict is one step under the GIL), and folds those of threads that ended.
    """

    def __init__(self) -> None:
        self.local = threading.local()
        self._lock = threading.Lock()
        self._tallies: list[tuple[weakref.ref[threading.Thread], Tally]] = []
        self._ended = Tally()  # what threads that ended counted

    def mine(self) -> Tally:
        """The calling thread's tally."""
        try:
            tally: Tally = self.local.tally
        except AttributeError:
            tally = self.local.tally = Tally()
            with self._lock:
                self._tallies.append((weakref.ref(threading.current_thread()), tally))
        return tally

    def collect(self) -> Iterator[Metric]:
        total = Tally()
        with self._lock:
            live = []
            for thread, tally in self._tallies:
                running = thread()
                if running is None or not running.is_alive():
                    _add(self._ended, tally)  # it counts no more: fold it
                else:
                    live.append((thread, tally))
            self._tallies = live
            _add(total, self._ended)
            for _, tally in live:
                _add(total, tally)
        decided: dict[tuple[str, str, str], int] = {}
        spent: dict[tuple[str, str], float] = {}
        for (service, agent), (allowed, spend_of, others) in total.calls.items():
            if allowed:
                key = ("allow", "", service)
                decided[key] = decided.get(key, 0) + allowed
            for (action, rule), count in others.items():
                key = (action, rule, service)
                decided[key] = decided.get(key, 0) + count
            if spend_of:
                spent[service, agent] = spend_of
        decisions = CounterMetricFamily(_DECISIONS, _DECISIONS_HELP, labels=("action", "rule", "service"))
        for labels, count in sorted(decided.items()):
            decisions.add_metric(labels, count)
        yield decisions
        spend = CounterMetricFamily(_SPEND, _SPEND_HELP, labels=("service", "agent"))
        for by, total_spent in sorted(spent.items()):
            spend.add_metric(by, total_spent)
        yield spend
        waits = HistogramMetricFamily(_SLOT_WAIT, _SLOT_WAIT_HELP, labels=("service",))
        for service, counts in sorted(total.waits.items()):
            cumulative = list(itertools.accumulate(counts[:-1]))
            bounds = [*map(floatToGoString, SLOT_WAIT_BUCKETS), "+Inf"]
            waits.add_metric((service,), list(zip(bounds, cumulative, strict=True)), counts[-1])
        yield waits


def _add(into: Tally, tally: Tally) -> None:
    """Add ``tally``'s counts (copied in one step: its thread may be adding) to ``into``."""
    for names, entry in dict(tally.calls).items():
        allowed, spent, others = list(entry)
        mine = into.calls.get(names)
        if mine is None:
            mine = into.calls[names] = [0, 0.0, {}]
        mine[0] += allowed
        mine[1] += spent
        for decided, count in dict(others).items():
            mine[2][decided] = mine[2].get(decided, 0) + count
    for service, counts in dict(tally.waits).items():
        mine = into.waits.setdefault(service, [0.0] * len(counts))
        for index, waited in enumerate(list(counts)):
            mine[index] += waited


class BudgetCollector(Collector):
    """``proctor_budget_remaining``, read from the budgets' stores when scraped."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[PolicyEnforcer, set[str]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._last: tuple[weakref.ref[PolicyEnforcer], str] | None = None

    def saw(self, enforcer: PolicyEnforcer, agent: str) -> None:
        """A call of ``agent`` was checked by ``enforcer``: report its budgets from now on."""
        last = self._last
        if last is not None and last[1] == agent and last[0]() is enforcer:  # as the last call's
            return
        agents = self._seen.get(enforcer)
        if agents is None or agent not in agents:
            with self._lock:
                self._seen.setdefault(enforcer, set()).add(agent)
        self._last = (weakref.ref(enforcer), agent)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "proctor_budget_remaining",
            "What a budget still lets an agent (or what its per counts) reserve in its period.",
            labels=("policy", "agent"),
        )
        with self._lock:
            seen = [(enforcer, sorted(agents)) for enforcer, agents in self._seen.items()]
        done: set[tuple[str, str]] = set()
        for enforcer, agents in seen:
            for policy in enforcer.policies:
                for name, key, budget in _budgets(policy, agents):
                    if (name, key) in done:
                        continue
                    done.add((name, key))
                    try:
                        remaining = budget.remaining(key)
                    except ProctorError:  # its store does not answer: no sample rather than a wrong one
                        continue
                    if remaining is not None:
                        family.add_metric((name, key), remaining)
        yield family


def _budgets(policy: object, agents: Iterable[str]) -> Iterator[tuple[str, str, BudgetPolicy]]:
    """The (name, key, budget) a policy counts spend under: a file's budget under its ``per`` key, a
    budget of code under each agent."""
    if isinstance(policy, FileLimit):
        if isinstance(policy.policy, BudgetPolicy):
            yield policy.name, policy.key, policy.policy
    elif isinstance(policy, BudgetPolicy):
        for agent in agents:
            yield policy.name, agent, policy


class FallbackCounts(Collector):
    """``proctor_store_fallbacks_total{kind,mode}``, from ``proctor.stores.fallback.fallbacks()``.

    In one process, read when scraped. With several (multiprocess mode) each process copies its
    counts into a counter kept in its samples' file, at most once a second as its calls end, when
    it serves a scrape, and when it exits.
    """

    def __init__(self, multiprocess: bool) -> None:
        self.multiprocess = multiprocess
        self._counter: Counter | None = None
        self._copied: dict[tuple[str, str], int] = {}
        self._next = 0.0
        self._lock = threading.Lock()
        if multiprocess:
            self._counter = Counter(
                "proctor_store_fallbacks",
                "Decisions made without a store that did not answer, by kind and mode.",
                ("kind", "mode"),
                registry=None,
            )
            atexit.register(self.sync, force=True)  # what the last calls' fallbacks added

    def collect(self) -> Iterator[Metric]:
        if self._counter is not None:
            self.sync(force=True)
            yield from self._counter.collect()
            return
        family = CounterMetricFamily(
            "proctor_store_fallbacks",
            "Decisions made without a store that did not answer, by kind and mode.",
            labels=("kind", "mode"),
        )
        for (kind, mode), count in sorted(fallbacks().items()):
            family.add_metric((kind, mode), count)
        yield family

    def sync(self, *, force: bool = False) -> None:
        """Copy the counts made since the last copy into the multiprocess counter."""
        counter = self._counter
        if counter is None:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        with self._lock:
            self._next = now + FALLBACK_SYNC_SECONDS
            for key, count in fallbacks().items():
                added = count - self._copied.get(key, 0)
                if added > 0:
                    counter.labels(*key).inc(added)
                    self._copied[key] = count


class _Synced(Collector):
    """Runs ``step`` before a multiprocess scrape reads the files (it yields no metric)."""

    def __init__(self, step: Callable[[], None]) -> None:
        self._step = step

    def collect(self) -> Iterator[Metric]:
        self._step()
        return iter(())


class _Without(Collector):
    """The metrics of ``collector`` except those named ``names``."""

    def __init__(self, collector: Collector, names: Iterable[str]) -> None:
        self._collector = collector
        self._names = frozenset(names)

    def collect(self) -> Iterator[Metric]:
        return (metric for metric in self._collector.collect() if metric.name not in self._names)


def scrape_registry(metrics: Metrics | None, *, without: Iterable[str] = ()) -> CollectorRegistry:
    """What a scrape reads in multiprocess mode: every process's samples from the directory's files,
    then this process's budgets; ``without`` drops metrics by name."""
    registry = CollectorRegistry(auto_describe=False)
    if metrics is not None:
        registry.register(_Synced(lambda: metrics.fallbacks.sync(force=True)))
    files = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(files)  # type: ignore[no-untyped-call]
    registry.register(_Without(files, without))
    if metrics is not None:
        registry.register(metrics.budgets)
    return registry


def asgi_app(metrics: Metrics, registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """The ASGI app that serves ``registry`` (by default: the metrics' own registry, or in
    multiprocess mode the sum over the processes) in Prometheus' text format."""
    if registry is None:
        registry = scrape_registry(metrics) if metrics.multiprocess else metrics.registry
    app: Callable[..., Any] = make_asgi_app(registry)
    return app
