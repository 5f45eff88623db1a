"""The run log that new runs are recorded in, unless a decorator says otherwise.

By default a ``RunLog`` at ``$PROCTOR_DB`` (else ``./.proctor/runs.db``),
opened at the first recorded run. ``PROCTOR_RECORD=off`` (or ``0``,
``false``, ``no``) turns recording off; ``set_run_log`` chooses in code.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from proctor.errors import StoreError
from proctor.runs.log import RunLog

__all__ = ["flush", "process_run_log", "recording_into", "run_log", "set_run_log"]

_OFF = ("0", "off", "false", "no")

logger = logging.getLogger("proctor.runs")

_lock = threading.Lock()
_log: RunLog | None = None
_chosen = False
_inside: ContextVar[tuple[RunLog | None] | None] = ContextVar("proctor_run_log", default=None)


def run_log() -> RunLog | None:
    """The log new runs are recorded in; None when recording is off."""
    inside = _inside.get()
    if inside is not None:
        return inside[0]
    return process_run_log()


def process_run_log() -> RunLog | None:
    """The process's own log, whatever a ``recording_into`` block around the caller chose."""
    if _chosen:
        return _log
    return _open_default()


def _open_default() -> RunLog | None:
    global _log, _chosen
    with _lock:
        if not _chosen:
            if os.environ.get("PROCTOR_RECORD", "").strip().lower() not in _OFF:
                try:
                    _log = RunLog()
                except StoreError as exc:  # recording must not stop the agents: go on without it
                    logger.error("runs are not recorded: %s (set PROCTOR_DB to a writable path)", exc)
            _chosen = True
    return _log


def set_run_log(log: RunLog | str | os.PathLike[str] | None) -> RunLog | None:
    """Record new runs in ``log`` (a ``RunLog`` or a database path), or nowhere (None).

    Returns the log now in use. A log replaced here is flushed, not closed:
    it may still be read, and runs already under way finish in it.
    """
    global _log, _chosen
    chosen = RunLog(log) if isinstance(log, (str, os.PathLike)) else log
    with _lock:
        previous, _log, _chosen = _log, chosen, True
    if previous is not None and previous is not chosen:
        previous.flush()
    return chosen


@contextmanager
def recording_into(log: RunLog | str | os.PathLike[str] | None) -> Iterator[RunLog | None]:
    """Record the runs that start inside the block in ``log`` (None: nowhere).

    The choice holds for this thread or task (and what it starts with a copy of its
    context), not for others, and ends with the block. A path opens a ``RunLog``
    there, which the block does not close.
    """
    chosen = RunLog(log) if isinstance(log, (str, os.PathLike)) else log
    token = _inside.set((chosen,))
    try:
        yield chosen
    finally:
        _inside.reset(token)


def flush(timeout: float | None = None) -> bool:
    """Wait until every run and action recorded so far is in the database; False on timeout."""
    inside = _inside.get()
    log = inside[0] if inside is not None else _log
    return True if log is None else log.flush(timeout)
