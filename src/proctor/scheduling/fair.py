"""FairQueue: the waiting requests, and which of them L(i) says goes next.

The load score of agent ``i`` among the agents that wait is::

    L(i) = alpha * Qi / max Qj  +  (1 - alpha) * Dmax_i / max Dmax_j

with ``Qi`` the summed weight of agent i's waiting requests and ``Dmax_i`` how
long its oldest waiting request has waited. The highest score is served
first, its oldest request first; ties go to the longest wait, then to the
earliest arrival.

An agent's waiting requests are its callers in ``acquire()`` (entries) and
its *backlog*: tasks queued with ``submit_task()`` that no caller has taken
yet. The backlog counts in ``Qi`` and its oldest task in ``Dmax_i``, but
only an agent with an entry competes for a slot: a task needs a caller to
run it.

Scanning every waiting agent costs O(agents) per grant. Two agents with the
same ``Qi`` share the first term, and the one that has waited longer wins the
second, so only the longest-waiting agent of each distinct ``Qi`` can win.
The queue keeps agents in groups by ``Qi``, each group a heap ordered by
oldest arrival, and a grant looks at one candidate per group: O(G + log n)
with G distinct queue depths, which is 1 when every request weighs the same.

``Qi`` is kept as an exact integer count of 2**-52ths (every weight >= 1 is a
whole number of them), not as a running float sum: float additions and
subtractions drift with their order, so an agent whose depth went
1.1 + 3.3 - 1.1 (3.3000000000000003) would not tie with one that holds 3.3,
would land in another group and could win a grant that the longer-waiting
agent is owed.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Entry", "FairQueue"]


class Entry:
    """One waiting caller: whose, how heavy, since when.

    A caller that will serve its agent's backlog weighs 0: its task counts there.
    """

    __slots__ = ("agent_id", "arrived", "queued", "seq", "units", "weight")

    def __init__(self, agent_id: str, weight: float, arrived: float) -> None:
        self.agent_id = agent_id
        self.weight = weight
        self.arrived = arrived
        self.seq = 0
        self.queued = False
        self.units = 0  # the weight in exact units, set by FairQueue.push


E = TypeVar("E", bound=Entry)

# A heap item: (oldest arrival, its seq, lane version when pushed, lane).
# The lane is never compared: seq values are unique.
_Item = tuple[float, int, int, "_Lane[E]"]

_heappush = heapq.heappush
_heappop = heapq.heappop

_SCALE = 1 << 52  # weights are counted in 2**-52ths; a float >= 1 is a whole number of them
_UNIT = 2.0**-52
_COMMON_UNITS = {0.0: 0, 1.0: _SCALE}  # a caller serving the queue, a default Task: no _units() per push


def _units(weight: float) -> int:
    """``weight`` as an exact whole number of 2**-52ths."""
    numerator, denominator = float(weight).as_integer_ratio()
    if denominator > _SCALE:
        raise ValueError(f"a waiting request's weight must be >= 1.0, got {weight!r}")
    return numerator * (_SCALE // denominator)


def _depth(units: int) -> float:
    """The float nearest to the exact sum ``units`` (int-to-float conversion rounds correctly)."""
    try:
        return units * _UNIT
    except OverflowError:  # weights near the float maximum
        return math.inf


class _Lane(Generic[E]):
    """One agent's waiting requests: its callers, oldest first, and its backlog."""

    __slots__ = ("depth", "entries", "group", "since", "units", "version")

    def __init__(self) -> None:
        self.entries: deque[E] = deque()
        self.units = 0  # Qi, exactly, in 2**-52ths: the entries' units plus the backlog's
        self.depth = 0.0  # Qi as a float: _depth(units)
        self.since = math.inf  # when the oldest queued task arrived
        self.group: float | None = None  # the depth it is filed under, None without entries
        self.version = 0  # bumped on every move; heap items of older versions are stale


