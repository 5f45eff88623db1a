"""State backends for policies, chosen by URL: ``store_from_url("sqlite:///proctor.db")``.

Every backend module is imported here, so ``known_schemes()`` is complete;
a backend whose driver is a third-party package imports it only when built.
"""

from __future__ import annotations

from proctor.stores._default import resolve_store, set_store, store_from_url
from proctor.stores.base import LedgerSupport, SlotLeaseSupport, Store, TokenBucketSupport, known_schemes
from proctor.stores.memory import MemoryStore
from proctor.stores.redis import RedisStore
from proctor.stores.slot_queue import SlotQueueSupport
from proctor.stores.sqlite import SQLiteStore

__all__ = [
    "LedgerSupport",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "SlotLeaseSupport",
    "SlotQueueSupport",
    "Store",
    "TokenBucketSupport",
    "known_schemes",
    "resolve_store",
    "set_store",
    "store_from_url",
]
