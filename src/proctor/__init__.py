"""proctor: fair dispatch and runtime policies for AI agents.

Everything users need is importable from here; other module paths are
internal unless their ``__all__`` says otherwise (``proctor.policy`` and
``proctor.task`` are public too).
"""

from __future__ import annotations

from proctor.__version__ import __version__
from proctor.agent import Agent, AgentStats
from proctor.decision import Action, Decision
from proctor.errors import (
    BackpressureError,
    BudgetExceededError,
    ConfigurationError,
    PolicyViolationError,
    ProctorError,
    ShutdownError,
    StoreError,
)
from proctor.labels import SecurityLabel
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
from proctor.scheduling import OPTIMIZE_FOR_ALPHA, AsyncLOCOScheduler, Grant, LOCOScheduler
from proctor.stores import MemoryStore, Store, store_from_url
from proctor.task import Task

__all__ = [
    "OPTIMIZE_FOR_ALPHA",
    "AccessPolicy",
    "Action",
    "Agent",
    "AgentStats",
    "AsyncLOCOScheduler",
    "BackpressureError",
    "BudgetExceededError",
    "BudgetManager",
    "BudgetPolicy",
    "ConfigurationError",
    "Decision",
    "Grant",
    "LOCOScheduler",
    "MemoryStore",
    "Outcome",
    "Policy",
    "PolicyEnforcer",
    "PolicyViolationError",
    "ProctorError",
    "RatePolicy",
    "SecurityLabel",
    "SharedResource",
    "ShutdownError",
    "Status",
    "Store",
    "StoreError",
    "Task",
    "__version__",
    "store_from_url",
]

# Show public classes as proctor.X in reprs and tracebacks.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