def _oldest(lane: _Lane[E]) -> float:
    """Where Dmax_i of a lane with callers starts: its head caller, or its oldest queued task."""
    return min(lane.entries[0].arrived, lane.since)


class FairQueue(Generic[E]):
    """Waiting requests of many agents, served in L(i) order. Not thread-safe: callers lock."""

    __slots__ = ("_groups", "_lanes", "_members", "_seq", "_size", "_stale", "alpha")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self._lanes: dict[str, _Lane[E]] = {}
        self._groups: dict[float, list[_Item[E]]] = {}  # depth -> heap of lanes
        self._members: dict[float, int] = {}  # depth -> live lanes in the group
        self._size = 0
        self._stale = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def depth(self, agent_id: str) -> float:
        """``Qi``: the summed weight of ``agent_id``'s waiting requests."""
        lane = self._lanes.get(agent_id)
        return lane.depth if lane is not None else 0.0

    def waiting(self, agent_id: str) -> int:
        """How many requests of ``agent_id`` wait."""
        lane = self._lanes.get(agent_id)
        return len(lane.entries) if lane is not None else 0

    def oldest(self, agent_id: str) -> float | None:
        """When ``agent_id``'s oldest waiting request (entry or backlog) arrived; None without entries."""
        lane = self._lanes.get(agent_id)
        return _oldest(lane) if lane is not None and lane.entries else None

    def add_backlog(self, agent_id: str, weight: float, since: float) -> None:
        """Count a queued task of ``weight`` in ``agent_id``'s Qi.

        ``since``: when the agent's oldest queued task arrived, after the change.
        """
        units = _units(weight)
        lane = self._lanes.get(agent_id)
        if lane is None:
            lane = self._lanes[agent_id] = _Lane()
        lane.since = since
        self._refile(lane, lane.units + units)

    def remove_backlog(self, agent_id: str, weight: float, since: float) -> None:
        """Stop counting a queued task of ``weight``; ``since`` as for ``add_backlog`` (inf: none left)."""
        units = _units(weight)
        lane = self._lanes[agent_id]
        lane.since = since
        self._refile(lane, lane.units - units)

    def replace_backlog(self, agent_id: str, removed: list[float], added: list[float], since: float) -> None:
        """Count queued tasks weighing ``added`` in ``agent_id``'s Qi instead of those weighing ``removed``.

        ``since`` as for ``add_backlog``.
        """
        units = sum(map(_units, added)) - sum(map(_units, removed))
        lane = self._lanes.get(agent_id)
        if lane is None:
            lane = self._lanes[agent_id] = _Lane()
        lane.since = since
        self._refile(lane, lane.units + units)

    def push(self, entry: E) -> None:
        """Add a waiting request; its ``arrived`` must not precede its agent's earlier ones."""
        units = _COMMON_UNITS.get(entry.weight)
        if units is None:
            units = _units(entry.weight)
        entry.units = units
        lane = self._lanes.get(entry.agent_id)
        if lane is None:
            lane = self._lanes[entry.agent_id] = _Lane()
        entry.seq = next(self._seq)
        entry.queued = True
        lane.entries.append(entry)
        self._size += 1
        self._refile(lane, lane.units + units)

    def remove(self, entry: E) -> bool:
        """Take a request out of the queue (it gave up); False if it was no longer queued."""
        if not entry.queued:
            return False
        entry.queued = False
        lane = self._lanes[entry.agent_id]
        lane.entries.remove(entry)
        self._size -= 1
        self._refile(lane, lane.units - entry.units)
        return True

    def pop(self, now: float) -> E:
        """Remove and return the oldest request of the agent with the highest L(i) at ``now``."""
        if not self._size:
            raise IndexError("pop from an empty FairQueue")
        groups = self._groups
        if len(groups) == 1:
            # One group (every waiting agent has the same depth): its longest wait wins. What _top()
            # does, inline: once per grant.
            heap = next(iter(groups.values()))
            while True:
                _, _, version, lane = heap[0]
                if lane.version == version:
                    break
                _heappop(heap)
                self._stale -= 1
        else:
            lane = self._best(now)
        entry = lane.entries.popleft()
        entry.queued = False
        self._size -= 1
        self._refile(lane, lane.units - entry.units)
        return entry

    def unpop(self, entry: E) -> None:
        """Put back the request ``pop`` just returned, at the head of its agent's requests."""
        lane = self._lanes[entry.agent_id]
        entry.queued = True
        lane.entries.appendleft(entry)
        self._size += 1
        self._refile(lane, lane.units + entry.units)

    def forget(self, agent_id: str) -> None:
        """Drop the bookkeeping of an agent that has no waiting callers, its backlog with it."""
        lane = self._lanes.get(agent_id)
        if lane is not None and not lane.entries:
            del self._lanes[agent_id]

    def scores(self, now: float) -> dict[str, float]:
        """L(i) at ``now`` of every agent that waits; O(agents), for inspection only."""
        waiting = [(agent, lane) for agent, lane in self._lanes.items() if lane.entries]
        if not waiting:
            return {}
        max_depth = max(lane.depth for _, lane in waiting)
        max_wait = max(now - _oldest(lane) for _, lane in waiting)
        alpha = self.alpha
        return {
            agent: (alpha * lane.depth / max_depth if max_depth > 0 else 0.0)
            + ((1.0 - alpha) * (now - _oldest(lane)) / max_wait if max_wait > 0 else 0.0)
            for agent, lane in waiting
        }

    def _best(self, now: float) -> _Lane[E]:
        # Two or more groups: depths differ, so the largest is > 0.
        candidates = [(depth, self._top(heap)) for depth, heap in self._groups.items()]
        max_depth = max(depth for depth, _ in candidates)
        max_wait = max(now - _oldest(lane) for _, lane in candidates)
        alpha = self.alpha
        best: _Lane[E] | None = None
        best_key: tuple[float, float, int] = (-1.0, 0.0, 0)
        for depth, lane in candidates:
            wait = now - _oldest(lane)
            score = alpha * depth / max_depth + ((1.0 - alpha) * wait / max_wait if max_wait > 0 else 0.0)
            key = (score, wait, -lane.entries[0].seq)
            if key > best_key:
                best, best_key = lane, key
        assert best is not None
        return best

    def _top(self, heap: list[_Item[E]]) -> _Lane[E]:
        # Every group in _groups has at least one live lane, so this ends.
        while True:
            _, _, version, lane = heap[0]
            if lane.version == version:
                return lane
            _heappop(heap)
            self._stale -= 1

    def _refile(self, lane: _Lane[E], units: int) -> None:
        """Move ``lane`` to the group of its new depth, ``units`` (its head may have changed too)."""
        old = lane.group
        if old is not None:
            self._stale += 1
            left = self._members[old] - 1
            if left:
                self._members[old] = left
            else:
                del self._members[old]
                self._stale -= len(self._groups.pop(old))
        lane.version += 1
        lane.units = units
        if not lane.entries:
            lane.depth = _depth(units) if units else 0.0
            lane.group = None
            return
        try:  # what _depth() does, inline: once per change of a waiting lane
            depth = units * _UNIT
        except OverflowError:
            depth = math.inf
        lane.group = lane.depth = depth
        head = lane.entries[0]
        oldest = head.arrived  # where Dmax_i starts: the head caller, or the oldest queued task
        if lane.since < oldest:
            oldest = lane.since
        heap = self._groups.get(depth)
        if heap is None:
            heap = self._groups[depth] = []
            self._members[depth] = 1
        else:
            self._members[depth] += 1
        _heappush(heap, (oldest, head.seq, lane.version, lane))
        if self._stale > 64 and self._stale > 2 * self._size:
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap items so memory follows the number of waiting requests."""
        for depth, heap in self._groups.items():
            live = [item for item in heap if item[3].version == item[2]]
            heapq.heapify(live)
            self._groups[depth] = live
        self._stale = 0
