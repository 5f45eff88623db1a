"""The run log's SQL on PostgreSQL: the writer's batched statements and the reads of runs and actions."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from proctor.db.base import RowKind, RunWriter, runs_query
from proctor.db.postgres.connection import SharedConnection, connect, shown
from proctor.db.records import ActionRecord, RunRecord
from proctor.errors import StoreError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["PostgresRunWriter", "PostgresRuns"]

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
_PLAIN_COLUMNS = (
    "run_id, seq, tool, service, agent, started, duration, status, args, result, estimated_cost, actual_cost"
)

_CHUNK = 1000
"""Run ids read in one statement at most: what one read holds in memory stays bounded."""


def _from_json(types: Sequence[str]) -> str:
    """The SELECT list that reads a batch's rows, JSON arrays ``r``, as columns of ``types``."""
    return ", ".join(f"(r ->> {index})::{kind}" for index, kind in enumerate(types))


_ROWS = "FROM jsonb_array_elements(%s::jsonb) AS r"
# The PostgreSQL types of each kind's row fields, in the order ``RunWriter.write`` gives them.
_KEY: tuple[str, ...] = ("text", "int8", "text", "text", "text", "float8", "float8", "text")
_RUN_TYPES: tuple[str, ...] = ("text",) * 5 + ("float8", "text", "text", "boolean")
_ACTION_TYPES = _KEY + ("text",) * 5 + ("float8", "float8") + ("text",) * 3 + ("boolean",)
_PLAIN_TYPES = (*_KEY, "text", "text", "float8", "float8")
_END_COLUMNS = (
    "ended", "status", "output", "error", "estimated_cost", "actual_cost", "cost", "decisions", "approval",
    "effects", "redacted",
)  # fmt: skip
_END_TYPES = (
    "float8",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "float8",
    "text",
    "text",
    "text",
    "boolean",
)


def _replacing(columns: str, defaults: str = "") -> str:
    """ON CONFLICT of an action: the new row replaces the stored one, as SQLite's INSERT OR REPLACE."""
    names = [name.strip() for name in columns.split(",")][2:]  # not the key (run_id, seq)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names)
    return f" ON CONFLICT (run_id, seq) DO UPDATE SET {updates}{defaults}"


_RUN_COLUMNS = "run_id, service, agent, tool, function, started, input, labels, redacted"

# Each statement takes a whole batch as one JSON array of rows (json.dumps in C, parsed by the server
# in C): binding every value of thousands of rows one by one costs the writer ten times more.
_STATEMENTS: dict[RowKind, str] = {
    "run": f"INSERT INTO runs ({_RUN_COLUMNS}, status) SELECT {_from_json(_RUN_TYPES)}, 'running' {_ROWS}"
    " ON CONFLICT (run_id) DO NOTHING",
    "resumed_run": f"INSERT INTO runs ({_RUN_COLUMNS}, resumed_from, status)"
    f" SELECT {_from_json((*_RUN_TYPES, 'text'))}, 'running' {_ROWS} ON CONFLICT (run_id) DO NOTHING",
    "action": f"INSERT INTO actions ({_ACTION_COLUMNS}) SELECT {_from_json(_ACTION_TYPES)} {_ROWS}"
    + _replacing(_ACTION_COLUMNS),
    # The columns left out take their defaults, also when the row replaces a stored one.
    "plain_action": f"INSERT INTO actions ({_PLAIN_COLUMNS}) SELECT {_from_json(_PLAIN_TYPES)} {_ROWS}"
    + _replacing(
        _PLAIN_COLUMNS,
        ", requested_args = NULL, error = NULL, labels = NULL, decisions = '[]', approval = NULL,"
        " effects = NULL, redacted = false",
    ),
    "end": "UPDATE runs SET "
    + ", ".join(
        f"{name} = (r ->> {index})::{kind}"
        for index, (name, kind) in enumerate(zip(_END_COLUMNS, _END_TYPES, strict=False))
        if name != "redacted"
    )
    + f", redacted = runs.redacted OR (r ->> 10)::boolean {_ROWS} WHERE runs.run_id = r ->> 11",
}


