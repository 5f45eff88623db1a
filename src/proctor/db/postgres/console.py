"""The console's summaries on PostgreSQL: the services with runs, and what rules decided lately."""

from __future__ import annotations

from proctor.db.postgres.connection import SharedConnection
from proctor.db.records import DecisionCounts

__all__ = ["PostgresConsole"]

# As proctor.db.sqlite.console: every decorated call, the actions of runs that started in the window or
# are still running, and the runs' own top-level calls (seq 0).
_CALLS = """
WITH recent AS (SELECT run_id FROM runs WHERE started >= %(day)s OR status = 'running'),
calls AS (
    SELECT a.run_id, a.seq, a.started, a.decisions FROM actions a JOIN recent USING (run_id)
    WHERE a.started >= %(day)s
    UNION ALL
    SELECT run_id, 0, started, decisions FROM runs WHERE started >= %(day)s
)
"""

_TOTALS = _CALLS + "SELECT COUNT(*), COUNT(*) FILTER (WHERE started >= %(hour)s) FROM calls"

# One row per call and rule that decided it (a rule deciding before and after the call counts once).
# ``decided`` is true as SQLite's json_extract reads it: a JSON true or a number other than 0.
_BY_RULE = (
    _CALLS
    + """
SELECT rule, action, COUNT(*), COUNT(*) FILTER (WHERE started >= %(hour)s) FROM (
    SELECT DISTINCT c.run_id, c.seq, c.started, d.value ->> 'rule' AS rule, d.value ->> 'action' AS action
    FROM calls c, json_array_elements(
        CASE WHEN json_typeof(c.decisions::json) = 'array' THEN c.decisions::json END
    ) d
    WHERE (d.value -> 'decided')::text NOT IN ('false', 'null', '0', '""')
) counted GROUP BY rule, action ORDER BY rule, action
"""
)


class PostgresConsole:
    """The ``Database`` operations of the console's summaries, for ``PostgresDatabase``; read-only."""

    _shared: SharedConnection

    def services(self) -> list[str]:
        with self._shared.use("read the run log") as connection:
            return [
                row[0] for row in connection.execute("SELECT DISTINCT service FROM runs ORDER BY service")
            ]

    def decision_counts(self, now: float) -> DecisionCounts:
        window = {"day": now - 86_400, "hour": now - 3_600}
        with self._shared.use("read the run log") as connection:
            row = connection.execute(_TOTALS, window).fetchone()
            rows = connection.execute(_BY_RULE, window).fetchall()
        day, hour = row if row is not None else (0, 0)
        by_rule = {(rule, str(action)): (int(in_hour), int(in_day)) for rule, action, in_day, in_hour in rows}
        return DecisionCounts(int(hour), int(day), by_rule)
