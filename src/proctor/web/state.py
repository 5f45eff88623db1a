"""What the console serves from: the database, the approvers file, the policy files, the templates."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from proctor.approvals.approvers import Approvers
from proctor.approvals.store import ApprovalStore
from proctor.db import Database
from proctor.errors import ConfigurationError
from proctor.rules.source import PolicySource
from proctor.runs.log import RunLog

__all__ = ["ApproversFile", "Console", "console_of"]

logger = logging.getLogger("proctor.web")


class ApproversFile:
    """The approvers of a file, reloaded when it changes (so ``proctor approvers add`` takes effect).

    A change that fails to load is logged and the approvers in force stay in force.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._approvers = Approvers.load(path)

    def current(self) -> Approvers:
        """The approvers in force, after reloading the file if it changed."""
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._approvers = Approvers.load(self.path)
                    except ConfigurationError as exc:
                        logger.error("approvers file change not applied; the previous one stays:\n%s", exc)
        return self._approvers

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True, slots=True)
class Console:
    """The console's state, shared by every request (``app.state.console``).

    ``database`` is where ``log`` and ``store`` keep their records; the console's summaries read it.
    """

    database: Database
    log: RunLog
    store: ApprovalStore
    approvers: ApproversFile
    policies: tuple[PolicySource, ...]
    templates: Jinja2Templates


def console_of(request: Request) -> Console:
    """The state of the console that serves ``request``."""
    return cast(Console, request.app.state.console)
