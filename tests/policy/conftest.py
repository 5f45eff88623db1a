"""Every policy test runs once on each store of tests.utils.ALL_STORES, as the process default."""

from __future__ import annotations

import pytest

from proctor.stores import Store
from tests.utils import default_store

__all__ = ["default_store"]


@pytest.fixture(autouse=True)
def _on_each_store(default_store: Store) -> Store:
    return default_store
