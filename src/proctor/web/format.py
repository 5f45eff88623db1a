"""How the console's templates show times, durations, costs, stored JSON and rule decisions."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from proctor.runs.log import decode
from proctor.runs.result import effective_action

__all__ = ["FILTERS", "approval_text", "decision_labels", "error_text", "percent", "pretty"]


def local_time(timestamp: float | None) -> str:
    """``2024-01-02 13:45:06`` in the server's local time; ``-`` for None."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(timestamp: float | None) -> str:
    """ISO 8601 with the offset, for ``<time datetime=...>``; empty for None."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


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


def relative(timestamp: float | None) -> str:
    """``in 4 min 10 s`` or ``3.20 s ago`` from now; ``-`` for None."""
    if timestamp is None:
        return "-"
    delta = timestamp - time.time()
    return f"in {seconds(delta)}" if delta >= 0 else f"{seconds(-delta)} ago"


def money(amount: float | None) -> str:
    """A cost with four decimals; ``-`` for None."""
    return "-" if amount is None else f"{amount:.4f}"


def percent(part: int, whole: int) -> str:
    """``12.5%`` of ``whole``; ``-`` when there is nothing to compare with."""
    if not whole:
        return "-"
    share = 100 * part / whole
    return f"{share:.1f}%" if share >= 0.1 or not part else "<0.1%"


def pretty(value: Any) -> str:
    """A decoded JSON value as indented JSON text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def pretty_text(text: str | None) -> str:
    """A stored JSON column, indented; ``-`` for NULL."""
    return "-" if text is None else pretty(decode(text))


def error_text(text: str | None) -> str:
    """A stored error as ``Kind: message``; empty for NULL."""
    error = decode(text)
    if error is None:
        return ""
    if isinstance(error, dict):
        kind = str(error.get("type", "error")).rpartition(":")[2]
        return f"{kind}: {error.get('message', '')}"
    return str(error)


def decision_labels(text: str | None) -> list[dict[str, Any]]:
    """Each stored rule decision as ``{"label", "deciding", "decided"}``; the one that took effect once."""
    decisions = decode(text) or []
    action, rule = effective_action(decisions)
    labels: list[dict[str, Any]] = []
    marked = False
    for decision in decisions:
        label = f"{decision.get('rule') or '(default)'}: {decision.get('action')}"
        phase = decision.get("phase")
        if phase == "after":
            label += " (on output)"
        elif phase == "policy":
            label += " (code policy)"
        decided = bool(decision.get("decided"))
        deciding = (
            not marked and decided and decision.get("action") == action and decision.get("rule") == rule
        )
        marked = marked or deciding
        labels.append({"label": label, "deciding": deciding, "decided": decided})
    return labels


def approval_text(text: str | None) -> str:
    """A stored approval as ``approved by ops: comment``, ``timed out``; empty when none was asked."""
    approval = decode(text)
    if not isinstance(approval, dict):
        return ""
    answer = approval.get("approved")
    verb = "approved" if answer else "refused"
    said = "timed out" if answer is None else f"{verb} by {approval.get('approver') or 'someone'}"
    comment = approval.get("comment")
    return f"{said}: {comment}" if comment else said


FILTERS = {
    "local_time": local_time,
    "iso_time": iso_time,
    "seconds": seconds,
    "relative": relative,
    "money": money,
    "pretty": pretty,
    "pretty_text": pretty_text,
    "error_text": error_text,
    "decisions": decision_labels,
    "approval_text": approval_text,
}
"""The Jinja filters of the console's templates, by name."""
