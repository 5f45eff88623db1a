"""The import path of ``AsyncLOCOScheduler`` from before the scheduler was split; it lives in ``_asyncio``."""

from __future__ import annotations

from proctor.scheduling._asyncio import AsyncLOCOScheduler

__all__ = ["AsyncLOCOScheduler"]
