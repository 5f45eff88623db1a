"""The process's default store: ``set_store()``, else the ``PROCTOR_STORE`` URL, else none."""

from __future__ import annotations

import os
import threading

from proctor.errors import ConfigurationError
from proctor.stores.base import Store, known_schemes, scheme_class

__all__ = ["resolve_store", "set_store", "shared_store", "store_from_url"]

_lock = threading.Lock()
_chosen: Store | None = None
_by_url: dict[str, Store] = {}  # one store (one connection) per URL in a process


def store_from_url(url: str) -> Store:
    """Build the store a URL names, such as ``"memory://"`` or ``"sqlite:///proctor.db"``.

    Raises ``ConfigurationError`` for a scheme no store serves.
    """
    scheme, sep, _ = url.partition("://")
    cls = scheme_class(scheme) if sep else None
    if cls is None:
        raise ConfigurationError(
            f"no store serves {url!r}; known schemes: " + ", ".join(f"{s}://" for s in known_schemes())
        )
    return cls.from_url(url)


def set_store(store: Store | str | None) -> None:
    """Make ``store`` (a ``Store`` or its URL) the one every policy built without ``store=`` uses.

    None goes back to the ``PROCTOR_STORE`` environment variable, and without
    it to a private in-memory store for each policy. Policies already built
    keep their store.
    """
    global _chosen
    if store is not None and not isinstance(store, (Store, str)):
        raise ConfigurationError(f"set_store() takes a Store or a URL, got {type(store).__name__}")
    chosen = shared_store(store) if isinstance(store, str) else store
    with _lock:
        _chosen = chosen


def resolve_store(store: Store | str | None) -> Store | None:
    """The store a policy given ``store=`` uses; None: it keeps a private in-memory one."""
    if isinstance(store, Store):
        return store
    if isinstance(store, str):
        return shared_store(store)
    if store is not None:
        raise ConfigurationError(f"store= takes a Store or a URL, got {type(store).__name__}")
    chosen = _chosen
    if chosen is not None:
        return chosen
    url = os.environ.get("PROCTOR_STORE")
    return shared_store(url) if url else None


def shared_store(url: str) -> Store:
    """The process's one store for ``url``, built at the first request."""
    with _lock:
        store = _by_url.get(url)
        if store is None:
            store = _by_url[url] = store_from_url(url)
        return store
