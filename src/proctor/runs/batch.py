"""BatchWriter: turns the records a run log was handed into rows, redacted and encoded, and commits them.

It is the one writer of a run log's records, whether it runs on the log's
writer thread or in its writer process (``runs/writer_process.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from proctor.db import Database, RowKind
from proctor.errors import StoreError
from proctor.pii.detector import PIIDetector
from proctor.runs.encode import NO_RESULT, plain_json, thaw, to_json

__all__ = ["BatchWriter"]

logger = logging.getLogger("proctor.runs")

_ORDER: dict[RowKind, int] = {"run": 0, "resumed_run": 0, "action": 1, "plain_action": 1, "end": 2}
"""Run starts, then actions, then run ends: a run's end updates the row its start made."""


class BatchWriter:
    """Commits batches of handed-over records (``RunLog``'s tuples) to ``database``, redacting with
    ``detector`` (None: no redaction). A record that cannot be encoded or written is counted in
    ``failed``; nothing here raises for a bad record or a refusing database."""

    def __init__(self, database: Database, detector: PIIDetector | None) -> None:
        self.database = database
        self._detector = detector
        self.failed = 0
        """Records lost: not encodable, or refused by the database three times."""
        self._writer = database.run_writer()  # StoreError when the database cannot be opened

    def close(self) -> None:
        self._writer.close()

    def commit(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Write ``records`` (no markers) in one transaction, retried; one by one if it keeps failing."""
        self.write(self.rows(records))

    def rows(self, records: Sequence[tuple[Any, ...]]) -> list[tuple[RowKind, list[tuple[Any, ...]]]]:
        """The rows of ``records``, redacted and encoded, by kind in the order they must be written."""
        groups: dict[RowKind, list[tuple[Any, ...]]] = {}  # kind: rows, in queue order
        for record in records:
            try:
                kind, values = self._row(record)
            except Exception:  # a record that cannot be encoded is lost alone, counted
                self.failed += 1
                logger.exception("the run log %s could not encode a record", self.database)
                continue
            rows = groups.get(kind)
            if rows is None:
                rows = groups[kind] = []
            rows.append(values)
        return [(kind, groups[kind]) for kind in sorted(groups, key=_ORDER.__getitem__)]

    def write(self, ordered: list[tuple[RowKind, list[tuple[Any, ...]]]]) -> None:
        """Write the rows ``rows()`` made in one transaction, retried; one by one if it keeps failing."""
        for attempt in range(3):
            if not ordered or self._write(ordered):
                return
            if attempt == 2:  # the database refuses the batch: try its records one by one
                for kind, rows in ordered:
                    for row in rows:
                        if not self._write([(kind, [row])]):
                            self.failed += 1
            else:
                time.sleep(0.05 * (attempt + 1))

    def _write(self, batches: list[tuple[RowKind, list[tuple[Any, ...]]]]) -> bool:
        """Write ``batches`` in one transaction; False (logged, nothing written) if the database refused."""
        try:
            self._writer.write(batches)
        except StoreError as exc:
            count = sum(len(rows) for _, rows in batches)
            logger.error("the run log %s could not write %d record(s): %s", self.database, count, exc)
            return False
        return True

    def _row(self, record: tuple[Any, ...]) -> tuple[RowKind, tuple[Any, ...]]:
        kind = record[0]
        if kind == "run":
            _, run_id, service, agent, tool, function, started, input_, labels, resumed_from = record
            redacted, input_text, labels_text = self._encoded(input_, labels)
            row: tuple[Any, ...] = (run_id, service, agent, tool, function, started)
            if resumed_from is not None:
                return "resumed_run", (*row, input_text or "null", labels_text, redacted, resumed_from)
            return "run", (*row, input_text or "null", labels_text, redacted)
        if kind == "action":
            (_, run_id, seq, tool, service, agent, started, duration, status, args, requested) = record[:11]
            result, error, labels, estimated, actual, decisions, approval, effects = record[11:]
            if (
                requested is None
                and error is None
                and labels is None
                and approval is None
                and not decisions
                and effects is None
            ):  # the common shape: 12 columns bound, not 19
                args_text, result_text, redacted = self._pair(args, result)
                if not redacted:
                    return "plain_action", (
                        run_id,
                        seq,
                        tool,
                        service,
                        agent,
                        started,
                        duration,
                        status,
                        args_text,
                        result_text,
                        estimated,
                        actual,
                    )
                requested_text = error_text = labels_text = approval_text = None
            else:
                redacted, args_text, requested_text, result_text, error_text, labels_text, approval_text = (
                    self._encoded(args, requested, result, error, labels, approval)
                )
                args_text = args_text or "null"  # None is "null"; NULL is for what was not there
                result_text = None if result is NO_RESULT else result_text or "null"
            return "action", (
                run_id,
                seq,
                tool,
                service,
                agent,
                started,
                duration,
                status,
                args_text,
                requested_text,
                result_text,
                error_text,
                labels_text,
                estimated,
                actual,
                to_json(thaw(decisions)) if decisions else "[]",
                approval_text,
                None if effects is None else to_json(thaw(effects)),
                redacted,
            )
        _, run_id, ended, status, output, error, estimated, actual, cost, decisions, approval, effects = (
            record
        )
        redacted, output_text, error_text, approval_text = self._encoded(output, error, approval)
        return "end", (
            ended,
            status,
            None if output is NO_RESULT else output_text or "null",
            error_text,
            estimated,
            actual,
            cost,
            to_json(thaw(decisions)) if decisions else "[]",
            approval_text,
            None if effects is None else to_json(thaw(effects)),
            redacted,
            run_id,
        )

    def _encoded(self, *values: Any) -> tuple[Any, ...]:
        """Whether the detector redacted any of ``values``, then their JSON text (None for None)."""
        redacted = False
        texts: list[str | None] = []
        for value in values:
            if value is None or value is NO_RESULT:
                texts.append(None)
                continue
            text, changed = self._json(value)
            redacted = redacted or changed
            texts.append(text)
        return (redacted, *texts)

    def _pair(self, args: Any, result: Any) -> tuple[str, str | None, bool]:
        """``_json`` of an action's args and result (None for ``NO_RESULT``), and whether either was
        redacted; one clean test for both when neither needs a scan."""
        detector = self._detector
        if detector is None:
            return to_json(thaw(args)), None if result is NO_RESULT else to_json(thaw(result)), False
        args_text = plain_json(thaw(args))
        if args_text is not None:
            if result is NO_RESULT:
                if detector.clean_json(args_text):
                    return args_text, None, False
            else:
                result_text = plain_json(thaw(result))
                # The JSON of [args, result]: what redact leaves alone in it, it leaves alone in each.
                if result_text is not None and detector.clean_json(f"[{args_text},{result_text}]"):
                    return args_text, result_text, False
        args_text, redacted = self._json(args)
        if result is NO_RESULT:
            return args_text, None, redacted
        result_text, result_redacted = self._json(result)
        return args_text, result_text, redacted or result_redacted

    def _json(self, frozen: Any) -> tuple[str, bool]:
        """The JSON text of a handed-over value, redacted when the log redacts, and whether it was."""
        value = thaw(frozen)
        detector = self._detector
        if detector is None:
            return to_json(value), False
        text = plain_json(value)
        if text is not None and detector.clean_json(text):  # nothing to redact: no walk, no copy
            return text, False
        value, kinds = detector.redact(value)
        return to_json(value), bool(kinds)
