"""The run log's SQL on SQLite: the writer's batched statements and the reads of runs and actions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from proctor.db.base import RowKind, RunWriter, runs_query
from proctor.db.records import ActionRecord, RunRecord
from proctor.db.sqlite.schema import connect
from proctor.errors import StoreError

__all__ = ["SQLiteRunWriter", "SQLiteRuns"]

# What a run read from the log says it cost: a run that never ended (its process died) has no total
# stored, so it is what its actions spent.
_COST = (
    "CASE WHEN status = 'running' THEN"
    " (SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE actions.run_id = runs.run_id)"
    " ELSE cost END"
)


def _selected(columns: Sequence[str]) -> str:
    """The SELECT list that reads ``columns`` of the runs, ``cost`` as a run read from the log has it."""
    return ", ".join(_COST if column == "cost" else column for column in columns)


_RUN_SELECT = _selected(RunRecord._fields)
_ACTION_COLUMNS = ", ".join(ActionRecord._fields)

_CHUNK = 500
"""Run ids bound in one statement at most, well under SQLite's limit on bound parameters."""

_STATEMENTS: dict[RowKind, str] = {
    "run": (
        "INSERT OR IGNORE INTO runs (run_id, service, agent, tool, function, started, status, input,"
        " labels, redacted) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)"
    ),
    "resumed_run": (
        "INSERT OR IGNORE INTO runs (run_id, service, agent, tool, function, started, status, input,"
        " labels, redacted, resumed_from) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)"
    ),
    "action": f"INSERT OR REPLACE INTO actions ({_ACTION_COLUMNS}) VALUES ({', '.join('?' * 19)})",
    # Every parameter bound costs the writer; the columns left out take their defaults.
    "plain_action": (
        "INSERT OR REPLACE INTO actions (run_id, seq, tool, service, agent, started, duration, status,"
        f" args, result, estimated_cost, actual_cost) VALUES ({', '.join('?' * 12)})"
    ),
    "end": (
        "UPDATE runs SET ended = ?, status = ?, output = ?, error = ?, estimated_cost = ?,"
        " actual_cost = ?, cost = ?, decisions = ?, approval = ?, effects = ?,"
        " redacted = redacted OR ? WHERE run_id = ?"
    ),
}


