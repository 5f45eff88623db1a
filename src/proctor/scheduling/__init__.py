"""Fair scheduling of a shared resource's slots by the load score L(i).

``_core`` decides (request -> granted or wait, release -> who is next) and
never waits; ``_threads`` and ``_asyncio`` are the drivers that block or await.
"""

from __future__ import annotations

from proctor.scheduling._asyncio import AsyncLOCOScheduler
from proctor.scheduling._core import OPTIMIZE_FOR_ALPHA
from proctor.scheduling._threads import LOCOScheduler
from proctor.scheduling.grant import Grant

__all__ = ["OPTIMIZE_FOR_ALPHA", "AsyncLOCOScheduler", "Grant", "LOCOScheduler"]
