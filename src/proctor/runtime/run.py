"""Run: one top-level ``@runlog`` call and the tool calls made inside it, as rules see it."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from proctor._numbers import is_amount
from proctor.errors import RunTerminated
from proctor.runtime.context import active

if TYPE_CHECKING:
    import random

    from proctor.runs.log import RunLog
    from proctor.runtime.playback import Playback

__all__ = ["Run", "RunTerminated", "WatchedRun"]

_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}-{int(time.time()):x}"


def _new_process() -> None:
    """In a forked child: run ids of its own (the parent's prefix and counter would repeat)."""
    global _ids, _PREFIX
    _ids = itertools.count(1)
    _PREFIX = f"{os.getpid():x}-{int(time.time()):x}"


os.register_at_fork(after_in_child=_new_process)


class Run:
    """The state of one run that rules can see: its input, spend and calls so far.

    Safe to use from the threads a run's calls fan out to.
    """

    __slots__ = (
        "_calls",
        "_id",
        "_lock",
        "_rng",
        "agent",
        "cost",
        "held",
        "input",
        "service",
        "started",
        "terminated",
        "tool_calls",
    )

    _rng: random.Random  # set by proctor.rng() at its first use in the run

    watched: bool = False
    """Whether the run is recorded or replayed (a ``WatchedRun``)."""
    log: RunLog | None = None
    """Where the run is recorded; None when it is not."""
    replay: Playback | None = None
    """The replay this run is, if it is one."""
    effects: dict[str, Any] | None = None
    """The run's nondeterminism, as recorded: ``seed``, ``now`` and ``uuid`` values."""

    def __init__(self, service: str, agent: str, input: dict[str, Any]) -> None:
        self._id = next(_ids)
        self.service = service
        self.agent = agent
        self.input = input
        self.started = time.time()
        self.cost = 0.0
        self.held = 0
        """The estimates of the run's calls still running, in units: they count in ``cost_run``."""
        self.tool_calls = 0
        self.terminated: RunTerminated | None = None
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        """Unique across processes and restarts: process id, start time, and a counter."""
        return f"{_PREFIX}-{self._id:x}"

    def add_cost(self, amount: float) -> None:
        """Report cost spent inside the current call; it counts in ``cost_run`` and ``cost_today``.

        A call that reports cost this way is charged what it reported instead of its estimate.
        """
        if not is_amount(amount):
            raise ValueError(f"add_cost takes a finite number >= 0, got {amount!r}")
        with self._lock:
            self.cost += amount
        frame = active.get()
        if frame is not None and frame.run is self:
            frame.reported = (frame.reported or 0.0) + amount

    def _count_call(self, key: str | None) -> tuple[int, int]:
        """Count a tool call: how many tool calls the run made before it, and how often the call
        ``key`` (tool and arguments; None: not counted) ran before."""
        with self._lock:
            before = self.tool_calls
            self.tool_calls = before + 1
            if key is None:
                return before, 0
            seen = self._calls.get(key, 0)
            self._calls[key] = seen + 1
            return before, seen

    def __repr__(self) -> str:
        return f"<Run {self.run_id} service={self.service!r} agent={self.agent!r} cost={self.cost:g}>"


class WatchedRun(Run):
    """A run that is recorded in ``log``, or is the replay ``replay``: its actions are numbered."""

    __slots__ = ("_name", "_seq", "effects", "log", "replay")

    watched = True

    def __init__(
        self, service: str, agent: str, input: dict[str, Any], log: RunLog | None, replay: Playback | None
    ) -> None:
        super().__init__(service, agent, input)
        self.log = log
        self.replay = replay
        self.effects = None
        self._seq = itertools.count(1)
        self._name = super().run_id

    @property
    def run_id(self) -> str:
        """As ``Run.run_id``, computed once: every recorded action names it."""
        return self._name

    def _next_seq(self) -> int:
        """The number of the next action of the run, from 1."""
        return next(self._seq)

    def _effect(self, kind: str, value: Any) -> None:
        """Keep a value the run drew from the clock or uuid4, for replay."""
        with self._lock:
            if self.effects is None:
                self.effects = {}
            self.effects.setdefault(kind, []).append(value)