class SQLiteRunWriter(RunWriter):
    """The writer's connection: each ``write`` is one transaction of ``executemany`` batches."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._connection = connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run log {path} for writing: {exc}", exc) from exc

    def write(self, batches: Sequence[tuple[RowKind, Sequence[tuple[Any, ...]]]]) -> None:
        connection = self._connection
        try:
            connection.execute("BEGIN")
            for kind, rows in batches:
                connection.executemany(_STATEMENTS[kind], rows)
            connection.execute("COMMIT")
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:  # a value SQLite cannot take
            if connection.in_transaction:
                connection.rollback()
            raise StoreError(f"{exc}", exc) from exc

    def close(self) -> None:
        self._connection.close()


class _Connected:
    """A short-lived connection, closed on exit; driver errors become StoreError."""

    __slots__ = ("_connection", "_path")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._connection = connect(self._path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the run log {self._path}: {exc}", exc) from exc
        return self._connection

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._connection is not None
        self._connection.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"reading the run log {self._path} failed: {exc}", exc) from exc


class SQLiteRuns:
    """The ``Database`` operations on runs and actions, for ``SQLiteDatabase``."""

    _file: Path

    def run_writer(self) -> RunWriter:
        return SQLiteRunWriter(self._file)

    def run(self, run_id: str) -> RunRecord | None:
        with _Connected(self._file) as connection:
            row = connection.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def runs(
        self,
        *,
        service: str | None,
        agent: str | None,
        status: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
        oldest_first: bool,
    ) -> list[RunRecord]:
        query, values = runs_query(
            _RUN_SELECT,
            "?",
            service=service,
            agent=agent,
            status=status,
            since=since,
            until=until,
            limit=limit,
            oldest_first=oldest_first,
        )
        with _Connected(self._file) as connection:
            rows = connection.execute(query, values).fetchall()
        return [_run_record(row) for row in rows]

    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        with _Connected(self._file) as connection:
            return connection.execute(
                f"SELECT {_selected(columns)} FROM runs WHERE started >= ? AND started < ?"
                " ORDER BY started, run_id",
                (since, until),
            ).fetchall()

    def actions(self, run_id: str) -> list[ActionRecord]:
        with _Connected(self._file) as connection:
            rows = connection.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [_action_record(row) for row in rows]

    def actions_of(self, run_ids: Sequence[str]) -> Iterator[ActionRecord]:
        for actions in self._by_run(run_ids, _ACTION_COLUMNS):
            yield from map(_action_record, actions)

    def action_rows(self, run_ids: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        return self._by_run(run_ids, ", ".join(("run_id", *columns)))

    def _by_run(self, run_ids: Sequence[str], selected: str) -> Iterator[list[tuple[Any, ...]]]:
        """For each of ``run_ids`` in order, its actions by seq as rows of ``selected`` (run_id first)."""
        with _Connected(self._file) as connection:
            for start in range(0, len(run_ids), _CHUNK):
                ids = run_ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(ids))
                rows = connection.execute(
                    f"SELECT {selected} FROM actions WHERE run_id IN ({marks}) ORDER BY run_id, seq", ids
                ).fetchall()
                by_run: dict[str, list[tuple[Any, ...]]] = {}
                for row in rows:
                    by_run.setdefault(row[0], []).append(row)
                for run_id in ids:
                    yield by_run.get(run_id) or []

    def actions_cost(self, run_id: str) -> float:
        with _Connected(self._file) as connection:
            (total,) = connection.execute(
                "SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE run_id = ?", (run_id,)
            ).fetchone()
        return float(total)

    def spent(self, service: str, agent: str, since: float, until: float) -> float:
        with _Connected(self._file) as connection:
            (actions,) = connection.execute(
                "SELECT TOTAL(actual_cost) FROM actions WHERE service = ? AND agent = ?"
                " AND started >= ? AND started < ?",
                (service, agent, since, until),
            ).fetchone()
            (runs,) = connection.execute(
                "SELECT TOTAL(actual_cost) FROM runs WHERE service = ? AND agent = ?"
                " AND ended >= ? AND ended < ?",
                (service, agent, since, until),
            ).fetchone()
        return float(actions) + float(runs)

    def continued(self, run_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with _Connected(self._file) as connection:
            for start in range(0, len(run_ids), _CHUNK):
                ids = run_ids[start : start + _CHUNK]
                found.update(
                    row[0]
                    for row in connection.execute(
                        f"SELECT resumed_from FROM runs WHERE resumed_from IN ({', '.join('?' * len(ids))})",
                        ids,
                    )
                )
        return found

    def claim(self, run_id: str, ended: float, error: str) -> bool:
        with _Connected(self._file) as connection:
            connection.execute("BEGIN IMMEDIATE")
            count = connection.execute(
                "UPDATE runs SET status = 'cancelled', ended = ?, error = ?"
                " WHERE run_id = ? AND status = 'running'",
                (ended, error, run_id),
            ).rowcount
            connection.execute("COMMIT")
        return count == 1

    def unclaim(self, run_id: str) -> None:
        with _Connected(self._file) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL"
                " WHERE run_id = ? AND status = 'cancelled'",
                (run_id,),
            )
            connection.execute("COMMIT")

    def prune(self, older_than: float) -> int:
        with _Connected(self._file) as connection:
            connection.execute("BEGIN IMMEDIATE")
            old = "SELECT run_id FROM runs WHERE started < ?"
            connection.execute(f"DELETE FROM actions WHERE run_id IN ({old})", (older_than,))
            count = connection.execute("DELETE FROM runs WHERE started < ?", (older_than,)).rowcount
            connection.execute("COMMIT")
        return int(count)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord._make((*row[:-1], bool(row[-1])))


def _action_record(row: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord._make((*row[:-1], bool(row[-1])))
