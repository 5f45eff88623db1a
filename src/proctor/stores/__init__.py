"""State backends for policies, chosen by URL: ``store_from_url("memory://")``."""

from __future__ import annotations

from proctor.errors import ConfigurationError
from proctor.stores.base import Store, known_schemes, scheme_class
from proctor.stores.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "store_from_url"]


def store_from_url(url: str) -> Store:
    """Build the store a URL names, such as ``"memory://"``.

    Raises ``ConfigurationError`` for a scheme no loaded store serves.
    """
    scheme, sep, _ = url.partition("://")
    cls = scheme_class(scheme) if sep else None
    if cls is None:
        raise ConfigurationError(
            f"no store serves {url!r}; known schemes: " + ", ".join(f"{s}://" for s in known_schemes())
        )
    return cls.from_url(url)
