"""The stores every policy and ledger test runs on, in one table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proctor.stores import MemoryStore, RedisStore, SQLiteStore, Store, set_store
from proctor.stores.base import scheme_class
from tests import redis_server

ALL_STORES: dict[str, Callable[[Path], Store]] = {
    "memory": lambda folder: MemoryStore(),
    "sqlite": lambda folder: SQLiteStore(folder / "store.db"),
    # The session's redis-server, under a prefix of its own; on the tests' simulated clocks.
    "redis": lambda folder: RedisStore(
        redis_server.shared().url, prefix=redis_server.unique_prefix(), clock="caller", timeout=5.0
    ),
}
"""Each store by name, built in a fresh folder (Redis: with a fresh key prefix)."""

all_stores = pytest.mark.parametrize("store", list(ALL_STORES), indirect=True)
"""Runs a test that takes the ``store`` fixture once on each store of ``ALL_STORES``."""


def stores_with(capability: type) -> pytest.MarkDecorator:
    """Runs a test that takes the ``store`` fixture on each store of ``ALL_STORES`` serving ``capability``.

    A store's name in the table is its URL scheme.
    """
    names = [name for name in ALL_STORES if issubclass(scheme_class(name) or object, capability)]
    return pytest.mark.parametrize("store", names, indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of the kind ``all_stores`` names; closed after the test."""
    built = ALL_STORES[request.param](tmp_path)
    yield built
    built.close()


@pytest.fixture(params=list(ALL_STORES))
def default_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store of ``ALL_STORES`` in turn as the default of policies built without ``store=``."""
    built = ALL_STORES[request.param](tmp_path)
    set_store(built)
    yield built
    set_store(None)
    built.close()
