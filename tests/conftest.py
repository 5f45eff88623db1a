"""Runs recorded by decorated calls in the tests go to a database of this test session, not ./.proctor."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from tests import postgres_server, redis_server
from tests.databases import ALL_DATABASES

# A failing example is reported as found and shrunk, with a blob to reproduce it. Hypothesis's explain
# phase traces every line while it shrinks (Python < 3.12), which ran one failure past pytest's
# timeout in CI and left only a timeout to read.
settings.register_profile("proctor", phases=[p for p in Phase if p is not Phase.explain], print_blob=True)
settings.load_profile("proctor")

_folder = tempfile.mkdtemp(prefix="proctor-tests-")
atexit.register(shutil.rmtree, _folder, ignore_errors=True)  # after the run log's own atexit flush
os.environ["PROCTOR_DB"] = os.path.join(_folder, "runs.db")


@pytest.fixture(scope="session", autouse=True)
def _servers_stopped() -> Iterator[None]:
    """The session's redis-server and postgres (tests/*_server.py), if a test started them, stop with it."""
    yield
    redis_server.stop_shared()
    postgres_server.stop_shared()


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The URL of the session's redis-server, started now if no test started it yet."""
    return redis_server.shared().url


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's proctor database is: a SQLite file, or what ``on_all_databases`` names."""
    return ALL_DATABASES[getattr(request, "param", "sqlite")](tmp_path)


@pytest.fixture
def postgres_url() -> str:
    """The URL of a new database, with proctor's schema, on the session's PostgreSQL server."""
    return postgres_server.shared().new_database()
