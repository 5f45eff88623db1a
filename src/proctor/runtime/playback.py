"""Playback: what a decorated call asks of the replay it is part of, and what a replay asks of it.

A replay (``proctor.runs.replay.Replayer``) answers recorded calls from the run
log, replays the run's clock, uuids and seed, and keeps what the policies decide
now; the decorator reaches it only through this interface, and replay reaches a
decorated function only through ``Replayable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proctor.approvals.base import ApprovalDecision
    from proctor.rules.ruleset import RuleSet
    from proctor.runs.log import ActionRecord, RunLog, RunRecord
    from proctor.runtime.context import Frame

__all__ = ["LIVE_CLOCK", "FactClock", "Playback", "Replayable", "replayable"]


class FactClock(Protocol):
    """Where the ``time`` facts and ``cost_today`` come from: the wall clock and the shared ledgers
    for live calls, the recording for a replay."""

    def now(self, tz: tzinfo | None) -> datetime:
        """The moment the action being decided begins, in ``tz`` (None: local)."""

    def cost_today(self, service: str, agent: str, zone: str | None) -> float:
        """What ``service``/``agent`` spent since midnight in ``zone`` before this action."""


class _LiveClock:
    """The wall clock. Live ``cost_today`` is read inside the ledger's own step, where the call's
    estimate is held (``proctor.policy.daily.DailySpend.decide``), so it is not asked here."""

    __slots__ = ()

    def now(self, tz: tzinfo | None) -> datetime:
        return datetime.now(tz)

    def cost_today(self, service: str, agent: str, zone: str | None) -> float:
        raise NotImplementedError("live cost_today is read where the call's estimate is held")


LIVE_CLOCK: FactClock = _LiveClock()
"""The ``FactClock`` of live calls."""


class Playback(FactClock, Protocol):
    """A replay of one recorded run, as the decorated calls of that run see it."""

    record: RunRecord
    """The run replayed."""
    log: RunLog
    """The log it was read from (a resumed run's continuation is recorded there too)."""
    rules: RuleSet | None
    """The rules to decide with instead of the decorators' own; None: their own."""
    resuming: bool
    """Whether calls the recording has no answer for run live, and the run is recorded anew."""
    continued_as: str | None
    """The run id of the continuation, once its top-level call started."""

    def match(self, seq: int, tool: str, bound: Mapping[str, Any]) -> ActionRecord | None:
        """The recorded action ``seq``, if it is a call of ``tool`` with these arguments."""

    def outcome(
        self, seq: int, tool: str, bound: Mapping[str, Any], recorded: ActionRecord | None, frame: Frame
    ) -> tuple[bool, Any]:
        """``(True, result)`` for a call answered from the recording, ``(False, None)`` to run it live."""

    def unrecorded(self, tool: str, bound: Mapping[str, Any]) -> None:
        """A call the log does not record (a generator): raise unless the replay runs calls live."""

    def approval(self, seq: int) -> ApprovalDecision | None:
        """The recorded answer to action ``seq``'s approval request; None: it timed out."""

    def effect(self, kind: str) -> Any:
        """The next recorded ``seed``, ``now`` or ``uuid`` value; None past the recording."""

    def charge(self, service: str, agent: str, amount: float) -> None:
        """Count spend of the replay in its ``cost_today``."""

    def decided(self, seq: int, tool: str, decisions: list[dict[str, Any]]) -> None:
        """Keep what the policies decided on action ``seq`` (0: the run's own call)."""

    def finished(
        self,
        status: str,
        output: Any,
        error: BaseException | None,
        decisions: list[dict[str, Any]],
        cost: float,
    ) -> None:
        """The run's own call ended: keep how, and what the run spent."""


class Replayable(Protocol):
    """What replay needs of a decorated function: the function, and its arguments from their names."""

    function: Callable[..., Any]

    def unbind(self, bound: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments that bind to ``bound``."""


def replayable(target: Callable[..., Any]) -> Replayable | None:
    """The ``Replayable`` of a ``@runlog`` function; None for any other callable."""
    found: Replayable | None = getattr(target, "__proctor_guard__", None)
    return found
