"""proctor: fair dispatch and runtime policies for AI agents.

Everything users need is importable from here; other module paths are
internal unless their ``__all__`` says otherwise (``proctor.policy`` and
``proctor.task`` are public too).
"""

from __future__ import annotations

from proctor.__version__ import __version__
from proctor.agent import Agent, AgentStats
from proctor.approvals import (
    ApprovalChannel,
    ApprovalDecision,
    ApprovalError,
    ApprovalRecord,
    ApprovalRequest,
    ApprovalStore,
    Approvers,
    AutoChannel,
    CallbackChannel,
    DurableChannel,
    PollingChannel,
    TerminalChannel,
)
from proctor.decision import Action, Decision
from proctor.errors import (
    BackpressureError,
    BudgetExceededError,
    ConfigurationError,
    PolicyConfigError,
    PolicyViolationError,
    ProctorError,
    RuleViolationError,
    ShutdownError,
    StoreError,
)
from proctor.guard import runlog, set_approval_channel
from proctor.labels import SecurityLabel
from proctor.llm import instrument
from proctor.outcome import Outcome, Status
from proctor.policy import (
    AccessPolicy,
    BudgetManager,
    BudgetPolicy,
    Policy,
    PolicyEnforcer,
    RatePolicy,
)
from proctor.resource import SharedResource
from proctor.rules import RuleSet, RulesPolicy, load_policies, parse_policies
from proctor.runs import (
    ActionDecision,
    Divergence,
    ImpactReport,
    ReplayBatch,
    ReplayDiverged,
    ReplayResult,
    RuleImpact,
    RunLog,
    RunResumed,
    flush,
    replay,
    replay_batch,
    resume,
    set_run_log,
)
from proctor.runtime.context import current_run
from proctor.runtime.effects import now, rng, uuid4
from proctor.runtime.run import Run, RunTerminated
from proctor.scheduling import OPTIMIZE_FOR_ALPHA, AsyncLOCOScheduler, Grant, LOCOScheduler
from proctor.stores import MemoryStore, SQLiteStore, Store, set_store, store_from_url
from proctor.task import Task

__all__ = [
    "OPTIMIZE_FOR_ALPHA",
    "AccessPolicy",
    "Action",
    "ActionDecision",
    "Agent",
    "AgentStats",
    "ApprovalChannel",
    "ApprovalDecision",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalRequest",
    "ApprovalStore",
    "Approvers",
    "AsyncLOCOScheduler",
    "AutoChannel",
    "BackpressureError",
    "BudgetExceededError",
    "BudgetManager",
    "BudgetPolicy",
    "CallbackChannel",
    "ConfigurationError",
    "Decision",
    "Divergence",
    "DurableChannel",
    "Grant",
    "ImpactReport",
    "LOCOScheduler",
    "MemoryStore",
    "Outcome",
    "Policy",
    "PolicyConfigError",
    "PolicyEnforcer",
    "PolicyViolationError",
    "PollingChannel",
    "ProctorError",
    "RatePolicy",
    "ReplayBatch",
    "ReplayDiverged",
    "ReplayResult",
    "RuleImpact",
    "RuleSet",
    "RuleViolationError",
    "RulesPolicy",
    "Run",
    "RunLog",
    "RunResumed",
    "RunTerminated",
    "SQLiteStore",
    "SecurityLabel",
    "SharedResource",
    "ShutdownError",
    "Status",
    "Store",
    "StoreError",
    "Task",
    "TerminalChannel",
    "__version__",
    "current_run",
    "flush",
    "instrument",
    "load_policies",
    "now",
    "parse_policies",
    "replay",
    "replay_batch",
    "resume",
    "rng",
    "runlog",
    "set_approval_channel",
    "set_run_log",
    "set_store",
    "store_from_url",
    "uuid4",
]

# Show public classes as proctor.X in reprs and tracebacks.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
