"""Read-only queries the run log's and approval store's APIs do not offer, for the console's pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from proctor.errors import StoreError

__all__ = ["DecisionCounts", "approval_ids", "decision_counts", "services"]

# Every decorated call: the actions of runs that started in the window or are still running (so the
# indexes on runs choose them), and the runs' own top-level calls (seq 0).
_CALLS = """
WITH recent AS (SELECT run_id FROM runs WHERE started >= :day OR status = 'running'),
calls AS (
    SELECT a.run_id, a.seq, a.started, a.decisions FROM actions a JOIN recent USING (run_id)
    WHERE a.started >= :day
    UNION ALL
    SELECT run_id, 0, started, decisions FROM runs WHERE started >= :day
)
"""

_TOTALS = _CALLS + "SELECT COUNT(*), TOTAL(started >= :hour) FROM calls"

# One row per call and rule that decided it (a rule deciding before and after the call counts once).
_BY_RULE = (
    _CALLS
    + """
SELECT rule, action, COUNT(*), TOTAL(started >= :hour) FROM (
    SELECT DISTINCT c.run_id, c.seq, c.started,
        json_extract(d.value, '$.rule') AS rule, json_extract(d.value, '$.action') AS action
    FROM calls c, json_each(c.decisions) d
    WHERE json_extract(d.value, '$.decided')
) GROUP BY rule, action ORDER BY rule, action
"""
)


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """How many actions began in the last hour and day, and how many of them each rule decided.

    ``by_rule`` maps (rule id, action) to (last hour, last day); the rule id is None for the
    policy file's default action.
    """

    hour: int = 0
    day: int = 0
    by_rule: dict[tuple[str | None, str], tuple[int, int]] = field(default_factory=dict)

    def of(self, rule: str | None) -> tuple[int, int]:
        """What ``rule`` decided, whatever the action, in the last hour and day."""
        pairs = [counts for (name, _), counts in self.by_rule.items() if name == rule]
        return sum(hour for hour, _ in pairs), sum(day for _, day in pairs)

    def of_action(self, action: str) -> tuple[int, int]:
        """How many actions any rule decided to ``action``, in the last hour and day."""
        pairs = [counts for (_, name), counts in self.by_rule.items() if name == action]
        return sum(hour for hour, _ in pairs), sum(day for _, day in pairs)


@contextmanager
def _reading(db: Path) -> Iterator[sqlite3.Connection]:
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the run log {db}: {exc}", exc) from exc


def decision_counts(db: Path, now: float) -> DecisionCounts:
    """The decisions recorded in ``db`` in the hour and the day before ``now`` (Unix seconds)."""
    window = {"day": now - 86_400, "hour": now - 3_600}
    with _reading(db) as connection:
        day, hour = connection.execute(_TOTALS, window).fetchone()
        rows = connection.execute(_BY_RULE, window).fetchall()
    by_rule = {(rule, str(action)): (int(in_hour), int(in_day)) for rule, action, in_day, in_hour in rows}
    return DecisionCounts(int(hour), int(day), by_rule)


def services(db: Path) -> list[str]:
    """The services that have recorded runs, by name."""
    with _reading(db) as connection:
        return [row[0] for row in connection.execute("SELECT DISTINCT service FROM runs ORDER BY service")]


def approval_ids(db: Path, run_id: str) -> list[str]:
    """The ids of the approval requests of run ``run_id``, oldest first."""
    with _reading(db) as connection:
        query = "SELECT id FROM approvals WHERE run_id = ? ORDER BY created, rowid"
        return [row[0] for row in connection.execute(query, (run_id,))]
