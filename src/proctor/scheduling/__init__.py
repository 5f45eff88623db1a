"""Fair scheduling of a shared resource's slots by the load score L(i)."""

from __future__ import annotations

from proctor.scheduling.async_scheduler import AsyncLOCOScheduler
from proctor.scheduling.base import OPTIMIZE_FOR_ALPHA
from proctor.scheduling.grant import Grant
from proctor.scheduling.thread_scheduler import LOCOScheduler

__all__ = ["OPTIMIZE_FOR_ALPHA", "AsyncLOCOScheduler", "Grant", "LOCOScheduler"]
