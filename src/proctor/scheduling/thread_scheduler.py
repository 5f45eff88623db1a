"""The import path of ``LOCOScheduler`` from before the scheduler was split; it lives in ``_threads``."""

from __future__ import annotations

from proctor.scheduling._threads import LOCOScheduler

__all__ = ["LOCOScheduler"]
