"""What-if under the rules that were in force changes no decision of the recorded live traffic.

Runs are driven step by step from threads, in an order hypothesis picks: a run starts, one of its
calls is made (the rules decide it; an allowed call then waits inside), a call returns, a run
ends. Each step is finished before the next begins, so calls overlap exactly as the script says
and the recorded times keep that order. The rules read ``cost_today``, ``cost_run`` and their
``*_with_call`` forms, which count the estimates of calls still running; half the examples add a
budget that refuses, one that alerts, and a rate limit, which reserve at the check and settle after.
"""

from __future__ import annotations

import contextvars
import itertools
import tempfile
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor import PolicyViolationError, current_run, runlog
from proctor.runs import RunLog, recording_into
from proctor.runs.whatif import what_if
from proctor.stores import MemoryStore, set_store

_services = itertools.count()

Call = tuple[float, float]  # (estimate, actual)

runs_strategy = st.lists(
    st.lists(
        st.tuples(st.sampled_from([0.1, 0.3, 0.5]), st.sampled_from([0.0, 0.1, 0.3, 0.6])),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=4,
)


def rules(limits: tuple[float, float, float], budget: float | None = None, calls: int = 0) -> dict[str, Any]:
    """The spend rules; with ``budget``, a budget per service and a rate limit of ``calls`` per tool too."""
    today, run, logged = limits
    policies: dict[str, Any] = {
        "policies": [
            {"id": "daily_cap", "when": {"cost_today_with_call": {"gt": today}}, "action": "deny"},
            {"id": "run_cap", "when": {"cost_run": {"gt": run}}, "action": "deny"},
            {"id": "busy", "when": {"cost_today": {"gt": logged}}, "action": "log"},
        ]
    }
    if budget is not None:
        policies["budgets"] = [
            {"id": "spend", "per": "service", "limit": budget},
            {"id": "watch", "per": "agent", "limit": budget / 2, "mode": "alert"},
        ]
        policies["rate_limits"] = [{"id": "calls", "per": "tool", "limit": calls, "period": "hour"}]
    return policies


class Script:
    """Runs made from threads, each step done when the driver says and acknowledged before the next."""

    def __init__(self, service: str, policies: dict[str, Any], runs: list[list[Call]]) -> None:
        self.runs = runs
        self.gates = {key: threading.Event() for key in self._keys()}
        self.acks = {key: threading.Event() for key in self._keys()}

        @runlog(service=service, name="tool", cost=lambda run, index, estimate: estimate, policies=policies)
        def tool(run: int, index: int, estimate: float) -> str:
            self.acks["call", run, index].set()  # allowed: inside, until told to return
            self.gates["return", run, index].wait(30)
            current_run().add_cost(self.runs[run][index][1])
            return "done"

        @runlog(service=service, name="job", policies=policies)
        def job(run: int) -> None:
            self.acks["start", run, 0].set()
            for index, (estimate, _) in enumerate(self.runs[run]):
                self.gates["call", run, index].wait(30)
                try:
                    tool(run, index, estimate)
                except PolicyViolationError:  # a rule, a budget or a rate limit refused it
                    self.acks["call", run, index].set()  # denied: nothing to return
                self.acks["return", run, index].set()
            self.gates["end", run, 0].wait(30)

        def whole_run(run: int) -> None:
            try:
                job(run)
            except PolicyViolationError:  # the run itself was refused: none of its steps happen
                for key, ack in self.acks.items():
                    if key[1] == run:
                        ack.set()

        self.job = whole_run

    def _keys(self) -> list[tuple[str, int, int]]:
        keys = []
        for run, calls in enumerate(self.runs):
            keys += [("start", run, 0), ("end", run, 0)]
            for index in range(len(calls)):
                keys += [("call", run, index), ("return", run, index)]
        return keys

    def play(self, order: list[int]) -> None:
        """Take the next step of run ``order[k]`` at step k; threads end with their runs."""
        threads = []
        steps = {run: self._steps(run) for run in range(len(self.runs))}
        for run in order:
            kind, index = next(steps[run])
            if kind == "start":
                context = contextvars.copy_context()  # the run log chosen with recording_into
                thread = threading.Thread(target=context.run, args=(self.job, run))
                threads.append(thread)
                thread.start()
            else:
                self.gates[kind, run, index].set()
            if kind != "end":
                assert self.acks[kind, run, index].wait(30)
        for thread in threads:
            thread.join(30)

    def _steps(self, run: int) -> Any:
        yield "start", 0
        for index in range(len(self.runs[run])):
            yield "call", index
            yield "return", index
        yield "end", 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=runs_strategy,
    limits=st.tuples(st.sampled_from([0.3, 0.6, 1.0]), st.sampled_from([0.2, 0.5]), st.sampled_from([0.4])),
    budget=st.none() | st.sampled_from([0.4, 0.8, 2.0]),
    calls=st.integers(1, 6),
    data=st.data(),
)
def test_what_if_under_the_rules_in_force_changes_nothing(
    runs: list[list[Call]],
    limits: tuple[float, float, float],
    budget: float | None,
    calls: int,
    data: st.DataObject,
) -> None:
    service = f"agree-{next(_services)}"
    policies = rules(limits, budget, calls)
    steps = [run for run, calls in enumerate(runs) for _ in range(2 + 2 * len(calls))]
    order = data.draw(st.permutations(steps))  # each run's steps in its own order, runs interleaved
    script = Script(service, policies, runs)
    with tempfile.TemporaryDirectory() as folder:
        log = RunLog(Path(folder) / "runs.db", pii=False)
        set_store(MemoryStore())  # the limits of this example only: tool names repeat across examples
        try:
            with recording_into(log):
                script.play(order)
            log.flush()
            recorded = log.runs(service=service, limit=None, oldest_first=True)
            assert len(recorded) == len(runs)
            for result in what_if(log, recorded, policies):
                changed = [decision for decision in result.decisions if decision.changed]
                assert not changed, (result.run_id, changed)
                assert result.status_after == result.status_before
        finally:
            set_store(None)
            log.close()
