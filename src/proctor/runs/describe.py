"""Stored run-log values in words, the same in the terminal and in the console.

Times, durations, costs, errors, approvals and the waits for them, and which
of an action's stored decisions took effect. Plain text: callers add their
own styling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from proctor.runs.log import ActionRecord, RunRecord, decode
from proctor.runs.result import effective_action

__all__ = [
    "Asked",
    "Marked",
    "Wait",
    "approval_text",
    "approval_waits",
    "error_text",
    "local_time",
    "marked_decisions",
    "money",
    "seconds",
    "wait_text",
]


def local_time(timestamp: float | None) -> str:
    """``2024-01-02 13:45:06`` in local time; ``-`` for None."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def seconds(duration: float | None) -> str:
    """``12 ms``, ``3.40 s``, ``2 min 5 s``, ``15 min``, ``3 h 10 min``; ``-`` for None."""
    if duration is None:
        return "-"
    if duration < 1:
        return f"{duration * 1000:.0f} ms"
    if duration < 60:
        return f"{duration:.2f} s"
    minutes, rest = divmod(round(duration), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def money(amount: float | None) -> str:
    """A cost with four decimals, so a column of them lines up; ``-`` for None."""
    return "-" if amount is None else f"{amount:.4f}"


def error_text(text: str | None) -> str:
    """A stored error as ``Kind: message``; empty for NULL."""
    error = decode(text)
    if error is None:
        return ""
    if isinstance(error, dict):
        kind = str(error.get("type", "error")).rpartition(":")[2]
        return f"{kind}: {error.get('message', '')}"
    return str(error)


def approval_text(text: str | None) -> str:
    """A stored approval as ``approved by ops: comment``, ``refused by ...``, ``timed out``; empty
    when none was asked."""
    approval = decode(text)
    if not isinstance(approval, dict):
        return ""
    answer = approval.get("approved")
    verb = "approved" if answer else "refused"
    said = "timed out" if answer is None else f"{verb} by {approval.get('approver') or 'someone'}"
    comment = approval.get("comment")
    return f"{said}: {comment}" if comment else said


class Asked(Protocol):
    """An approval request, as far as a call's wait goes (``ApprovalRecord`` is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def decided(self) -> float | None: ...
    @property
    def pending(self) -> bool: ...


class Wait(NamedTuple):
    """How long a call waited for people (so far, while ``pending``), and when it then ran, in
    seconds from the run's start (None: it has not run)."""

    seconds: float
    pending: bool
    ran: float | None


def approval_waits(
    run: RunRecord, actions: Sequence[ActionRecord], requests: Iterable[Asked], now: float
) -> dict[int, Wait]:
    """The approval wait of each call of ``run`` that asked people, by seq (0: the run's own call).

    A call's recorded ``started`` is when it was asked for and its ``duration`` how long it ran:
    the wait between them ends when its request (the last given for its seq) was decided.
    """
    asked = {request.seq: request for request in requests}
    calls = [(0, run.started, run.ended is not None and run.status != "denied")]
    calls += [(action.seq, action.started, action.duration is not None) for action in actions]
    waits = {}
    for seq, started, ran in calls:
        request = asked.get(seq)
        if request is None:
            continue
        end = request.decided if request.decided is not None else now
        waited = max(0.0, end - started)  # a decision taken before a resumed call: no wait
        went = started + waited - run.started if ran and not request.pending else None
        waits[seq] = Wait(waited, request.pending, went)
    return waits


def wait_text(wait: Wait) -> str:
    """``waited 50.00 s for approval``; ``waiting for approval for 3.00 s`` while it is pending."""
    if wait.pending:
        return f"waiting for approval for {seconds(wait.seconds)}"
    return f"waited {seconds(wait.seconds)} for approval"


class Marked(NamedTuple):
    """One stored decision: its rule (``(default)`` for none), action, where it was made
    (`` (on output)``, `` (code policy)`` or empty), whether it decided in its phase, and
    whether it is the one that took effect."""

    rule: str
    action: str
    where: str
    decided: bool
    deciding: bool


def marked_decisions(text: str | None) -> list[Marked]:
    """An action's stored decisions in order, the one that took effect marked once."""
    decisions = decode(text) or []
    action, rule = effective_action(decisions)
    marked: list[Marked] = []
    found = False
    for decision in decisions:
        phase = decision.get("phase")
        where = {"after": " (on output)", "policy": " (code policy)", "limit": " (budget or rate limit)"}.get(
            phase, ""
        )
        decided = bool(decision.get("decided"))
        deciding = not found and decided and decision.get("action") == action and decision.get("rule") == rule
        found = found or deciding
        marked.append(
            Marked(decision.get("rule") or "(default)", str(decision.get("action")), where, decided, deciding)
        )
    return marked
