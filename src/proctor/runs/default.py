"""The run log that new runs are recorded in, unless a decorator says otherwise.

By default a ``RunLog`` at ``$PROCTOR_DB`` (else ``./.proctor/runs.db``),
opened at the first recorded run. ``PROCTOR_RECORD=off`` (or ``0``,
``false``, ``no``) turns recording off; ``set_run_log`` chooses in code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from proctor.runs.log import RunLog

__all__ = ["flush", "recording_into", "run_log", "set_run_log"]

_OFF = ("0", "off", "false", "no")

_lock = threading.Lock()
_log: RunLog | None = None
_chosen = False


def run_log() -> RunLog | None:
    """The log new runs are recorded in; None when recording is off."""
    if _chosen:
        return _log
    return _open_default()


def _open_default() -> RunLog | None:
    global _log, _chosen
    with _lock:
        if not _chosen:
            if os.environ.get("PROCTOR_RECORD", "").strip().lower() not in _OFF:
                _log = RunLog()
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
    """Record the runs that start inside the block in ``log`` (None: nowhere); restore the choice after.

    The choice in force before comes back as it was, a default not yet opened included.
    """
    global _log, _chosen
    with _lock:
        saved = (_log, _chosen)
    try:
        yield set_run_log(log)
    finally:
        with _lock:
            _log, _chosen = saved


def flush(timeout: float | None = None) -> bool:
    """Wait until every run and action recorded so far is in the database; False on timeout."""
    log = _log
    return True if log is None else log.flush(timeout)
