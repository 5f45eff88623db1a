"""The run log: every run and its actions, stored so they can be listed, shown, replayed and re-evaluated."""

from __future__ import annotations

from proctor.runs.default import flush, recording_into, run_log, set_run_log
from proctor.runs.encode import REPR_MARKER, encode
from proctor.runs.log import DEFAULT_PATH, NO_RESULT, RUN_STATUSES, ActionRecord, RunLog, RunRecord, decode
from proctor.runs.replay import ReplayDiverged, ReplayedError, RunResumed, replay, replay_batch, resume
from proctor.runs.result import (
    ActionDecision,
    Divergence,
    ImpactReport,
    ReplayBatch,
    ReplayResult,
    RuleImpact,
)

__all__ = [
    "DEFAULT_PATH",
    "NO_RESULT",
    "REPR_MARKER",
    "RUN_STATUSES",
    "ActionDecision",
    "ActionRecord",
    "Divergence",
    "ImpactReport",
    "ReplayBatch",
    "ReplayDiverged",
    "ReplayResult",
    "ReplayedError",
    "RuleImpact",
    "RunLog",
    "RunRecord",
    "RunResumed",
    "decode",
    "encode",
    "flush",
    "recording_into",
    "replay",
    "replay_batch",
    "resume",
    "run_log",
    "set_run_log",
]