def _one_per_key(kind: RowKind, rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
    """``rows`` as one statement must take them: a key once, as the rows one after the other would leave it.

    An action replaces the stored one of its run and seq (the last one stays); an end sets its run's
    fields (the last one's), its ``redacted`` adding to the stored flag (any one's).
    """
    if kind in ("action", "plain_action"):
        by_key = {(row[0], row[1]): row for row in rows}
        return rows if len(by_key) == len(rows) else list(by_key.values())
    if kind == "end":
        ends: dict[Any, tuple[Any, ...]] = {}
        for row in rows:
            earlier = ends.get(row[-1])
            ends[row[-1]] = row if earlier is None else (*row[:-2], bool(earlier[-2] or row[-2]), row[-1])
        return rows if len(ends) == len(rows) else list(ends.values())
    return rows


class PostgresRunWriter(RunWriter):
    """The writer's connection: each ``write`` is one transaction, one statement per batch.

    A connection the server dropped is opened anew at the next ``write``.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self._url = url
        self._connection: Connection[tuple[Any, ...]] | None = None
        try:
            self._connection = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the run log {shown(url)} for writing: {exc}", exc) from exc

    def write(self, batches: Sequence[tuple[RowKind, Sequence[tuple[Any, ...]]]]) -> None:
        import psycopg

        try:
            encoded = [
                (_STATEMENTS[kind], json.dumps(_one_per_key(kind, rows), ensure_ascii=False, allow_nan=False))
                for kind, rows in batches
                if rows
            ]
            connection = self._connection
            if connection is None or connection.closed:
                connection = self._connection = self._connect()
            with connection.transaction():
                for statement, rows_json in encoded:
                    insert, _, on_conflict = statement.partition(" ON CONFLICT")
                    if not on_conflict:
                        connection.execute(statement, (rows_json,))
                        continue
                    # A plain INSERT costs the server half of one that checks for conflicts, and rows that
                    # replace stored ones are rare (a resumed run's): when they come, it is rolled back
                    # to the savepoint and the batch written again with its ON CONFLICT.
                    try:
                        with connection.transaction():
                            connection.execute(insert, (rows_json,))
                    except psycopg.errors.UniqueViolation:
                        connection.execute(statement, (rows_json,))
        except (psycopg.Error, ValueError, TypeError, OverflowError) as exc:  # a value it cannot take
            if self._connection is not None and self._connection.broken:
                self._connection.close()
            raise StoreError(f"{exc}", exc) from exc

    def _connect(self) -> Connection[tuple[Any, ...]]:
        """A connection whose commits do not wait for the disk, as SQLite's ``synchronous=NORMAL``: a
        crash of the server or its host may lose the last fraction of a second of records, never the
        application's exit. Approvals commit synchronously."""
        connection = connect(self._url)
        connection.execute("SET synchronous_commit = off")
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


class PostgresRuns:
    """The ``Database`` operations on runs and actions, for ``PostgresDatabase``."""

    url: str
    _shared: SharedConnection

    def run_writer(self) -> RunWriter:
        return PostgresRunWriter(self.url)

    def _rows(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        with self._shared.use("read the run log") as connection:
            return connection.execute(query, params).fetchall()

    def run(self, run_id: str) -> RunRecord | None:
        rows = self._rows(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id = %s", (run_id,))
        return _run_record(rows[0]) if rows else None

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
            "%s",
            service=service,
            agent=agent,
            status=status,
            since=since,
            until=until,
            limit=limit,
            oldest_first=oldest_first,
        )
        rows = self._rows(query, values)
        return [_run_record(row) for row in rows]

    def run_rows(self, columns: Sequence[str], *, since: float, until: float) -> list[tuple[Any, ...]]:
        return self._rows(
            f"SELECT {_selected(columns)} FROM runs WHERE started >= %s AND started < %s"
            " ORDER BY started, run_id",
            (since, until),
        )

    def actions(self, run_id: str) -> list[ActionRecord]:
        rows = self._rows(f"SELECT {_ACTION_COLUMNS} FROM actions WHERE run_id = %s ORDER BY seq", (run_id,))
        return [_action_record(row) for row in rows]

    def actions_of(self, run_ids: Sequence[str]) -> Iterator[ActionRecord]:
        for actions in self._by_run(run_ids, _ACTION_COLUMNS):
            yield from map(_action_record, actions)

    def action_rows(self, run_ids: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        return self._by_run(run_ids, ", ".join(("run_id", *columns)))

    def _by_run(self, run_ids: Sequence[str], selected: str) -> Iterator[list[tuple[Any, ...]]]:
        """For each of ``run_ids`` in order, its actions by seq as rows of ``selected`` (run_id first).

        Each chunk is read whole before it is yielded: the caller may use the database meanwhile.
        """
        for start in range(0, len(run_ids), _CHUNK):
            ids = list(run_ids[start : start + _CHUNK])
            rows = self._rows(
                f"SELECT {selected} FROM actions WHERE run_id = ANY(%s) ORDER BY run_id, seq", (ids,)
            )
            by_run: dict[str, list[tuple[Any, ...]]] = {}
            for row in rows:
                by_run.setdefault(row[0], []).append(row)
            for run_id in ids:
                yield by_run.get(run_id) or []

    def actions_cost(self, run_id: str) -> float:
        [(total,)] = self._rows(
            "SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE run_id = %s", (run_id,)
        )
        return float(total)

    def spent(self, service: str, agent: str, since: float, until: float) -> float:
        [(actions, runs)] = self._rows(
            "SELECT (SELECT COALESCE(SUM(actual_cost), 0) FROM actions WHERE service = %(service)s"
            " AND agent = %(agent)s AND started >= %(since)s AND started < %(until)s),"
            " (SELECT COALESCE(SUM(actual_cost), 0) FROM runs WHERE service = %(service)s"
            " AND agent = %(agent)s AND ended >= %(since)s AND ended < %(until)s)",
            {"service": service, "agent": agent, "since": since, "until": until},
        )
        return float(actions) + float(runs)

    def continued(self, run_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(run_ids), _CHUNK):
            ids = list(run_ids[start : start + _CHUNK])
            found.update(
                row[0]
                for row in self._rows("SELECT resumed_from FROM runs WHERE resumed_from = ANY(%s)", (ids,))
            )
        return found

    def claim(self, run_id: str, ended: float, error: str) -> bool:
        # One UPDATE: a second claimer waits for the first's row lock, then finds the run no longer running.
        with self._shared.use("write the run log") as connection:
            count = connection.execute(
                "UPDATE runs SET status = 'cancelled', ended = %s, error = %s"
                " WHERE run_id = %s AND status = 'running'",
                (ended, error, run_id),
            ).rowcount
        return count == 1

    def unclaim(self, run_id: str) -> None:
        with self._shared.use("write the run log") as connection:
            connection.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL"
                " WHERE run_id = %s AND status = 'cancelled'",
                (run_id,),
            )

    def prune(self, older_than: float) -> int:
        with self._shared.use("write the run log") as connection, connection.transaction():
            connection.execute(
                "DELETE FROM actions WHERE run_id IN (SELECT run_id FROM runs WHERE started < %s)",
                (older_than,),
            )
            count = connection.execute("DELETE FROM runs WHERE started < %s", (older_than,)).rowcount
        return int(count)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord._make(row)


def _action_record(row: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord._make(row)
