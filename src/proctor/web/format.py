"""How the console's templates show times, durations, costs, stored JSON and rule decisions."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from proctor.runs.describe import (
    approval_text,
    error_text,
    local_time,
    marked_decisions,
    money,
    seconds,
    wait_text,
)
from proctor.runs.log import decode

__all__ = ["FILTERS", "approval_text", "decision_labels", "error_text", "percent", "pretty"]


def iso_time(timestamp: float | None) -> str:
    """ISO 8601 with the offset, for ``<time datetime=...>``; empty for None."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def relative(timestamp: float | None) -> str:
    """``in 4 min 10 s`` or ``3.20 s ago`` from now; ``-`` for None."""
    if timestamp is None:
        return "-"
    delta = timestamp - time.time()
    return f"in {seconds(delta)}" if delta >= 0 else f"{seconds(-delta)} ago"


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


def decision_labels(text: str | None) -> list[dict[str, Any]]:
    """Each stored rule decision as ``{"label", "deciding", "decided"}``; the one that took effect once."""
    return [
        {"label": f"{d.rule}: {d.action}{d.where}", "deciding": d.deciding, "decided": d.decided}
        for d in marked_decisions(text)
    ]


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
    "wait_text": wait_text,
}
"""The Jinja filters of the console's templates, by name."""
