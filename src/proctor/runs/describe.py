"""Stored run-log values in words, the same in the terminal and in the console.

Times, durations, costs, errors, approvals, and which of an action's stored
decisions took effect. Plain text: callers add their own styling.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from proctor.runs.log import decode
from proctor.runs.result import effective_action

__all__ = ["Marked", "approval_text", "error_text", "local_time", "marked_decisions", "money", "seconds"]


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
        where = " (on output)" if phase == "after" else " (code policy)" if phase == "policy" else ""
        decided = bool(decision.get("decided"))
        deciding = not found and decided and decision.get("action") == action and decision.get("rule") == rule
        found = found or deciding
        marked.append(
            Marked(decision.get("rule") or "(default)", str(decision.get("action")), where, decided, deciding)
        )
    return marked
