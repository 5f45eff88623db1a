"""The console's summaries on SQLite: the services with runs, and what rules decided lately."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from proctor.db.records import DecisionCounts
from proctor.errors import StoreError

__all__ = ["SQLiteConsole"]

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


class SQLiteConsole:
    """The ``Database`` operations of the console's summaries, for ``SQLiteDatabase``; read-only."""

    _file: Path

    @contextmanager
    def _read_only(self) -> Iterator[sqlite3.Connection]:
        uri = f"{self._file.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as connection:
                yield connection
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the run log {self._file}: {exc}", exc) from exc

    def services(self) -> list[str]:
        with self._read_only() as connection:
            return [
                row[0] for row in connection.execute("SELECT DISTINCT service FROM runs ORDER BY service")
            ]

    def decision_counts(self, now: float) -> DecisionCounts:
        window = {"day": now - 86_400, "hour": now - 3_600}
        with self._read_only() as connection:
            day, hour = connection.execute(_TOTALS, window).fetchone()
            rows = connection.execute(_BY_RULE, window).fetchall()
        by_rule = {(rule, str(action)): (int(in_hour), int(in_day)) for rule, action, in_day, in_hour in rows}
        return DecisionCounts(int(hour), int(day), by_rule)
