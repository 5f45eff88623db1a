"""State backends for policies, chosen by URL: ``store_from_url("sqlite:///proctor.db")``.

Every backend module is imported here, so ``known_schemes()`` is complete;
a backend whose driver is a third-party package imports it only when built.
"""

from __future__ import annotations

from proctor.errors import ConfigurationError
from proctor.stores.base import LedgerSupport, Store, TokenBucketSupport, known_schemes, scheme_class
from proctor.stores.memory import MemoryStore

__all__ = [
    "LedgerSupport",
    "MemoryStore",
    "Store",
    "TokenBucketSupport",
    "known_schemes",
    "store_from_url",
]


def store_from_url(url: str) -> Store:
    """Build the store a URL names, such as ``"memory://"``.

    Raises ``ConfigurationError`` for a scheme no store serves.
    """
    scheme, sep, _ = url.partition("://")
    cls = scheme_class(scheme) if sep else None
    if cls is None:
        raise ConfigurationError(
            f"no store serves {url!r}; known schemes: " + ", ".join(f"{s}://" for s in known_schemes())
        )
    return cls.from_url(url)
