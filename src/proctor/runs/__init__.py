"""The run log: every run and its actions, stored so they can be listed, shown and replayed."""

from __future__ import annotations

from proctor.runs.encode import REPR_MARKER, encode
from proctor.runs.log import DEFAULT_PATH, ActionRecord, RunLog, RunRecord

__all__ = ["DEFAULT_PATH", "REPR_MARKER", "ActionRecord", "RunLog", "RunRecord", "encode"]
